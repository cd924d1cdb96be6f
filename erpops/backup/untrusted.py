"""Untrusted SQL: a dump from an Odoo zip (or any dump of unknown origin) runs screened, as nobody.

A plain-SQL dump is a program. psql's `\\restrict` fence (erpops.backup.odoozip.restricted_lines)
stops its meta-commands, not its SQL: run as a superuser, `COPY ... TO PROGRAM`, `lo_export`,
`CREATE ROLE ... SUPERUSER` or `ALTER DATABASE other RENAME` all work. So untrusted SQL gets two
independent defences, and a check afterwards:

1. Screen (`Screen`): the dump is lexed (quotes, dollar quotes, comments, COPY data) and every
   statement is checked against what pg_dump writes. Statements a database dump never needs are
   refused with their line number before they reach the server: roles, other databases,
   tablespaces, ALTER SYSTEM, COPY to/from a program or a server file, server-file and
   large-object import/export functions, dblink, SECURITY DEFINER, DO/CALL/LOAD, transaction
   control, role switching, psql meta-commands, extensions outside ALLOWED_EXTENSIONS. GRANT,
   REVOKE, ALTER DEFAULT PRIVILEGES and COMMENT ON EXTENSION are dropped (as pg_restore
   --no-privileges would): they could only hand the data to other roles. Lines longer than
   MAX_LINE_BYTES are refused instead of being buffered.
2. Sandbox (`execute_untrusted_sql`): the screened SQL runs in a psql logged in as a fresh role
   `erpops_sandbox_<hex>` (LOGIN, random password, NOSUPERUSER NOCREATEDB NOCREATEROLE
   NOREPLICATION NOBYPASSRLS, member of nothing) that owns only the new database. Whatever the
   screen missed (dynamic SQL in a function body, say) meets PostgreSQL's own permission checks
   as that role: no server programs or files, no other role, no other database.
3. Check: the cluster's roles, memberships, role/database settings and databases are read before
   and after; any difference (other than erpops' own side databases and sandboxes of concurrent
   runs) fails the import. The new database must hold no SECURITY DEFINER function and at least
   one table. Only then are its objects handed to the final owner (REASSIGN OWNED) and the
   sandbox role dropped. On any failure the database and the role are dropped.

Custom-format dumps from an untrusted source take the same road: `pg_restore -f -` turns them
into SQL on this machine (it connects to nothing) and that SQL is screened and run as above.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from erpops.backup import leftovers
from erpops.errors import ErpopsError, IntegrityError, OperationFailed, PreflightError, ServiceError
from erpops.pg import Pg, client_bin, quote_ident, quote_literal

# One line of a dump (a COPY row, usually) may not exceed this; a longer one is refused, never buffered.
MAX_LINE_BYTES = int(os.environ.get("ERPOPS_MAX_DUMP_LINE_BYTES", str(256 * 1024 * 1024)))
# PostgreSQL's trusted extensions that Odoo and its common addons use; a database owner may create them.
ALLOWED_EXTENSIONS = frozenset({
    "plpgsql", "pg_trgm", "unaccent", "btree_gin", "btree_gist", "citext", "fuzzystrmatch", "hstore",
    "intarray", "pgcrypto", "uuid-ossp", "tablefunc", "cube", "earthdistance", "ltree", "tcn",
})
SANDBOX_PREFIX = "erpops_sandbox_"
CHUNK = 1024 * 1024


class UntrustedDumpError(IntegrityError):
    """A dump holds a statement a database dump never needs: refused, nothing of it ran (exit 5)."""


# ------------------------------------------------------------------------------------------------
# Reading lines with a bound
# ------------------------------------------------------------------------------------------------


def bounded_lines(reader: Any, source: str, max_line: int | None = None) -> Iterator[bytes]:
    """The lines of a binary stream (each with its newline), refusing one longer than max_line bytes."""
    limit = MAX_LINE_BYTES if max_line is None else max_line
    pending = b""
    lineno = 1
    while data := reader.read(CHUNK):
        parts = (pending + data).split(b"\n")
        pending = parts.pop()
        for part in parts:
            if len(part) >= limit:
                _too_long(source, lineno, limit)
            lineno += 1
            yield part + b"\n"
        if len(pending) >= limit:
            _too_long(source, lineno, limit)
    if pending:
        yield pending


def _too_long(source: str, lineno: int, limit: int) -> None:
    raise UntrustedDumpError(
        f"{source} line {lineno} is longer than {limit // (1024 * 1024)} MiB: refused rather than held in memory "
        "(pg_dump writes one row per line; raise ERPOPS_MAX_DUMP_LINE_BYTES if a row really is that large)")


# ------------------------------------------------------------------------------------------------
# The screen
# ------------------------------------------------------------------------------------------------

_WS = re.compile(r"\s+")
_SPECIAL = re.compile(r"--|/\*|'|\"|\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$|;|\\")
_RESTRICT = re.compile(r"^\\(?:un)?restrict [A-Za-z0-9]+\s*$")
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Z_][A-Z0-9_$]*)'
_COPY_STDIN = re.compile(rf"^COPY {_IDENT}(?:\.{_IDENT})?(?: ?\([^()]*\))? FROM STDIN(?: WITH ?\([^()]*\))? ?;$")
_SELECT_OK = re.compile(r"^SELECT (?:PG_CATALOG\.)?(SET_CONFIG|SETVAL|LO_CREATE|LO_OPEN|LOWRITE|LO_CLOSE) ?\(")
_SQL_FUNCS = ("lo_import|lo_export|lo_unlink|pg_read_file|pg_read_binary_file|pg_ls_\\w+|pg_stat_file|pg_file_\\w+|"
              "pg_logdir_ls|dblink\\w*|pg_terminate_backend|pg_cancel_backend|pg_reload_conf|pg_rotate_logfile|"
              "pg_promote|pg_switch_wal|pg_create_restore_point|pg_\\w*replication_slot\\w*|pg_backup_start|"
              "pg_backup_stop|pg_start_backup|pg_stop_backup|pg_import_system_collations|pg_sleep\\w*")
_DANGEROUS_FUNC = re.compile(rf"\b({_SQL_FUNCS})\s*\(", re.IGNORECASE)
# (pattern on the normalized, upper-cased statement with string literals blanked, reason)
_REFUSED: list[tuple[re.Pattern[str], str]] = [(re.compile(p), why) for p, why in [
    (r"^(CREATE|ALTER|DROP) (ROLE|USER|GROUP)\b", "creates, changes or drops a role"),
    (r"^(CREATE|ALTER|DROP) DATABASE\b|^COMMENT ON DATABASE\b", "creates or changes a database"),
    (r"^(REASSIGN|DROP) OWNED\b", "changes what roles own"),
    (r"^ALTER SYSTEM\b", "changes the server's configuration (ALTER SYSTEM)"),
    (r"^(CREATE|ALTER|DROP) TABLESPACE\b", "touches a tablespace (server directories)"),
    (r"^(CREATE|ALTER|DROP) (SERVER|FOREIGN DATA WRAPPER|USER MAPPING|SUBSCRIPTION|PUBLICATION|EVENT TRIGGER)\b",
     "reaches outside the database (servers, subscriptions, event triggers)"),
    (r"^(CREATE|ALTER|DROP) (OR REPLACE )?(TRUSTED )?(PROCEDURAL )?LANGUAGE\b", "installs a procedural language"),
    (r"^(CREATE|ALTER|DROP) (OR REPLACE )?(TRANSFORM|ACCESS METHOD|CONVERSION)\b", "changes server internals"),
    (r"^ALTER EXTENSION\b|^DROP EXTENSION\b", "changes an extension"),
    (r"^ALTER LARGE OBJECT\b", "changes a large object's owner"),
    (r"\bOWNER TO\b", "changes an owner (a dump to import carries no owners)"),
    (r"\bSECURITY DEFINER\b", "creates a SECURITY DEFINER function (it would run with its owner's rights)"),
    (r"^(SET|RESET) (SESSION |LOCAL )?(ROLE|AUTHORIZATION)\b|^(SET|RESET) SESSION AUTHORIZATION\b|^RESET ALL\b",
     "switches roles"),
    (r"^(BEGIN|COMMIT|ROLLBACK|END|START|SAVEPOINT|RELEASE|ABORT|PREPARE|SET TRANSACTION)\b",
     "controls the transaction (the import runs in one)"),
    (r"^(DO|CALL|LOAD|EXECUTE|DEALLOCATE|LISTEN|NOTIFY|UNLISTEN|VACUUM|CLUSTER|CHECKPOINT|DISCARD|LOCK|TRUNCATE|"
     r"UPDATE|DELETE|MERGE|REFRESH|REINDEX|IMPORT|SECURITY LABEL|WITH|VALUES|TABLE|EXPLAIN|FETCH|DECLARE|CLOSE|MOVE)\b",
     "is not a statement pg_dump writes"),
]]
_DROPPED = re.compile(r"^(GRANT|REVOKE|ALTER DEFAULT PRIVILEGES|COMMENT ON EXTENSION)\b")
_ALLOWED_HEAD = re.compile(r"^(SET|SELECT|CREATE|ALTER|COMMENT ON|COPY|INSERT INTO|DROP)\b")
_EXTENSION = re.compile(rf"^CREATE EXTENSION (?:IF NOT EXISTS )?({_IDENT})")
_COPY_ANY = re.compile(r"^COPY\b")
_BLOCK = re.compile(r"/\*|\*/")
_COPY_END = frozenset({b"\\.\n", b"\\.\r\n", b"\\."})


@dataclass
class ScreenReport:
    statements: int = 0
    copy_rows: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"statements": self.statements, "copy_rows": self.copy_rows, "dropped": dict(self.dropped)}


class Screen:
    """Lexes a plain-SQL dump line by line; `lines()` yields what may run, raises on what may not."""

    def __init__(self, source: str = "dump.sql", *, extensions: frozenset[str] = ALLOWED_EXTENSIONS) -> None:
        self.source = source
        self.extensions = extensions
        self.report = ScreenReport()
        self._lineno = 0
        self._raw: list[str] = []  # the current statement's text as written
        self._raw_len = 0
        self._code: list[str] = []  # the same with string literals blanked and comments removed
        self._has_code = False
        self._tail = " "  # the last code characters (E'' detection)
        self._lits: list[str] = []  # its single-quoted literals
        self._lit: list[str] = []
        self._start = 0
        self._squote = False
        self._escape = False  # in an E'...' string, backslash escapes
        self._dquote = False
        self._dollar: str | None = None
        self._block = 0
        self._copy = False
        self._parens = 0  # psql ends a statement only at a ';' outside parentheses, and so do we

    def lines(self, lines: Iterable[bytes]) -> Iterator[bytes]:
        for line in lines:
            self._lineno += 1
            if len(line) > MAX_LINE_BYTES:
                _too_long(self.source, self._lineno, MAX_LINE_BYTES)
            if self._copy:  # COPY rows are data: only the end marker matters (the hot path of a big dump)
                if line in _COPY_END:
                    self._copy = False
                else:
                    self.report.copy_rows += 1
                yield line
                continue
            for piece in self._feed(line.decode("utf-8", "surrogateescape")):
                yield piece.encode("utf-8", "surrogateescape")
        if self._open():
            self._refuse(self._start or self._lineno, "the dump ends inside a statement (no closing ';' or quote)")

    def check(self, lines: Iterable[bytes]) -> ScreenReport:
        """Screen without keeping the output (a pre-pass before anything is created)."""
        for _ in self.lines(lines):
            pass
        return self.report

    # -- lexer ------------------------------------------------------------------------------------

    def _open(self) -> bool:
        return bool(self._squote or self._dquote or self._dollar or self._block or self._has_code)

    def _code_add(self, code: str) -> None:
        if code:
            if not self._has_code and not code.isspace():
                self._has_code = True
                self._start = self._lineno
            self._code.append(code)
            self._tail = (self._tail + code)[-2:]

    def _raw_add(self, raw: str) -> None:
        self._raw.append(raw)
        self._raw_len += len(raw)
        if self._raw_len > MAX_LINE_BYTES:
            self._refuse(self._start or self._lineno,
                         f"a statement longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB")

    def _feed(self, s: str) -> Iterator[str]:
        i, n = 0, len(s)
        if not self._open() and s.startswith("\\"):
            if _RESTRICT.match(s):
                return  # pg_dump's own fence: replaced by ours (restricted_lines)
            self._refuse(self._lineno, f"a psql meta-command {s.strip()[:40]!r}")
        while i < n:
            if self._dollar is not None:
                j = s.find(self._dollar, i)
                end = n if j < 0 else j + len(self._dollar)
                self._raw_add(s[i:end])
                self._code_add(s[i:end])
                if j >= 0:
                    self._dollar = None
                i = end
            elif self._squote:
                j = i
                while j < n:
                    c = s[j]
                    if self._escape and c == "\\":
                        j += 2
                        continue
                    if c == "'":
                        if j + 1 < n and s[j + 1] == "'":
                            j += 2
                            continue
                        break
                    j += 1
                if j >= n:
                    self._lit.append(s[i:])
                    self._raw_add(s[i:])
                    i = n
                else:
                    self._lit.append(s[i:j])
                    self._raw_add(s[i:j + 1])
                    self._code_add("'")
                    self._lits.append("".join(self._lit))
                    self._lit = []
                    self._squote = self._escape = False
                    i = j + 1
            elif self._dquote:
                j = s.find('"', i)
                end = n if j < 0 else j + 1
                self._raw_add(s[i:end])
                self._code_add(s[i:end])
                if j >= 0:
                    self._dquote = False  # a doubled "" simply reopens at the next character
                i = end
            elif self._block:
                m = _BLOCK.search(s, i)
                if m is None:
                    self._raw_add(s[i:])
                    i = n
                else:
                    self._block += 1 if m.group() == "/*" else -1
                    self._raw_add(s[i:m.end()])
                    i = m.end()
            else:
                m = _SPECIAL.search(s, i)
                plain = s[i:] if m is None else s[i:m.start()]
                if plain:
                    # Parentheses only matter at a ';' (psql splits there only at depth 0): count them per run.
                    self._parens += plain.count("(") - plain.count(")")
                    self._raw_add(plain)
                    self._code_add(plain)
                if m is None:
                    break
                tok = m.group()
                i = m.end()
                if tok == "--":
                    self._raw_add(s[m.start():])
                    self._code_add(" ")
                    i = n
                elif tok == "/*":
                    self._block = 1
                    self._raw_add(tok)
                    self._code_add(" ")
                elif tok == "'":
                    tail = self._tail
                    self._escape = bool(re.fullmatch(r"(.?[^A-Za-z0-9_$]|)[Ee]", tail)) or tail in ("E", "e")
                    self._code_add("'")
                    self._raw_add(tok)
                    self._squote = True
                elif tok == '"':
                    self._dquote = True
                    self._raw_add(tok)
                    self._code_add(tok)
                elif tok.startswith("$"):
                    before = self._tail[-1:]
                    self._raw_add(tok)
                    if before.isalnum() or before in ("_", "$"):
                        self._code_add(tok)  # part of an identifier, not a quote
                    else:
                        self._dollar = tok
                        self._code_add(tok + " ")
                elif tok == "\\":
                    self._refuse(self._lineno, "a backslash outside a string (a psql meta-command)")
                elif self._parens > 0:
                    self._raw_add(tok)
                    self._code_add(tok)
                else:  # ;
                    self._raw_add(";")
                    self._code_add(";")
                    rest = s[i:]
                    out = self._end_statement()
                    if self._copy and rest.strip():
                        self._refuse(self._lineno, "text after COPY ... FROM stdin; on the same line")
                    if out is not None:
                        yield out + rest if not rest.strip() else out
                    elif not rest.strip():
                        yield rest  # keep the line count of what psql sees close to the dump's
                    if not rest.strip():
                        return
        if not self._open():
            # comments and blank lines between statements pass through as they are
            yield "".join(self._raw)
            self._raw, self._raw_len, self._code = [], 0, []

    def _end_statement(self) -> str | None:
        raw = "".join(self._raw)
        code = _WS.sub(" ", "".join(self._code)).strip()
        lits = self._lits
        line = self._start or self._lineno
        self._raw, self._raw_len, self._code, self._lits = [], 0, [], []
        self._has_code, self._tail, self._parens = False, " ", 0
        self.report.statements += 1
        up = code.upper()
        if self._judge(up, code, lits, line, _WS.sub(" ", raw).strip()) == "drop":
            kind = _DROPPED.match(up)
            key = kind.group(1) if kind else "other"
            self.report.dropped[key] = self.report.dropped.get(key, 0) + 1
            return None
        if _COPY_ANY.match(up):
            self._copy = True
        return raw

    def _judge(self, up: str, code: str, lits: list[str], line: int, raw: str) -> str:
        if up == ";":
            return "run"
        shown = raw[:160]
        for pattern, why in _REFUSED:
            if pattern.search(up):
                self._refuse(line, f"it {why}: {shown}")
        if _DROPPED.match(up):
            return "drop"
        if not _ALLOWED_HEAD.match(up):
            self._refuse(line, f"not a statement pg_dump writes: {shown}")
        if m := _DANGEROUS_FUNC.search(code):
            self._refuse(line, f"it calls {m.group(1)}() (server files, programs or other sessions): {shown}")
        if _COPY_ANY.match(up) and not _COPY_STDIN.match(up):
            self._refuse(line, f"a COPY that is not FROM stdin (a server file or program): {shown}")
        if re.search(r"\bCOPY\b[^;]*\b(TO|FROM) (PROGRAM\b|')", up):
            self._refuse(line, f"it copies to or from a server file or program: {shown}")
        if up.startswith("SELECT"):
            m = _SELECT_OK.match(up)
            if m is None:
                self._refuse(line, f"a SELECT pg_dump does not write: {shown}")
            elif m.group(1) == "SET_CONFIG" and (not lits or lits[0].lower() != "search_path"):
                self._refuse(line, f"it sets something other than search_path: {shown}")
        if m := _EXTENSION.match(up):
            name = m.group(1).strip('"').lower()
            if name not in self.extensions:
                self._refuse(line, f"it creates extension {name!r}, which is not allowed "
                                   f"(allowed: {', '.join(sorted(self.extensions))})")
        return "run"

    def _refuse(self, line: int, why: str) -> None:
        raise UntrustedDumpError(f"{self.source} line {line} refused: {why}. A database dump never needs this; "
                                 "nothing of the dump was kept")


# ------------------------------------------------------------------------------------------------
# The cluster, before and after
# ------------------------------------------------------------------------------------------------

_STATE_SQL = """
SELECT 'role ' || rolname || ' ' || concat_ws(',', rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin,
       rolreplication, rolbypassrls, rolconnlimit) FROM pg_roles
