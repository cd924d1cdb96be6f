"""SIGTERM, SIGINT and SIGKILL in the middle of real commands: nothing is left behind, or the next run removes it.

Each test runs `python -m erpops.cli` against the session's PostgreSQL 15, waits (on conditions,
never fixed sleeps) until the command is mid-way (its scratch or side database exists and a
pg_dump / pg_restore child runs), signals it, and then checks what an operator would: the side
databases, the child processes, the temp files under $TMPDIR, the incomplete set.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from erpops.backup import leftovers
from erpops.local import LocalPostgres
from erpops.pg import Pg
from healthchecks.core import State, Targets, Thresholds
from healthchecks.postgres import erpops_leftovers

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("drop_databases_made_here")]

ROWS = 1_500_000


@pytest.fixture(scope="module")
def server(pg: LocalPostgres) -> Pg:
    return Pg.from_local(pg)


@pytest.fixture(scope="module")
def odoo_db(server: Pg, tmp_path_factory: pytest.TempPathFactory, odoo_fixture: Path) -> str:
    """The Odoo 17 fixture plus a large table, so that copying it into a scratch database takes a while."""
    from erpops.backup.odoozip import import_odoo_zip

    import_odoo_zip(odoo_fixture, server, "intr_odoo", tmp_path_factory.mktemp("fs"))
    server.psql(f"CREATE TABLE erpops_bulk AS SELECT g AS id, md5(g::text) AS a, md5((g * 7)::text) AS b "
                f"FROM generate_series(1, {ROWS}) g", "intr_odoo")
    return "intr_odoo"


@pytest.fixture(scope="module")
def small_db(server: Pg) -> str:
    server.psql("CREATE DATABASE intr_small")
    server.psql("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 10) g", "intr_small")
    return "intr_small"


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 600.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def side_databases(server: Pg, tag: str) -> list[str]:
    return server.psql(f"SELECT datname FROM pg_database WHERE datname LIKE '%\\_\\_erpops\\_{tag}\\_%'").split()


def run_dirs(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("erpops-run-*"))


class Run:
    """An erpops command in its own session (process group), with $TMPDIR of its own."""

    def __init__(self, args: list[str], pg: LocalPostgres, tmp: Path) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **pg.env(), "TMPDIR": str(tmp)}
        self.proc = subprocess.Popen([sys.executable, "-m", "erpops.cli", *args], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self.ps = psutil.Process(self.proc.pid)

    def children(self, *names: str) -> list[psutil.Process]:
        try:
            kids = self.ps.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [k for k in kids if not names or _name(k) in names]

    def finish(self, timeout: float = 600.0) -> tuple[int, str]:
        out, err = self.proc.communicate(timeout=timeout)
        self.stdout = out.decode("utf-8", "replace")
        return self.proc.returncode, err.decode("utf-8", "replace")


def _name(p: psutil.Process) -> str:
    try:
        return p.name()
    except psutil.Error:
        return ""


def all_gone(procs: list[psutil.Process], timeout: float = 60.0) -> bool:
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return not alive


def backup_args(db: str, target: Path) -> list[str]:
    return ["backup", "--db", db, "--neutralized", "--target", f"file://{target}"]


@pytest.mark.parametrize(("sig", "group", "code"), [(signal.SIGTERM, False, 143), (signal.SIGINT, True, 130)],
                         ids=["sigterm", "sigint-to-the-group"])
def test_a_signal_during_a_neutralized_backup_leaves_nothing(
    sig: signal.Signals, group: bool, code: int, server: Pg, pg: LocalPostgres, odoo_db: str, tmp_path: Path
) -> None:
    target, tmp = tmp_path / "target", tmp_path / "tmp"
    run = Run(backup_args(odoo_db, target), pg, tmp)
    wait_until(lambda: side_databases(server, "neutral") and run.children("pg_dump", "pg_restore"),
               "the scratch copy to be under way")
    children = run.children()
    (os.killpg if group else os.kill)(run.proc.pid, sig)
    rc, err = run.finish()
    assert rc == code, err
    assert "Traceback" not in err, err
    assert all_gone(children), f"children still running: {[_name(c) for c in children if c.is_running()]}"
    assert side_databases(server, "neutral") == []
    assert run_dirs(tmp) == [], "temp files left behind"
    assert list(target.glob("sets/*/*")) == [], "an incomplete set was left in the target"


def test_after_a_sigkill_the_next_run_removes_what_the_dead_one_left(
    server: Pg, pg: LocalPostgres, odoo_db: str, small_db: str, tmp_path: Path
) -> None:
    target, tmp = tmp_path / "target", tmp_path / "tmp"
    run = Run(backup_args(odoo_db, target), pg, tmp)
    scratch = wait_until(lambda: run.children("pg_dump", "pg_restore") and side_databases(server, "neutral"),
                         "the scratch copy to be under way")
    children = run.children()
    os.kill(run.proc.pid, signal.SIGKILL)
    run.finish()
    # The children die with erpops (PR_SET_PDEATHSIG), even though it could not clean up.
    assert all_gone(children), f"orphans: {[_name(c) for c in children if c.is_running()]}"
    assert side_databases(server, "neutral") == scratch, "the scratch database should still be there"

    found = leftovers.find(server)
    assert [(x.name, x.state, x.owner.pid) for x in found if x.what == "database"] == [
        (scratch[0], "dead", run.proc.pid)]
    state, text, _ = erpops_leftovers(Targets(pg=server), Thresholds(levels={}))
    assert state == State.WARN and scratch[0] in text

    prune = Run(["prune", "--target", f"file://{target}", "--json"], pg, tmp)
    rc, err = prune.finish()
    assert rc == 0, err
    pruned = __import__("json").loads(prune.stdout)
    assert list(pruned["dead_backups"].values()) == ["dead"], "prune should see the killed backup as dead"
    # ... and reports what it left: the scratch database on the server, its temp dir on this host
    assert [x["name"] for x in pruned["server_leftovers"] if x["what"] == "database"] == scratch
    assert [x["what"] for x in pruned["server_leftovers"] if x["what"] != "database"] == ["directory"]

    # Any later command against that server removes it (a backup of another database, here).
    rc, err = Run(["backup", "--db", small_db, "--target", f"file://{target}"], pg, tmp).finish()
    assert rc == 0, err
    assert side_databases(server, "neutral") == []
    assert run_dirs(tmp) == []
    state, text, _ = erpops_leftovers(Targets(pg=server), Thresholds(levels={}))
    assert state == State.OK, text


def test_after_a_sigkill_during_restore_replace_the_side_database_and_temp_files_go(
    server: Pg, pg: LocalPostgres, odoo_db: str, tmp_path: Path
) -> None:
    target, tmp = tmp_path / "target", tmp_path / "tmp"
    rc, err = Run(["backup", "--db", odoo_db, "--target", f"file://{target}"], pg, tmp).finish()
    assert rc == 0, err
    set_id = next(target.glob("sets/*/manifest.json")).parent.name
    server.psql(f"CREATE DATABASE intr_replace TEMPLATE {odoo_db}")
    before = server.scalar("SELECT count(*) FROM erpops_bulk", "intr_replace")

    run = Run(["restore", set_id, "--to", "intr_replace", "--replace", "--yes", "--no-neutralize", "-j", "2",
               "--work-dir", str(tmp), "--target", f"file://{target}"], pg, tmp)
    wait_until(lambda: run.children("pg_restore") and side_databases(server, "restore"),
               "pg_restore -j 2 into the side database")
    # the loaders' table of contents and lists (no decompressed dump: they read the stored one)
    assert list(tmp.glob("erpops-run-*/erpops-restore-toc-*")), "the restore's files should be in the marked run dir"
    children = run.children()
    os.kill(run.proc.pid, signal.SIGKILL)
    run.finish()
    assert all_gone(children)
    assert side_databases(server, "restore"), "the side database should be left (the run could not clean up)"
    assert run_dirs(tmp), "its temp dir should be left"
    assert server.scalar("SELECT count(*) FROM erpops_bulk", "intr_replace") == before  # the original is intact

    rc, err = Run(["verify", set_id, "--deep", "--work-dir", str(tmp), "--target", f"file://{target}"],
                  pg, tmp).finish()
    assert rc == 0, err
    assert side_databases(server, "restore") == []
    assert run_dirs(tmp) == []
    assert server.scalar("SELECT count(*) FROM erpops_bulk", "intr_replace") == before


def test_a_live_runs_objects_are_never_swept(server: Pg, tmp_path: Path) -> None:
    """The marker's owner runs (this very process): a sweep from elsewhere must leave its database alone."""
    from erpops.backup import engine

    engine.create_database(server, "intr_live__erpops_scratch_abc123")
    owner_pid = os.getpid()
    me = leftovers.Owner.current()
    assert me.state() == "live"
    found = [x for x in leftovers.find(server) if x.name == "intr_live__erpops_scratch_abc123"]
    assert found == []  # our own objects are not leftovers to ourselves
    # Seen from another process (a child running find), the owner is alive: not dead, not removed.
    code = ("from erpops.backup import leftovers; from erpops.pg import Pg; import os, json; "
            f"pg = Pg('{server.host}', {server.port}, '{server.user}'); "
            "print(json.dumps([(x.name, x.state) for x in leftovers.sweep(pg)] + "
            "[(x.name, x.state) for x in leftovers.find(pg)]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert ["intr_live__erpops_scratch_abc123", "live"] in __import__("json").loads(out)
    assert server.database_exists("intr_live__erpops_scratch_abc123")
    assert owner_pid == os.getpid()
