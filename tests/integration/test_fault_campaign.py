"""The "also seen" cases of issue 10's fault campaign, each as a user meets it: the command, its exit code, its JSON.

Real PostgreSQL 15 on loopback; the CLI commands run in-process through click (as
test_interop_cli does), so the exit code is the one erpops.cli.main would set.
"""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import zipfile
from collections import namedtuple
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from erpops.backup import engine, filestore
from erpops.backup.commands import restore_cmd, verify_cmd
from erpops.backup.interop import COMMANDS
from erpops.backup.storage import FileTarget
from erpops.errors import ErpopsError
from erpops.local import LocalPostgres
from erpops.pg import Pg

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("drop_databases_made_here")]

MANIFEST = {"odoo_dump": "1", "db_name": "src", "version": "17.0", "version_info": [17, 0, 0, "final", 0, ""],
            "major_version": "17.0", "pg_version": "15.0", "modules": {"base": "17.0.1.3"}}
DUMP = "CREATE TABLE public.t (id integer);\nCOPY public.t (id) FROM stdin;\n1\n2\n\\.\n"


@pytest.fixture(scope="module")
def server(pg: LocalPostgres) -> Pg:
    return Pg.from_local(pg)


def run_cli(args: list[str], env: dict[str, str]) -> tuple[int, Any, str]:
    group = click.Group("erpops", commands={c.name: c for c in [*COMMANDS, verify_cmd, restore_cmd]})
    result = CliRunner().invoke(group, args, env=env)
    exc = result.exception
    if exc is not None and not isinstance(exc, ErpopsError | SystemExit):
        raise exc  # a traceback: exactly what these cases must not produce
    code = exc.exit_code if isinstance(exc, ErpopsError) else result.exit_code
    body = json.loads(result.stdout) if "--json" in args and result.stdout.strip() else None
    return code, body, result.stderr


def make_zip(path: Path, dump: str = DUMP, files: int = 1) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("dump.sql", dump)
        zf.writestr("manifest.json", json.dumps(MANIFEST))
        for i in range(files):
            data = f"file {i}".encode()
            sha = hashlib.sha1(data, usedforsecurity=False).hexdigest()
            zf.writestr(f"filestore/{sha[:2]}/{sha}", data)
    return path


def test_import_onto_a_full_disk_is_refused_before_anything_is_created(
    server: Pg, pg: LocalPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage(10 << 30, 10 << 30, 1 << 20))
    code, body, _ = run_cli(["import", "odoo-zip", str(make_zip(tmp_path / "a.zip")), "--to", "full_disk",
                             "--filestore", str(tmp_path / "fs"), "--json"], pg.env())
    assert code == 6 and body["ok"] is False
    assert any("not enough free disk for the filestore" in p for p in body["problems"])
    assert not server.database_exists("full_disk")