UNION ALL
SELECT 'member ' || r.rolname || ' of ' || g.rolname || ' ' || m.admin_option
  FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member JOIN pg_roles g ON g.oid = m.roleid
UNION ALL
SELECT 'database ' || datname || ' owner ' || pg_get_userbyid(datdba) || ' ' ||
       concat_ws(',', datallowconn, datconnlimit, datistemplate, datacl::text) FROM pg_database
UNION ALL
SELECT 'setting ' || coalesce((SELECT datname FROM pg_database WHERE oid = s.setdatabase), '*') || ' ' ||
       coalesce(pg_get_userbyid(s.setrole), '*') || ' ' || array_to_string(s.setconfig, ' ')
  FROM pg_db_role_setting s
UNION ALL
SELECT 'tablespace ' || spcname || ' owner ' || pg_get_userbyid(spcowner) FROM pg_tablespace
"""
_ERPOPS_SIDE = re.compile(r"(^(database|setting) \S*__erpops_\w+ |\berpops_sandbox_[0-9a-f]+\b)")


def cluster_state(pg: Pg) -> set[str]:
    """Roles (with their attributes), memberships, databases (with owners), settings, tablespaces."""
    return set(pg.psql(_STATE_SQL).splitlines())


def cluster_changes(before: set[str], after: set[str], mine: Iterable[str] = ()) -> list[str]:
    """What changed, as lines `added ...` / `removed ...`; erpops' side databases and sandboxes are ignored.

    mine: names of this run's own objects (its sandbox role, its database) whose lines are compared
    anyway: a change to the run's own role is the very thing to catch.
    """
    own = [n for n in mine if n]

    def relevant(line: str) -> bool:
        return any(f" {n} " in f" {line} " for n in own) or not _ERPOPS_SIDE.search(line)

    return ([f"added: {x}" for x in sorted(after - before) if relevant(x)]
            + [f"removed: {x}" for x in sorted(before - after) if relevant(x)])


# ------------------------------------------------------------------------------------------------
# The sandbox
# ------------------------------------------------------------------------------------------------


@dataclass
class Sandbox:
    admin: Pg
    role: str
    password: str = field(repr=False)

    @property
    def pg(self) -> Pg:
        return Pg(host=self.admin.host, port=self.admin.port, user=self.role, password=self.password)


def _admin_rights(pg: Pg) -> tuple[bool, bool]:
    out = pg.scalar("SELECT rolsuper::int || ',' || rolcreaterole::int FROM pg_roles WHERE rolname = current_user")
    sup, createrole = [*out.split(","), "0"][:2]
    return sup == "1", createrole == "1"


def create_sandbox(admin: Pg) -> Sandbox:
    """A fresh LOGIN role with no rights at all (PreflightError if the connecting role cannot create one)."""
    superuser, createrole = _admin_rights(admin)
    if not (superuser or createrole):
        raise PreflightError([
            f"role {admin.user} can create no roles: untrusted SQL runs as a fresh role without rights, which "
            f"needs a connecting role with CREATEROLE (ALTER ROLE {admin.user} CREATEROLE) or a superuser"],
            "running untrusted SQL")
    role = SANDBOX_PREFIX + secrets.token_hex(6)
    password = secrets.token_urlsafe(24)
    # The password is a literal inside the SQL text on psql's stdin, never on a command line or in a log.
    admin.psql(f"CREATE ROLE {quote_ident(role)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
               f"NOBYPASSRLS NOINHERIT CONNECTION LIMIT 4 PASSWORD {quote_literal(password)} "
               "VALID UNTIL 'infinity';\n" + leftovers.mark_sql("ROLE", quote_ident(role), "sandbox"))
    if not superuser:
        admin.psql(f"GRANT {quote_ident(role)} TO {quote_ident(admin.user)}")
    return Sandbox(admin, role, password)


def drop_sandbox(sandbox: Sandbox, db: str | None) -> None:
    admin = sandbox.admin
    with contextlib.suppress(ErpopsError):
        admin.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = "
                   + quote_literal(sandbox.role))
    if db is not None:
        with contextlib.suppress(ErpopsError):
            if admin.database_exists(db):
                admin.psql(f"DROP OWNED BY {quote_ident(sandbox.role)}", db)
    admin.psql(f"DROP ROLE IF EXISTS {quote_ident(sandbox.role)}")


def _post_checks(admin: Pg, db: str, role: str, source: str) -> list[str]:
    problems = []
    definer = admin.scalar(
        "SELECT string_agg(p.oid::regprocedure::text, ', ') FROM pg_proc p WHERE p.prosecdef "
        f"AND p.proowner = (SELECT oid FROM pg_roles WHERE rolname = {quote_literal(role)})", db)
    if definer:
        problems.append(f"{source} created SECURITY DEFINER functions: {definer}")
    tables = int(admin.scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN "
        "('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'",
        db) or 0)
    if tables == 0:
        problems.append(f"{source} restored nothing: the database holds no table (an empty or truncated dump?)")
    return problems


@dataclass
class UntrustedResult:
    screen: ScreenReport
    sandbox_role: str
    owner: str

    def to_dict(self) -> dict[str, Any]:
        return {"screen": self.screen.to_dict(), "sandbox_role": self.sandbox_role, "owner": self.owner,
                "cluster_unchanged": True}


def execute_untrusted_sql(
    admin: Pg,
    db: str,
    lines: Iterable[bytes],
    *,
    create_database: Callable[[Pg, str, str], None],
    owner: str | None = None,
    source: str = "dump.sql",
    extensions: frozenset[str] = ALLOWED_EXTENSIONS,
    on_started: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> UntrustedResult:
    """Create db owned by a fresh sandbox role, run the screened lines in it as that role, check, hand over.

    create_database(admin, db, role) creates the empty database owned by role. On success db and
    everything in it belong to owner (default: the connecting role) and the sandbox is gone; on
    any failure (UntrustedDumpError, OperationFailed, IntegrityError) neither db nor the role exists.
    """
    from erpops.backup.odoozip import restricted_lines

    final_owner = owner or admin.user
    before = cluster_state(admin)
    sandbox = create_sandbox(admin)
    screen = Screen(source, extensions=extensions)
    created = False
    try:
        create_database(admin, db, sandbox.role)
        created = True
        before = before | {x for x in cluster_state(admin) if sandbox.role in x or f" {db} " in f" {x} "}
        _run_psql(sandbox.pg, db, restricted_lines(screen.lines(lines), secrets.token_hex(16)), source, on_started)
        changes = cluster_changes(before, cluster_state(admin), mine=[sandbox.role, db])
        if changes:
            raise IntegrityError(f"{source} changed the cluster outside its database, so the import failed:\n"
                                 + "\n".join(f"  - {c}" for c in changes[:20]))
        problems = _post_checks(admin, db, sandbox.role, source)
        if problems:
            raise IntegrityError("; ".join(problems))
        admin.psql(f"REASSIGN OWNED BY {quote_ident(sandbox.role)} TO {quote_ident(final_owner)};\n"
                   f"DROP OWNED BY {quote_ident(sandbox.role)};", db)
        admin.psql(f"ALTER DATABASE {quote_ident(db)} OWNER TO {quote_ident(final_owner)}")
    except BaseException as exc:
        if created:
            try:
                admin.drop_database(db)
            except ErpopsError as drop_exc:
                exc.add_note(f"and the database {db} could not be dropped: {drop_exc}; drop it by hand")
        with contextlib.suppress(ErpopsError):
            drop_sandbox(sandbox, None)
        raise
    drop_sandbox(sandbox, db)
    return UntrustedResult(screen.report, sandbox.role, final_owner)


def _run_psql(pg: Pg, db: str, lines: Iterable[bytes], source: str,
              on_started: Callable[[subprocess.Popen[bytes]], None] | None) -> None:
    from erpops.backup.leftovers import preexec

    argv = [client_bin("psql"), "-X", "-w", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-d", db,
            "-f", "-"]
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors,
                                env=pg.env(), preexec_fn=preexec())
        if on_started is not None:
            on_started(proc)
        assert proc.stdin is not None
        try:
            for line in lines:
                proc.stdin.write(line)
        except BrokenPipeError:
            pass  # psql stopped at an error: its exit code and stderr say which
        except BaseException:
            # Refused mid-stream (or interrupted): psql dies before COMMIT, the transaction rolls back.
            proc.kill()
            proc.wait()
            raise
        finally:
            with contextlib.suppress(BrokenPipeError, OSError):
                proc.stdin.close()
        code = proc.wait()
        if code != 0:
            errors.seek(0)
            text = errors.read().decode("utf-8", "replace").strip()
            tail = "\n".join(text.splitlines()[-10:])
            if "password authentication failed" in text or "no pg_hba.conf entry" in text:
                raise ServiceError(f"cannot log in as the sandbox role {pg.user} to run {source}: {tail}; allow "
                                   "password logins for it in pg_hba.conf (host all all ... scram-sha-256)")
            raise OperationFailed(f"restoring {source} into {db!r} failed (psql exit {code}); the database was "
                                  f"dropped:\n{tail}")


def custom_to_sql(raw: Any, *, work_err: IO[bytes]) -> tuple[subprocess.Popen[bytes], threading.Thread]:
    """pg_restore -f - reading raw (a binary stream) on a thread: returns (process, feeder thread).

    pg_restore connects to nothing here: it only renders the archive as SQL on its stdout.
    """
    from erpops.backup.leftovers import preexec

    proc = subprocess.Popen([client_bin("pg_restore"), "--no-owner", "--no-privileges", "-f", "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=work_err,
                            preexec_fn=preexec())
    assert proc.stdin is not None
    failure: list[BaseException] = []

    def feed() -> None:
        try:
            while data := raw.read(CHUNK):
                proc.stdin.write(data)  # type: ignore[union-attr]
        except BrokenPipeError:
            pass
        except BaseException as exc:
            failure.append(exc)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        finally:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # type: ignore[union-attr]

    thread = threading.Thread(target=feed, name="erpops-pg_restore-feed", daemon=True)
    thread.failure = failure  # type: ignore[attr-defined]
    thread.start()
    return proc, thread


__all__ = ["ALLOWED_EXTENSIONS", "MAX_LINE_BYTES", "Screen", "ScreenReport", "UntrustedDumpError",
           "bounded_lines", "cluster_changes", "cluster_state", "create_sandbox", "custom_to_sql",
           "drop_sandbox", "execute_untrusted_sql"]
