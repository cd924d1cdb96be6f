"""Scratch databases that erpops makes and must not leave behind: a marker in the database's comment.

A drill (erpops.backup.drill) restores into a scratch database on the stack's own server. Killed half-way
(SIGKILL, a node lost, the Job's deadline), nothing of it runs to drop that database. So the moment the
database exists it carries a marker, `COMMENT ON DATABASE ... IS 'erpops-scratch:{json}'`, naming who made
it (purpose, stack, host, pid) and until when it may live (expires_at: start + the deadline). The next run
finds every marked database of its purpose and stack and drops the stale ones:

  - made on this host by a process that is gone (the pid is not alive), or
  - made elsewhere (another pod) and past its expires_at: the maker's deadline has killed it by then.

A marked database of a live process, or not yet expired, is left alone and reported. A database without
the marker is never touched, and neither is the live database (refused by name and by OID).

Self-contained on purpose: the marker API of erpops/backup/leftovers.py (issue 10) can absorb it.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from erpops.backup.lease import pid_alive
from erpops.errors import PreflightError
from erpops.pg import Pg, quote_ident, quote_literal

PREFIX = "erpops-scratch:"


@dataclass(frozen=True)
class Marker:
    purpose: str
    stack: str
    host: str
    pid: int
    started_at: str
    expires_at: str

    def comment(self) -> str:
        return PREFIX + json.dumps(self.__dict__, sort_keys=True, separators=(",", ":"))

    @classmethod
    def parse(cls, comment: str | None) -> Marker | None:
        if not comment or not comment.startswith(PREFIX):
            return None
        try:
            data = json.loads(comment[len(PREFIX):])
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})
        except (ValueError, KeyError, TypeError):
            return None


def new_marker(purpose: str, stack: str, deadline_seconds: int, now: datetime | None = None) -> Marker:
    now = now or datetime.now(UTC)
    return Marker(purpose, stack, socket.gethostname(), os.getpid(), _iso(now),
                  _iso(now + timedelta(seconds=deadline_seconds)))


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stale_reason(m: Marker, now: datetime | None = None) -> str | None:
    """Why the maker of m is gone for sure, or None while it may still be running."""
    now = now or datetime.now(UTC)
    if m.host == socket.gethostname():
        return None if pid_alive(m.pid) else f"its maker (pid {m.pid} on {m.host}) is gone"
    expires = datetime.strptime(m.expires_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return f"made on {m.host}, past its deadline {m.expires_at}" if now > expires else None


def mark(pg: Pg, db: str, marker: Marker) -> None:
    pg.psql(f"COMMENT ON DATABASE {quote_ident(db)} IS {quote_literal(marker.comment())}")


def marked(pg: Pg) -> list[tuple[str, int, Marker]]:
    """(name, oid, marker) of every database carrying a scratch marker."""
    rows = pg.psql(
        "SELECT d.datname, d.oid, s.description FROM pg_database d JOIN pg_shdescription s "
        "ON s.objoid = d.oid AND s.classoid = 'pg_database'::regclass "
        f"WHERE s.description LIKE {quote_literal(PREFIX + '%')}").splitlines()
    out = []
    for row in rows:
        name, oid, comment = row.split("|", 2)
        m = Marker.parse(comment)
        if m is not None:
            out.append((name, int(oid), m))
    return out


def database_oid(pg: Pg, db: str) -> int | None:
    value = pg.scalar(f"SELECT oid FROM pg_database WHERE datname = {quote_literal(db)}")
    return int(value) if value else None


@dataclass(frozen=True)
class LiveGuard:
    """The live database of a stack, by name and by OID (None when absent on this server)."""

    name: str
    oid: int | None

    @classmethod
    def of(cls, pg: Pg, name: str) -> LiveGuard:
        return cls(name, database_oid(pg, name))

    def refuse(self, pg: Pg, db: str, what: str) -> None:
        """PreflightError unless db is another database than the live one, by name and by OID."""
        if db == self.name:
            raise PreflightError([f"{db} is the stack's live database (by name): {what} never touches it"],
                                 what)
        oid = database_oid(pg, db)
        if oid is not None and oid == self.oid:
            raise PreflightError([f"{db} has the OID {oid} of the live database {self.name}: {what} never "
                                  "touches it"], what)


def drop_marked(pg: Pg, db: str, purpose: str, stack: str, guard: LiveGuard) -> None:
    """Drop db only if it is not live (name, OID) and still carries our purpose's marker for stack."""
    from erpops.backup.engine import drop_database

    guard.refuse(pg, db, f"dropping {db}")
    found = {name: m for name, _, m in marked(pg)}
    m = found.get(db)
    if m is None or m.purpose != purpose or m.stack != stack:
        raise PreflightError([f"{db} carries no {purpose} marker of stack {stack}: it is not ours to drop"],
                             f"dropping {db}")
    drop_database(pg, db)


def clean_stale(pg: Pg, purpose: str, stack: str, guard: LiveGuard,
                now: datetime | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(dropped, left) scratch databases of purpose and stack; each {db, oid, host, pid, started_at, why}."""
    dropped, left = [], []
    for name, oid, m in marked(pg):
        if m.purpose != purpose or m.stack != stack:
            continue
        row = {"db": name, "oid": oid, "host": m.host, "pid": m.pid, "started_at": m.started_at}
        why = stale_reason(m, now)
        if why is None:
            left.append({**row, "why": "its maker may still be running"})
            continue
        drop_marked(pg, name, purpose, stack, guard)
        dropped.append({**row, "why": why})
    return dropped, left
