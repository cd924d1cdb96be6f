"""`locust -f loadtests/locustfile.py`, as a person runs it: headless, and with the web UI (options for the
Odoo database and login on the start form, the password from $ERPOPS_ODOO_PASSWORD), against OdooDouble."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from erpops.local import free_port
from loadtests.testing.odoo_double import DB, PASSWORD, OdooDouble
from tests.integration.test_loadtest import project  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "loadtests" / "locustfile.py"
LOCUST = str(Path(sys.executable).parent / "locust")
PERSONA_REQUESTS = {"mrp.production:web_search_read", "stock.picking:web_search_read", "page:/web"}


def _env() -> dict[str, str]:
    return {**os.environ, "ERPOPS_ODOO_PASSWORD": PASSWORD}


@pytest.fixture
def tmp_path(project: Path) -> Path:  # noqa: F811 (the imported fixture)
    """Locust runs in a project whose dev stack has short think times (the spec is read from the cwd)."""
    return project


def test_headless_run_of_the_personas(tmp_path: Path) -> None:
    with OdooDouble(base_ms=2, jitter_ms=1) as odoo:
        done = subprocess.run(
            [LOCUST, "-f", str(LOCUSTFILE), "--headless", "-u", "10", "-r", "10", "-t", "6s", "--host", odoo.url,
             "--stack", "dev", "--odoo-db", DB, "--odoo-login", "admin", "--json", "--only-summary"],
            cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    stats = {e["name"]: e for e in json.loads(done.stdout)}
    assert set(stats) >= PERSONA_REQUESTS, sorted(stats)
    assert stats["session:authenticate"]["num_failures"] == 0
    assert sum(e["num_failures"] for e in stats.values()) == 0, done.stderr[-2000:]


def test_read_only_run_writes_nothing(tmp_path: Path) -> None:
    with OdooDouble(base_ms=2, jitter_ms=1) as odoo:
        before = odoo.snapshot()
        done = subprocess.run(
            [LOCUST, "-f", str(LOCUSTFILE), "--headless", "-u", "10", "-r", "10", "-t", "5s", "--host", odoo.url,
             "--odoo-db", DB, "--read-only", "--json", "--only-summary"],
            cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=180, check=False)
        after = odoo.snapshot()
    assert done.returncode == 0, done.stderr[-3000:]
    assert after == before
    assert not [e for e in json.loads(done.stdout) if e["name"].endswith((":create", ":action_confirm"))]


def _get(url: str, data: dict[str, str] | None = None) -> bytes:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    with urllib.request.urlopen(url, data=body, timeout=30) as resp:  # noqa: S310 (loopback)
        return resp.read()


def _wait(predicate: object, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError("timed out")


def test_web_ui_start_form_carries_the_odoo_options_and_runs_the_personas(tmp_path: Path) -> None:
    port = free_port()
    with OdooDouble(base_ms=2, jitter_ms=1) as odoo:
        proc = subprocess.Popen([LOCUST, "-f", str(LOCUSTFILE), "--web-host", "127.0.0.1", "--web-port", str(port),
                                 "--host", odoo.url, "--stack", "dev"], cwd=tmp_path, env=_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            ui = f"http://127.0.0.1:{port}"
            _wait(lambda: b"odoo_db" in _get(ui + "/"))
            page = _get(ui + "/").decode()
            assert "odoo_login" in page and "read_only" in page  # editable on the start form
            assert "odoo_password" not in page  # the password comes from the environment, never the form
            started = json.loads(_get(ui + "/swarm", {"user_count": "5", "spawn_rate": "5", "host": odoo.url,
                                                     "odoo_db": DB, "odoo_login": "admin"}))
            assert started["success"], started

            def served() -> bool:
                rows = json.loads(_get(ui + "/stats/requests"))["stats"]
                return {r["name"] for r in rows} >= PERSONA_REQUESTS

            _wait(served)
            rows = json.loads(_get(ui + "/stats/requests"))["stats"]
            assert sum(r["num_failures"] for r in rows) == 0, rows
            _get(ui + "/stop", {})
        finally:
            proc.terminate()
            proc.wait(timeout=60)
