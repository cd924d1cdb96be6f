"""`erpops loadtest run|record|gate|capacity --json FILE|-`: the one envelope of docs/json-output.md, errors included.

`-` puts the envelope alone on stdout (the tables for people go to stderr); a file gets the same object.
An error (bad input, unreachable server, refused login) is the error envelope there, with the exit code
the command exits with. Against OdooDouble on loopback, Locust in its own process as always.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from erpops.jsonout import SCHEMA_VERSION
from loadtests.testing.odoo_double import DB, PASSWORD, OdooDouble
from tests.integration.loadtest_project import fast_dev_project

pytestmark = pytest.mark.integration



@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project root whose dev stack has short think times."""
    return fast_dev_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def odoo() -> Iterator[OdooDouble]:
    with OdooDouble(base_ms=2, jitter_ms=1) as double:
        yield double


def loadtest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ERPOPS_ODOO_PASSWORD": PASSWORD}
    return subprocess.run([sys.executable, "-m", "loadtests", *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def only_json(stdout: str) -> dict[str, Any]:
    """stdout holds one JSON object and nothing else."""
    doc, end = json.JSONDecoder().raw_decode(stdout.lstrip())
    assert stdout.lstrip()[end:].strip() == "", f"more than the envelope on stdout:\n{stdout}"
    assert isinstance(doc, dict)
    return doc


def envelope_of(doc: dict[str, Any], command: str, ok: bool) -> None:
    assert (doc["schema_version"], doc["command"], doc["ok"]) == (SCHEMA_VERSION, command, ok), doc


def test_run_json_on_stdout_is_the_envelope_and_the_table_goes_to_stderr(project: Path, odoo: OdooDouble) -> None:
    done = loadtest(project, "run", "--stack", "dev", "--host", odoo.url, "--db", DB, "--users", "5",
                    "--duration", "2s", "--json", "-")
    assert done.returncode == 0, done.stderr
    doc = only_json(done.stdout)
    envelope_of(doc, "erpops loadtest run", True)
    assert (doc["stack"], doc["host"], doc["users"], doc["mode"]) == ("dev", odoo.url, 5, "read-write")
    assert doc["total"]["count"] > 0 and "mrp.production:button_mark_done" in doc["requests"]
    assert "Aggregated" in done.stderr  # the table, for people


def test_record_json_holds_the_baseline_it_wrote(project: Path, odoo: OdooDouble, tmp_path: Path) -> None:
    baseline, result = tmp_path / "baselines" / "dev.json", tmp_path / "out" / "record.json"
    done = loadtest(project, "record", "--stack", "dev", "--host", odoo.url, "--db", DB, "--runs", "1",
                    "--warmup", "0.5s", "--duration", "3s", "--users", "30", "--baseline", str(baseline),
                    "--json", str(result))
    assert done.returncode == 0, done.stderr
    doc = json.loads(result.read_text())
    envelope_of(doc, "erpops loadtest record", True)
    assert doc["baseline_path"] == str(baseline) and doc["runs"] == 1
    written = json.loads(baseline.read_text())
    assert {k: doc[k] for k in written} == written  # the baseline's own fields, unchanged, at the top level


@pytest.mark.parametrize(("command", "args", "exit_code", "error_type", "says"), [
    ("run", ["--host", "http://127.0.0.1:9"], 3, "ServiceError", "unreachable"),
    ("record", ["--db", "nope"], 3, "CredentialsError", "refused"),
    ("run", ["--duration", "soon"], 2, "UsageError", "not a duration"),
    ("gate", ["--baseline", "no/such/baseline.json"], 2, "UsageError", "erpops loadtest record"),
    ("capacity", ["--host", "ftp://odoo"], 2, "UsageError", "not an http(s) URL"),
], ids=["run-unreachable", "record-login-refused", "run-bad-duration", "gate-no-baseline", "capacity-bad-host"])
@pytest.mark.parametrize("to", ["stdout", "file"])
def test_an_error_is_the_error_envelope_with_the_exit_code(project: Path, odoo: OdooDouble, tmp_path: Path,
                                                           command: str, args: list[str], exit_code: int,
                                                           error_type: str, says: str, to: str) -> None:
    flags = {"--host": odoo.url, "--db": DB, "--duration": "1s"}
    flags.update(dict(zip(args[::2], args[1::2], strict=True)))
    dest = "-" if to == "stdout" else str(tmp_path / "report" / f"{command}.json")
    done = loadtest(project, command, "--stack", "dev", *[x for kv in flags.items() for x in kv], "--json", dest)
    assert done.returncode == exit_code, done.stderr
    doc = only_json(done.stdout) if to == "stdout" else json.loads(Path(dest).read_text())
    envelope_of(doc, f"erpops loadtest {command}", False)
    assert (doc["exit_code"], doc["error_type"]) == (exit_code, error_type), doc
    assert says in doc["error"] and says in done.stderr  # people still read it on stderr
    if to == "file":
        assert done.stdout == ""
