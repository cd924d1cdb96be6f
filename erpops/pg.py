"""Where a PostgreSQL server is, and how erpops runs its client tools against it.

erpops talks to PostgreSQL only through its own client binaries (psql, pg_dump, pg_restore),
as Odoo's database manager does, so it needs no driver. The password never appears on a
command line or in a log: it travels in PGPASSWORD of the child's environment only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from erpops.errors import ServiceError

_TLS_VARS = ("PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY", "PGSSLCRL")
_BINDIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")


def client_bin(name: str) -> str:
    """Path of a PostgreSQL client binary: ERPOPS_PG_BINDIR, Debian's 15 bin dir, then PATH."""
    candidates = [os.environ.get("ERPOPS_PG_BINDIR", ""), *_BINDIRS]
    for d in candidates:
        if d and (Path(d) / name).is_file():
            return str(Path(d) / name)
    found = shutil.which(name)
    if found:
        return found
    raise ServiceError(f"{name} not found: apt-get install postgresql-client-15, or set ERPOPS_PG_BINDIR")


@dataclass(frozen=True)
class Pg:
    """Connection to one PostgreSQL server. `password` is never printed (repr hides it)."""

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Pg:
        env = os.environ if environ is None else environ
        return cls(
            host=env.get("PGHOST", "127.0.0.1"),
            port=int(env.get("PGPORT", "5432")),
            user=env.get("PGUSER", "postgres"),
            password=env.get("PGPASSWORD"),
        )

    @classmethod
    def from_local(cls, server: object) -> Pg:
        """From an erpops.local.LocalPostgres (duck-typed, so this module imports nothing local)."""
        return cls(host=server.host, port=server.port, user=server.user)  # type: ignore[attr-defined]

    def env(self) -> dict[str, str]:
        """The environment for a child client process: libpq variables, no inherited PG* leftovers."""
        # TLS settings pass through (PGSSLMODE=require in the drill's pod); every other PG* leftover is dropped
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG") or k in _TLS_VARS}
        env.update(PGHOST=self.host, PGPORT=str(self.port), PGUSER=self.user, PGCONNECT_TIMEOUT="10")
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def psql(self, sql: str, db: str = "postgres", *, timeout: float = 120.0) -> str:
        """Run SQL with ON_ERROR_STOP=1; unaligned, tuples only. A failure raises with psql's stderr."""
        from erpops.backup.leftovers import preexec

        proc = subprocess.run(
            [client_bin("psql"), "-X", "-v", "ON_ERROR_STOP=1", "-At", "-d", db, "-f", "-"],
            input=sql, capture_output=True, text=True, env=self.env(), timeout=timeout, check=False,
            preexec_fn=preexec(),
        )
        if proc.returncode != 0:
            raise ServiceError(f"psql on {self.host}:{self.port}/{db} failed: {proc.stderr.strip()}")
        return proc.stdout

    def scalar(self, sql: str, db: str = "postgres") -> str:
        return self.psql(sql, db).strip()

    def database_exists(self, db: str) -> bool:
        return self.scalar(f"SELECT count(*) FROM pg_database WHERE datname = {quote_literal(db)}") == "1"

    def server_version_num(self) -> int:
        return int(self.scalar("SHOW server_version_num"))

    def create_database(self, db: str, owner: str | None = None, *, same_session: str = "") -> None:
        """An empty database the way Odoo's _create_empty_database makes one: template0, UTF8, collation C,
        and (Odoo 17.0 on PostgreSQL 15+) CREATE on schema public granted to PUBLIC, which a restore with
        --no-privileges would otherwise lose. `same_session` runs right after, in the same psql session
        (a leftover marker: a SIGKILL in between leaves a marked database, never an unmarked one)."""
        owner_sql = f" OWNER {quote_ident(owner)}" if owner else ""
        after = f"\n{same_session}" if same_session else ""
        self.psql(f"CREATE DATABASE {quote_ident(db)} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C'{owner_sql};"
                  + after)
        self.psql("GRANT CREATE ON SCHEMA public TO PUBLIC", db)

    def drop_database(self, db: str) -> None:
        """Drop db if it exists, ending its sessions first (WITH (FORCE), PostgreSQL 13+)."""
        self.psql(f"DROP DATABASE IF EXISTS {quote_ident(db)} WITH (FORCE)")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