def test_import_failing_on_a_full_disk_midway_reports_it_without_a_traceback(
    server: Pg, pg: LocalPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from erpops.backup import odoozip

    def no_space(*_args: Any, **_kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(odoozip, "_extract_filestore", no_space)
    code, body, _ = run_cli(["import", "odoo-zip", str(make_zip(tmp_path / "a.zip")), "--to", "enospc",
                             "--filestore", str(tmp_path / "fs"), "--json"], pg.env())
    assert code == 4, body
    assert "No space left on device" in body["error"]
    assert not server.database_exists("enospc")
    assert [p.name for p in (tmp_path / "fs").iterdir()] == []


def test_a_300_character_set_id_on_a_file_target_is_a_usage_error(pg: LocalPostgres, tmp_path: Path) -> None:
    code, body, _ = run_cli(["verify", "x" * 300, "--target", f"file://{tmp_path}", "--json"], pg.env())
    assert code == 2 and body["ok"] is False
    assert "is not a backup set id" in body["error"]


def test_export_and_verify_agree_on_a_set_whose_dump_is_gone(server: Pg, pg: LocalPostgres, tmp_path: Path) -> None:
    target = FileTarget(tmp_path / "target")
    set_id = engine.import_odoo_zip(target, make_zip(tmp_path / "a.zip"), db="src")["set_id"]
    target.delete(engine.load_manifest(target, set_id).dump.key)
    url = f"file://{tmp_path / 'target'}"
    verify_code, _, _ = run_cli(["verify", set_id, "--target", url, "--json"], pg.env())
    export_code, body, _ = run_cli(["export", "odoo-zip", set_id, "--out", str(tmp_path / "out.zip"), "--target",
                                    url, "--json"], pg.env())
    assert verify_code == export_code == 5
    assert "is missing" in body["error"]
    assert not (tmp_path / "out.zip").exists()


def test_an_import_that_restores_nothing_is_refused(server: Pg, pg: LocalPostgres, tmp_path: Path) -> None:
    dump = "SET statement_timeout = 0;\n-- a dump cut off before its first table\n"
    code, body, _ = run_cli(["import", "odoo-zip", str(make_zip(tmp_path / "e.zip", dump)), "--to", "nothing",
                             "--filestore", str(tmp_path / "fs"), "--json"], pg.env())
    assert code == 5 and "restored nothing" in body["error"]
    assert not server.database_exists("nothing")


def test_ctrl_c_during_the_filestore_copy_drops_the_queued_transfers() -> None:
    """The first transfers run; Ctrl-C arrives, handed by the kernel to a worker thread; the hundreds still
    queued never start. The main thread acts on a signal only when it runs Python code: a wait with no end
    would sleep on until every transfer was done."""
    import time

    started: list[int] = []
    lock = threading.Lock()

    def transfer(i: int) -> int:
        with lock:
            started.append(i)
        if i == 4:
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # to this worker thread, not the main one
        time.sleep(0.05)  # the transfer's own work (not a wait on a condition)
        return i

    with pytest.raises(KeyboardInterrupt):
        filestore.run_parallel(list(range(300)), transfer, workers=2)
    assert len(started) < 100, f"{len(started)} of 300 transfers ran after Ctrl-C"


def test_ctrl_c_while_the_transfers_are_still_being_queued_drops_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C lands while the main thread queues the transfers (the first ones already run): the queued ones
    never start. Before, the pool's own exit waited for all 249 queued by then."""
    import time

    started: list[int] = []

    class CtrlCAt250(filestore.ThreadPoolExecutor):
        queued = 0

        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            CtrlCAt250.queued += 1
            if CtrlCAt250.queued == 250:
                raise KeyboardInterrupt
            return super().submit(fn, *args, **kwargs)

    def transfer(i: int) -> int:
        started.append(i)
        time.sleep(0.05)
        return i

    monkeypatch.setattr(filestore, "ThreadPoolExecutor", CtrlCAt250)
    with pytest.raises(KeyboardInterrupt):
        filestore.run_parallel(list(range(300)), transfer, workers=2)
    assert len(started) < 100, f"{len(started)} of the 249 queued transfers ran after Ctrl-C"


def test_ctrl_c_after_the_dump_while_the_filestore_copy_runs_stops_the_copy(
    server: Pg, pg: LocalPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dump is stored, the filestore copy still runs beside it, Ctrl-C: the backup ends with the copy
    stopped, not with the copy's queued files still being read behind an interpreter that cannot exit."""
    import time

    code, _, _ = run_cli(["import", "odoo-zip", str(make_zip(tmp_path / "a.zip")), "--to", "ctrl_c_src",
                          "--filestore", str(tmp_path / "fs"), "--json"], pg.env())
    assert code == 0
    started: list[int] = []
    dumped, ended = threading.Event(), threading.Event()
    store_dump = engine.store_dump

    def store_then_tell(*args: Any, **kwargs: Any) -> Any:
        artifact = store_dump(*args, **kwargs)
        dumped.set()
        return artifact

    def slow_copy(source: Any, target: Any, reporter: Any, workers: int, *, previous: Any,
                  stop: threading.Event) -> Any:
        def one(i: int) -> int:
            if stop.is_set():
                raise filestore.Stopped()
            started.append(i)
            if i == 10:
                assert dumped.wait(60), "the dump was not stored"
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
            time.sleep(0.05)
            return i

        try:
            filestore.run_parallel(list(range(300)), one, workers)
        finally:
            ended.set()

    monkeypatch.setattr(engine, "copy_filestore", slow_copy)
    monkeypatch.setattr(engine, "store_dump", store_then_tell)
    target = FileTarget(tmp_path / "target")
    with pytest.raises(KeyboardInterrupt):
        engine.backup(target, server, "ctrl_c_src", stack="dev", filestore=str(tmp_path / "fs"), workers=2)
    assert ended.is_set(), "the filestore copy still ran when the backup returned"
    assert len(started) < 100, f"{len(started)} of 300 files were copied after Ctrl-C"
    assert engine.scan_sets(target).complete == []
