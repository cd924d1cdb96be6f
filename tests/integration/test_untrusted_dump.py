"""Hostile dump.sql files, imported as a superuser would: refused by the screen or neutered by the sandbox.

Real PostgreSQL 15 on loopback, connecting as its superuser (as the runbooks do). Every hostile
case asserts what an operator would check afterwards: the command failed, no database of that
name exists, no file appeared on the server, and the cluster's roles and databases are the ones
it had before. Control tests run the same payloads as the superuser directly, to show each one
really does its damage when nothing stands in the way.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from erpops.backup import engine
from erpops.backup.odoozip import import_odoo_zip
from erpops.backup.restore import restore
from erpops.backup.storage import FileTarget
from erpops.backup.untrusted import Screen, UntrustedDumpError
from erpops.errors import ErpopsError, OperationFailed, PreflightError
from erpops.local import LocalPostgres
from erpops.pg import Pg, quote_ident

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("drop_databases_made_here")]

MANIFEST = {"odoo_dump": "1", "db_name": "src", "version": "17.0", "version_info": [17, 0, 0, "final", 0, ""],
            "major_version": "17.0", "pg_version": "15.0", "modules": {"base": "17.0.1.3"}}
HEAD = ("SET statement_timeout = 0;\nSET client_encoding = 'UTF8';\n"
        "SELECT pg_catalog.set_config('search_path', '', false);\n"
        "CREATE TABLE public.res_partner (id integer NOT NULL, name text);\n")


@pytest.fixture(scope="module")
def admin(pg: LocalPostgres) -> Pg:
    return Pg.from_local(pg)


@pytest.fixture()
def victim(admin: Pg) -> Iterator[str]:
    """Another database on the same server, which a dump must not be able to touch."""
    name = "victim_" + secrets.token_hex(3)
    admin.psql(f"CREATE DATABASE {quote_ident(name)}")
    yield name
    admin.psql(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")


def server_file(tag: str) -> Path:
    """A path the server's OS user can write (it is not the test's user): /tmp, unique, absent."""
    path = Path("/tmp") / f"erpops-untrusted-{tag}-{secrets.token_hex(4)}"
    assert not path.exists()
    return path


def cluster(admin: Pg) -> tuple[set[str], set[str]]:
    """(roles with their attributes, databases with their owners), read as an operator would."""
    roles = set(admin.psql("SELECT rolname || ' ' || rolsuper || rolcreaterole || rolcreatedb FROM pg_roles")
                .splitlines())
    dbs = set(admin.psql("SELECT datname || ' ' || pg_get_userbyid(datdba) FROM pg_database").splitlines())
    return roles, dbs


def make_zip(path: Path, dump: str) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("dump.sql", dump)
        zf.writestr("manifest.json", json.dumps(MANIFEST))
        data = b"attachment"
        sha = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        zf.writestr(f"filestore/{sha[:2]}/{sha}", data)
    return path


def hostile_cases(victim: str, out: Path) -> dict[str, tuple[str, str]]:
    """name -> (statement as a crafted dump.sql would hold it, what the refusal says)."""
    return {
        "program": (f"COPY (SELECT 'pwned') TO PROGRAM 'id > {out}';", "COPY that is not FROM stdin"),
        "file_write": (f"SELECT pg_catalog.lo_export(pg_catalog.lo_from_bytea(0, 'x'), '{out}');", "lo_export"),
        "file_read": ("COPY public.res_partner (name) FROM '/etc/hostname';", "COPY that is not FROM stdin"),
        "file_read_function": ("SELECT pg_catalog.setval('x', length(pg_read_file('/etc/hostname')));",
                               "pg_read_file"),
        "role": ("CREATE ROLE evil_" + out.name[-8:] + " SUPERUSER LOGIN;", "creates, changes or drops a role"),
        "other_database": (f"ALTER DATABASE {victim} RENAME TO {victim}_gone;", "creates or changes a database"),
        "alter_system": ("ALTER SYSTEM SET archive_command = 'id';", "ALTER SYSTEM"),
        "extension": ("CREATE EXTENSION IF NOT EXISTS file_fdw;", "extension 'file_fdw'"),
        "role_switch": ("SET ROLE postgres;", "switches roles"),
        "security_definer": ("CREATE FUNCTION public.f() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$;",
                             "SECURITY DEFINER"),
        "meta_command": (f"\\! touch {out}", "psql meta-command"),
        "do_block": (f"DO $$ BEGIN EXECUTE 'COPY (SELECT 1) TO PROGRAM ''touch {out}'''; END $$;",
                     "not a statement pg_dump writes"),
        "commit_midway": ("COMMIT;", "controls the transaction"),
    }


CASES = ["program", "file_write", "file_read", "file_read_function", "role", "other_database", "alter_system",
         "extension", "role_switch", "security_definer", "meta_command", "do_block", "commit_midway"]


@pytest.mark.parametrize("case", CASES)
def test_a_hostile_zip_is_refused_with_its_line_and_changes_nothing(
    case: str, admin: Pg, victim: str, tmp_path: Path
) -> None:
    out = server_file(case)
    statement, why = hostile_cases(victim, out)[case]
    zip_path = make_zip(tmp_path / "evil.zip", HEAD + "\n" + statement + "\n")
    before = cluster(admin)
    db = "imported_" + case
    with pytest.raises(UntrustedDumpError) as caught:
        import_odoo_zip(zip_path, admin, db, tmp_path / "fs")
    assert why in str(caught.value)
    assert "dump.sql line 6 refused" in str(caught.value)  # HEAD is 4 lines, then a blank one
    assert caught.value.exit_code == 5
    assert not out.exists(), f"{out} was written on the server"
    assert not admin.database_exists(db)
    assert cluster(admin) == before
    assert admin.database_exists(victim)
    assert not (tmp_path / "fs" / db).exists()


# Payloads the screen cannot see (built at run time inside a function body): the sandbox role stops them.
DYNAMIC = {
    "program": "EXECUTE 'COP' || 'Y (SELECT 1) TO PRO' || 'GRAM ''id > {out}''';",
    "file_write": "PERFORM lo_ex' || 'port(lo_from_bytea(0, ''x''), ''{out}'');",
    "file_read": "EXECUTE 'COP' || 'Y public.res_partner (name) FROM ''/etc/hostname''';",
    "role": "EXECUTE 'CREATE ' || 'ROLE evil_dynamic SUPERUSER';",
    "other_database": "EXECUTE 'ALTER ' || 'DATABASE {victim} RENAME TO {victim}_gone';",
    "grant_self": "EXECUTE 'GRANT pg_execute_server_program TO ' || current_user;",
}


@pytest.mark.parametrize("case", sorted(DYNAMIC))
def test_what_the_screen_cannot_see_fails_on_the_sandbox_roles_rights(
    case: str, admin: Pg, victim: str, tmp_path: Path
) -> None:
    out = server_file("dyn-" + case)
    body = DYNAMIC[case].format(out=out, victim=victim)
    if case == "file_write":  # PERFORM needs a query, not a string: build it with EXECUTE as well
        body = f"EXECUTE 'SELECT lo_ex' || 'port(lo_from_bytea(0, ''x''), ''{out}'')';"
    dump = (HEAD + "CREATE FUNCTION public.payload() RETURNS integer LANGUAGE plpgsql AS $$\n"
            f"BEGIN\n    {body}\n    RETURN 1;\nEND $$;\n"
            "CREATE TABLE public.t (id integer CHECK (public.payload() = 1));\n"
            "COPY public.t (id) FROM stdin;\n1\n\\.\n")
    zip_path = make_zip(tmp_path / "dyn.zip", dump)
    before = cluster(admin)
    denied = r"(?i)permission denied|must be superuser|must be owner|must have admin option"
    with pytest.raises(OperationFailed, match=denied):
        import_odoo_zip(zip_path, admin, "dyn_" + case, tmp_path / "fs")
    assert not out.exists()
    assert not admin.database_exists("dyn_" + case)
    assert cluster(admin) == before
    assert admin.database_exists(victim)


@pytest.mark.parametrize("case", ["program", "role"])
def test_control_the_payload_does_its_damage_as_a_superuser(case: str, admin: Pg, tmp_path: Path) -> None:
    """Without the sandbox the same SQL works: the tests above would catch a sandbox that lets it through."""
    out = server_file("control")
    role = "evil_control_" + secrets.token_hex(3)
    sql = {"program": f"COPY (SELECT 'pwned') TO PROGRAM 'id > {out}'",
           "role": f"CREATE ROLE {role} SUPERUSER"}[case]
    admin.psql(sql)
    try:
        if case == "program":
            assert out.exists()
        else:
            got = admin.psql(f"SELECT rolname || ' ' || rolsuper FROM pg_roles WHERE rolname = '{role}'")
            assert f"{role} true" in got
    finally:
        admin.psql(f"DROP ROLE IF EXISTS {role}")
        if out.exists():
            admin.psql(f"COPY (SELECT 1) TO PROGRAM 'rm -f {out}'")


def test_a_good_dump_is_owned_by_the_connecting_role_and_the_sandbox_is_gone(admin: Pg, tmp_path: Path) -> None:
    dump = HEAD + ("GRANT ALL ON SCHEMA public TO PUBLIC;\n"
                   "COPY public.res_partner (id, name) FROM stdin;\n1\tAzure; Interior\n2\t\\\\N 'quote\n\\.\n")
    import_odoo_zip(make_zip(tmp_path / "good.zip", dump), admin, "good_import", tmp_path / "fs")
    assert admin.scalar("SELECT count(*) FROM public.res_partner", "good_import") == "2"
    assert admin.scalar("SELECT tableowner FROM pg_tables WHERE tablename = 'res_partner'", "good_import") == "postgres"
    assert admin.scalar("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'good_import'") == "postgres"
    assert admin.scalar("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'erpops_sandbox_%'") == "0"


def test_a_dump_that_restores_no_table_is_refused(admin: Pg, tmp_path: Path) -> None:
    dump = "SET statement_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n"
    with pytest.raises(ErpopsError, match="restored nothing"):
        import_odoo_zip(make_zip(tmp_path / "empty.zip", dump), admin, "empty_import", tmp_path / "fs")
    assert not admin.database_exists("empty_import")


def test_an_overlong_line_is_refused_without_holding_it(
    admin: Pg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from erpops.backup import untrusted

    monkeypatch.setattr(untrusted, "MAX_LINE_BYTES", 1024 * 1024)
    dump = HEAD + "COPY public.res_partner (id, name) FROM stdin;\n1\t" + "a" * (3 * 1024 * 1024) + "\n\\.\n"
    with pytest.raises(UntrustedDumpError, match=r"line 6 is longer than 1 MiB"):
        import_odoo_zip(make_zip(tmp_path / "long.zip", dump), admin, "long_import", tmp_path / "fs")
    assert not admin.database_exists("long_import")


def test_without_createrole_the_import_is_refused_before_anything_is_created(admin: Pg, tmp_path: Path) -> None:
    role = "plain_" + secrets.token_hex(3)
    admin.psql(f"CREATE ROLE {role} LOGIN CREATEDB")
    try:
        with pytest.raises(PreflightError, match="CREATEROLE"):
            import_odoo_zip(make_zip(tmp_path / "g.zip", HEAD), Pg(admin.host, admin.port, role), "no_role",
                            tmp_path / "fs")
        assert not admin.database_exists("no_role")
    finally:
        admin.psql(f"DROP ROLE {role}")


def test_a_hostile_set_from_a_zip_is_refused_at_restore(admin: Pg, tmp_path: Path) -> None:
    """`backup --from-zip` stores the dump as it is; restore screens it and runs it as the sandbox."""
    out = server_file("set")
    target = FileTarget(tmp_path / "target")
    zip_path = make_zip(tmp_path / "evil.zip", HEAD + f"COPY (SELECT 1) TO PROGRAM 'id > {out}';\n")
    stored = engine.import_odoo_zip(target, zip_path, db="src")
    before = cluster(admin)
    with pytest.raises(UntrustedDumpError, match="line 5 refused"):
        restore(target, stored["set_id"], pg=admin, db="from_evil_set", skip_filestore=True)
    assert not out.exists()
    assert not admin.database_exists("from_evil_set")
    assert cluster(admin) == before


def test_an_untrusted_custom_dump_is_screened_too(admin: Pg, tmp_path: Path) -> None:
    admin.psql("CREATE DATABASE custom_src")
    admin.psql("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2);"
               "CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$;", "custom_src")
    target = FileTarget(tmp_path / "target")
    made = engine.backup(target, admin, "custom_src")
    with pytest.raises(UntrustedDumpError, match="SECURITY DEFINER"):
        restore(target, made["set_id"], pg=admin, db="custom_untrusted", untrusted=True, neutralize=False)
    assert not admin.database_exists("custom_untrusted")
    admin.psql("DROP FUNCTION f()", "custom_src")
    made = engine.backup(target, admin, "custom_src")
    report = restore(target, made["set_id"], pg=admin, db="custom_untrusted", untrusted=True, neutralize=False)
    assert report["untrusted"]["screen"]["statements"] > 0
    assert admin.scalar("SELECT count(*) FROM t", "custom_untrusted") == "2"
    assert admin.scalar("SELECT tableowner FROM pg_tables WHERE tablename = 't'", "custom_untrusted") == "postgres"


@pytest.mark.parametrize(("text", "ok"), [
    ("CREATE TABLE a (v text DEFAULT 'COPY x TO PROGRAM ''id''');", True),  # a literal is data
    ("COMMENT ON TABLE a IS 'CREATE ROLE x; ALTER SYSTEM';", True),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $_$ SELECT 1; $_$;", True),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_read_file('/x'); END $$;", False),
    ("SELECT pg_catalog.set_config('role', 'postgres', false);", False),
    ("CREATE TABLE b (v text);\nCOPY b (v) FROM stdin;\nCREATE ROLE notsql;\n\\.\n", True),  # COPY rows are data
    ("CREATE TABLE c (v text DEFAULT E'it\\'s; CREATE ROLE x');", True),
    ("CREATE TABLE d (v int); /* ; CREATE ROLE x; */ CREATE INDEX i ON d (v);", True),
    ("CREATE RULE r AS ON INSERT TO d DO ALSO (NOTIFY x; COPY d TO PROGRAM 'id');", False),
])  # fmt: skip
def test_the_screen_reads_sql_as_psql_does(text: str, ok: bool) -> None:
    screen = Screen("dump.sql")
    if ok:
        out = b"".join(screen.lines(line.encode() for line in text.splitlines(keepends=True)))
        assert out.decode() == text
    else:
        with pytest.raises(UntrustedDumpError):
            screen.check(line.encode() for line in text.splitlines(keepends=True))
