"""Load tests against OdooDouble (a JSON-RPC test double on loopback); Locust always in its own process.

The personas run through `python -m loadtests.runner`; the gate through `python -m loadtests gate`,
exactly as CI runs it, and we assert on its exit code and the files it writes. Runs are short
(3 x (0.8 s warm-up + 1.5 s), 30 users, 20-50 ms think time) so the file stays within a few minutes on 2 cores.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtests.modes import READ_METHODS
from loadtests.testing.odoo_double import DB, PASSWORD, OdooDouble
from tests import browser
from tests.integration.loadtest_project import WEIGHTS, fast_dev_project
from tests.integration.test_gate_report import CHARTS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# made once per user at start, inside the warm-up the runner never counts
AT_START = {"session:version_info", "session:authenticate", "mrp.bom:search_read", "product.product:search_read",
            "res.partner:search_read", "stock.picking.type:search_read"}
# what the personas declare they send in the steady state, whatever the data (the gate fails without one)
EVERY_REQUEST = {
    "mrp.production:web_search_read", "mrp.production:read",
    "mrp.production:create", "mrp.production:action_confirm", "mrp.production:action_assign",
    "mrp.production:write", "mrp.production:button_mark_done",
    "purchase.order:create", "purchase.order:button_confirm", "purchase.order:read",
    "sale.order:create", "sale.order:action_confirm", "sale.order:read",
    "stock.picking:web_search_read", "stock.picking:create", "stock.picking:action_confirm",
    "stock.move.line:search_read", "stock.picking:button_validate", "stock.picking:read",
    "page:/web", "page:load_menus", "page:action_load",
}
CHECKS = {"check:mrp.production confirmed", "check:mrp.production done", "check:purchase.order confirmed",
          "check:sale.order confirmed", "check:stock.picking done"}
# sent only on some data: lots for tracked products, the wizards Odoo answers with, lot numbers typed in
SOMETIMES = {"mrp.production:action_generate_serial", "mrp.consumption.warning:create",
             "mrp.consumption.warning:action_confirm", "mrp.production.backorder:create",
             "mrp.production.backorder:action_backorder", "mrp.immediate.production:create",
             "mrp.immediate.production:process", "stock.move.line:write", "stock.immediate.transfer:create",
             "stock.immediate.transfer:process", "stock.backorder.confirmation:create",
             "stock.backorder.confirmation:process"}
# --read-only: the reads keep their names; each write step becomes what the person reads before writing
READ_ONLY_REQUEST = {
    "mrp.production:web_search_read", "mrp.production:search_read", "mrp.production:read",
    "mrp.production:search_count", "purchase.order:web_search_read", "sale.order:web_search_read",
    "stock.picking:web_search_read", "stock.picking:read",
    "page:/web", "page:load_menus", "page:action_load",
}
# Short gates (3 x 3 s, 30 users): too few requests per name to see the spec's 1.3x (INCONCLUSIVE is
# the honest verdict there, see test_a_gate_too_short_to_see_is_inconclusive); --detect 4 with a
# 50% tolerance asks only for what 3 x 3 s can see on a busy 2-core machine. benchmarks/gate_power.py
# proves the 1.3x power with longer gates.
GATE = ["--runs", "3", "--warmup", "0.5s", "--duration", "3s", "--users", "30"]
SEEABLE = ["--tolerance", "0.5", "--detect", "4", "--min-samples", "10"]


def _env() -> dict[str, str]:
    return {**os.environ, "ERPOPS_ODOO_PASSWORD": PASSWORD}


def run_personas(url: str, tmp_path: Path, users: int = 10, duration: float = 3.0,
                 extra: tuple[str, ...] = ()) -> dict[str, Any]:
    result = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.runner", "--host", url, "--users", str(users), "--duration", str(duration),
         "--db", DB, "--think", "0.02", "0.05", "--weights", json.dumps(WEIGHTS), "--result", str(result), *extra],
        env=_env(), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    run = json.loads(result.read_text())["runs"][0]
    assert not run["exceptions"], run["exceptions"][0]["traceback"]
    return run


def _own_mos(odoo: OdooDouble) -> dict[int, dict[str, Any]]:
    return {i: mo for i, mo in odoo.snapshot()["mrp.production"].items() if i > 1000}


@pytest.mark.parametrize("serie", ["16.0", "17.0", "18.0"])
@pytest.mark.parametrize("template_only_boms", [False, True])
def test_every_persona_does_its_work_to_the_end(serie: str, template_only_boms: bool, tmp_path: Path) -> None:
    """On Odoo's demo data (every BoM on a template) as on BoMs naming a variant: every declared request
    is sent and succeeds, every business check holds, the MOs the users made are done."""
    with OdooDouble(serie=serie, base_ms=2, jitter_ms=1, template_only_boms=template_only_boms) as odoo:
        run = run_personas(odoo.url, tmp_path)
        served, retries, mos = dict(odoo.served), dict(odoo.retries), _own_mos(odoo)
    assert set(run["declared"]) == EVERY_REQUEST | CHECKS
    assert EVERY_REQUEST <= set(run["requests"]) <= EVERY_REQUEST | SOMETIMES
    failed = {name: e["failures"] for name, e in run["requests"].items() if e["failures"]}
    assert failed == {}, run["errors"]
    assert set(run["checks"]) == CHECKS
    assert all(c["ok"] > 0 and c["failed"] == 0 for c in run["checks"].values()), run["checks"]
    # partial production went through Odoo's wizards: consumption warning, then a backorder
    assert served.get(("mrp.consumption.warning", "action_confirm")) and \
        served.get(("mrp.production.backorder", "action_backorder")), sorted(served)
    done = [mo for mo in mos.values() if mo["state"] == "done"]
    assert len(done) >= run["checks"]["check:mrp.production done"]["ok"]
    assert retries == {}  # each user works its own records: no two transactions fight over one


def test_a_step_that_does_nothing_is_reported_never_sent(project: Path, tmp_path: Path) -> None:
    with OdooDouble(base_ms=2, jitter_ms=1) as odoo:
        odoo.set(broken={"mrp.production:action_confirm": "The product has no bill of materials."})
        done = loadtest(project, "run", "--stack", "dev", "--host", odoo.url, "--db", DB, "--users", "10",
                        "--duration", "2s", "--json", str(tmp_path / "run.json"))
    assert done.returncode == 0, done.stderr
    run = json.loads((tmp_path / "run.json").read_text())
    never = {"mrp.production:button_mark_done", "mrp.production:action_assign", "check:mrp.production done"}
    assert never <= set(run["declared"]) - set(run["requests"]) - set(run["checks"])
    assert "never sent" in done.stdout and "mrp.production:button_mark_done" in done.stdout.split("never sent")[1]
    assert "The product has no bill of materials." in done.stdout


def test_a_jsonrpc_error_with_http_200_is_a_failure(tmp_path: Path) -> None:
    with OdooDouble(base_ms=1, jitter_ms=0, error_rate=1.0) as odoo:
        run = run_personas(odoo.url, tmp_path, users=5, duration=2.0, extra=("--startup-timeout", "20"))
    call_kw = {n: e for n, e in run["requests"].items() if not n.startswith(("session:", "page:"))}
    assert call_kw and all(e["failures"] == e["count"] for e in call_kw.values())
    assert any("JSON-RPC error psycopg2.errors.SerializationFailure" in e["error"] for e in run["errors"])


def test_connection_errors_are_named_not_http_0(tmp_path: Path) -> None:
    run = run_personas("http://127.0.0.1:9", tmp_path, users=2, duration=0.5)
    assert run["started_up"] == 2  # a user that cannot log in has finished its start-up: it failed it
    assert not run["requests"]  # nothing of the start-up leaks into the measured window
    errors = {e["name"]: e["error"] for e in run["startup_errors"]}
    assert "session:version_info" in errors, run["startup_errors"]
    assert errors["session:version_info"].startswith("connection error ConnectionRefusedError")
    assert not any("HTTP 0" in e for e in errors.values())


def test_the_warm_up_ends_when_every_user_finished_start_up(tmp_path: Path) -> None:
    """Logins slower than any fixed warm-up: none of them is counted, the steady state is."""
    with OdooDouble(base_ms=5, jitter_ms=1) as odoo:
        odoo.set(per_name={"session:authenticate": 300})  # 1.5 s per login
        run = run_personas(odoo.url, tmp_path, users=10, duration=2.0)
    assert run["started_up"] == 10 and run["startup_s"] >= 1.5
    assert not set(run["requests"]) & AT_START, sorted(run["requests"])
    assert EVERY_REQUEST - {"page:/web", "page:load_menus", "page:action_load"} <= set(run["requests"])


def _post(port: int, path: str, params: dict[str, Any], cookie: str = "") -> tuple[dict[str, Any], str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, json.dumps({"jsonrpc": "2.0", "method": "call", "params": params, "id": 1}),
                     {"Content-Type": "application/json", "Cookie": cookie})
        resp = conn.getresponse()
        return json.loads(resp.read()), (resp.getheader("Set-Cookie") or "").split(";")[0]
    finally:
        conn.close()


def test_two_writers_of_one_record_are_retried_as_odoo_does() -> None:
    """A second transaction on a record being written waits and retries (Odoo: up to 5 tries)."""
    with OdooDouble(base_ms=1, jitter_ms=0) as odoo:
        # the first writer holds MO 1 for 0.15 s; the retries wait up to 0.2 + 0.4 + 0.8 + 1.6 s
        odoo.set(per_name={"mrp.production:write": 150})
        _, cookie = _post(odoo.port, "/web/session/authenticate", {"db": DB, "login": "admin", "password": PASSWORD})
        write = "/web/dataset/call_kw/mrp.production/write"
        answers: list[dict[str, Any]] = []
        first = threading.Thread(target=lambda: answers.append(_post(odoo.port, write, {
            "model": "mrp.production", "method": "write", "args": [[1], {"qty_producing": 1.0}], "kwargs": {}},
            cookie)[0]))
        first.start()
        deadline = time.monotonic() + 30
        while "mrp.production:1" not in odoo.inflight():
            assert time.monotonic() < deadline, "the first write never started"
            time.sleep(0.01)
        answers.append(_post(odoo.port, write, {"model": "mrp.production", "method": "write",
                                                "args": [[1], {"qty_producing": 2.0}], "kwargs": {}}, cookie)[0])
        first.join(60)
    assert [a.get("result") for a in answers] == [True, True], answers  # the retried write waited, then won
    assert odoo.retries["mrp.production:write"] >= 1
    assert odoo.snapshot()["mrp.production"][1]["qty_producing"] == 2.0  # the retried write came last


def test_a_writer_behind_one_that_rolled_back_goes_ahead_without_a_retry() -> None:
    """PostgreSQL lets a waiting write go ahead when the lock holder rolls back: nothing to retry."""
    with OdooDouble(base_ms=1, jitter_ms=0) as odoo:
        odoo.set(per_name={"mrp.production:action_confirm": 150},
                 broken={"mrp.production:action_confirm": "The operation cannot be completed"})
        _, cookie = _post(odoo.port, "/web/session/authenticate", {"db": DB, "login": "admin", "password": PASSWORD})
        answers: list[dict[str, Any]] = []
        first = threading.Thread(target=lambda: answers.append(_post(
            odoo.port, "/web/dataset/call_kw/mrp.production/action_confirm",
            {"model": "mrp.production", "method": "action_confirm", "args": [[1]], "kwargs": {}}, cookie)[0]))
        first.start()
        deadline = time.monotonic() + 30
        while "mrp.production:1" not in odoo.inflight():
            assert time.monotonic() < deadline, "the first call never started"
            time.sleep(0.01)
        answers.append(_post(odoo.port, "/web/dataset/call_kw/mrp.production/write",
                             {"model": "mrp.production", "method": "write",
                              "args": [[1], {"qty_producing": 2.0}], "kwargs": {}}, cookie)[0])
        first.join(60)
    assert answers[0]["error"]["data"]["name"] == "odoo.exceptions.UserError", answers
    assert answers[1].get("result") is True, answers
    assert odoo.retries["mrp.production:write"] == 0  # the holder rolled back: the write was not retried


# ---- the gate, as CI runs it ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project root whose dev stack has short think times and a 0.5% error budget."""
    return fast_dev_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def odoo() -> Iterator[OdooDouble]:
    # 150 ms, +up to 30 ms, x log-normal(0.2): a busy 2-core machine adds tens of ms to the tail on its
    # own; on a fast double that noise alone would look like a regression, here it stays small.
    with OdooDouble(base_ms=150, jitter_ms=30, sigma=0.2) as double:
        yield double


def loadtest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loadtests", *args], cwd=project, env=_env(), capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def baseline(project: Path, odoo: OdooDouble) -> Path:
    path = project / "baseline.json"
    done = loadtest(project, "record", "--stack", "dev", "--host", odoo.url, "--db", DB, "--baseline", str(path),
                    *GATE)
    assert done.returncode == 0, done.stderr + done.stdout
    doc = json.loads(path.read_text())
    assert EVERY_REQUEST | {"Aggregated"} <= set(doc["requests"]) <= EVERY_REQUEST | SOMETIMES | {"Aggregated"}
    assert doc["error_ratio"] == 0
    return path


@pytest.fixture
def system(odoo: OdooDouble) -> Iterator[OdooDouble]:
    yield odoo
    odoo.set(multiplier=1.0, error_rate=0.0, per_name={}, broken={})


def gate(project: Path, odoo: OdooDouble, baseline: Path, tmp_path: Path,
         *flags: str) -> tuple[int, dict[str, Any], str]:
    verdict = tmp_path / "verdict.json"
    done = loadtest(project, "gate", "--stack", "dev", "--host", odoo.url, "--db", DB, "--baseline", str(baseline),
                    "--json", str(verdict), "--junit", str(tmp_path / "junit.xml"), "--html",
                    str(tmp_path / "report.html"), *GATE, *flags)
    assert done.returncode in (0, 1, 7), done.stderr + done.stdout
    return done.returncode, json.loads(verdict.read_text()), done.stdout


def failed_checks(verdict: dict[str, Any]) -> set[tuple[str, str]]:
    return {(c["kind"], c["name"]) for c in verdict["checks"] if not c["ok"]}


@pytest.mark.parametrize("attempt", range(1, 3))
def test_an_unchanged_system_never_fails(attempt: int, project: Path, system: OdooDouble, baseline: Path,
                                         tmp_path: Path) -> None:
    """PASS, or INCONCLUSIVE should this busy machine widen the intervals past --detect; never FAIL."""
    code, verdict, stdout = gate(project, system, baseline, tmp_path, *SEEABLE)
    assert (code, failed_checks(verdict)) in ((0, set()), (7, set())), stdout
    assert verdict["verdict"] == {0: "PASS", 7: "INCONCLUSIVE"}[code] and verdict["verdict"] in stdout
    suite = ET.parse(tmp_path / "junit.xml").getroot()  # noqa: S314 (our own output)
    assert suite.get("failures") == "0"
    assert "<html" in (tmp_path / "report.html").read_text()[:2000].lower()
    p95 = {c["name"]: c["detail"] for c in verdict["checks"] if c["kind"] == "p95"}
    assert all(p95[name]["samples"] > 0 for name in EVERY_REQUEST), "every declared name was sent"
    if code == 7:  # says which names it could not see, and how far each could
        assert "INCONCLUSIVE" in stdout and any(not c["conclusive"] for c in verdict["checks"])


@pytest.mark.parametrize("attempt", range(1, 3))
def test_one_business_request_5x_slower_fails(attempt: int, project: Path, system: OdooDouble, baseline: Path,
                                              tmp_path: Path) -> None:
    """The suite's version of the power proof, with a margin a loaded 2-core machine cannot blur
    (benchmarks/gate_power.py measures 1.3x with longer gates)."""
    system.set(per_name={"mrp.production:button_mark_done": 5.0})
    code, verdict, stdout = gate(project, system, baseline, tmp_path, "--detect", "4")
    assert code == 1, stdout
    assert ("p95", "mrp.production:button_mark_done") in failed_checks(verdict), stdout
    assert {kind for kind, _ in failed_checks(verdict)} == {"p95"}
    suite = ET.parse(tmp_path / "junit.xml").getroot()  # noqa: S314 (our own output)
    assert int(suite.get("failures") or 0) >= 1


def test_a_3x_slower_system_fails_on_the_aggregate(project: Path, system: OdooDouble, baseline: Path,
                                                   tmp_path: Path) -> None:
    system.set(multiplier=3.0)
    code, verdict, stdout = gate(project, system, baseline, tmp_path, "--detect", "4")
    assert code == 1, stdout
    assert ("p95", "Aggregated") in failed_checks(verdict), stdout


def test_a_gate_too_short_to_see_is_inconclusive(project: Path, system: OdooDouble, baseline: Path,
                                                 tmp_path: Path) -> None:
    """3 x 3 s cannot tell 1.6x on the rarer names: exit 7 and the detectable slow-down, not a PASS."""
    code, verdict, stdout = gate(project, system, baseline, tmp_path, "--tolerance", "0.5", "--detect", "1.6")
    assert (code, verdict["verdict"], failed_checks(verdict)) == (7, "INCONCLUSIVE", set()), stdout
    assert "INCONCLUSIVE" in stdout and "detects >=" in json.dumps(verdict)
    open_ = [c for c in verdict["checks"] if not c["conclusive"]]
    assert open_ and all(c["detail"]["detectable"] > 1.6 for c in open_ if c["kind"] == "p95"
                         and c["detail"]["detectable"])


def test_a_declared_step_that_never_happens_fails_the_gate(project: Path, system: OdooDouble, baseline: Path,
                                                           tmp_path: Path) -> None:
    system.set(broken={"mrp.production:button_mark_done": "Some of your components are not available."})
    code, verdict, stdout = gate(project, system, baseline, tmp_path, *SEEABLE)
    assert code == 1, stdout
    failed = failed_checks(verdict)
    assert ("check", "check:mrp.production done") in failed, stdout  # no MO finished: the business check says so
    assert ("error_ratio", "Aggregated") in failed


@pytest.mark.parametrize("attempt", range(1, 3))
def test_a_2_percent_error_rate_fails(attempt: int, project: Path, system: OdooDouble, baseline: Path,
                                      tmp_path: Path) -> None:
    system.set(error_rate=0.02)
    code, verdict, stdout = gate(project, system, baseline, tmp_path, *SEEABLE)
    assert code == 1, stdout
    assert ("error_ratio", "Aggregated") in failed_checks(verdict), stdout


def test_a_slow_server_is_slow_not_unreachable(project: Path, tmp_path: Path) -> None:
    (tmp_path / "b.json").write_text(json.dumps({"requests": {}, "users": 2}))
    with OdooDouble(base_ms=10, jitter_ms=0) as odoo:
        odoo.set(per_name={"session:version_info": 300})  # 3 s for version_info
        done = loadtest(project, "gate", "--stack", "dev", "--host", odoo.url, "--db", DB, "--baseline",
                        str(tmp_path / "b.json"), "--runs", "1", "--duration", "1s", "--preflight-timeout", "1s")
    assert done.returncode == 1, done.stderr
    assert "too slow" in done.stderr and "unreachable" not in done.stderr.replace("not an unreachable", "")


def test_an_unreachable_target_exits_3(project: Path, tmp_path: Path) -> None:
    (tmp_path / "b.json").write_text(json.dumps({"requests": {}, "users": 2}))
    done = loadtest(project, "gate", "--stack", "dev", "--host", "http://127.0.0.1:9", "--baseline",
                    str(tmp_path / "b.json"), "--runs", "1", "--duration", "1s")
    assert done.returncode == 3, done.stderr
    assert "unreachable" in done.stderr and "ConnectionRefusedError" in done.stderr


def test_wrong_credentials_exit_3(project: Path, odoo: OdooDouble, tmp_path: Path) -> None:
    done = loadtest(project, "run", "--stack", "dev", "--host", odoo.url, "--db", "nope", "--duration", "1s")
    assert done.returncode == 3, done.stderr
    assert "refused" in done.stderr


@pytest.mark.parametrize(("args", "says"), [
    (["--baseline", "/nonexistent/b.json"], "erpops loadtest record"),
    (["--duration", "soon"], "not a duration"),
    (["--runs", "0"], "--runs"),
])
def test_bad_input_exits_2(args: list[str], says: str, project: Path, odoo: OdooDouble) -> None:
    done = loadtest(project, "gate", "--stack", "dev", "--host", odoo.url, "--db", DB, *args)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr


def test_run_prints_every_request_and_writes_json(project: Path, tmp_path: Path) -> None:
    with OdooDouble(base_ms=2, jitter_ms=1) as odoo:
        done = loadtest(project, "run", "--stack", "dev", "--host", odoo.url, "--db", DB, "--users", "10",
                        "--duration", "2s", "--json", str(tmp_path / "run.json"))
    assert done.returncode == 0, done.stderr
    assert "mrp.production:button_mark_done" in done.stdout and "Aggregated" in done.stdout
    assert "check:mrp.production done" in done.stdout and "never sent" not in done.stdout
    assert json.loads((tmp_path / "run.json").read_text())["total"]["failures"] == 0


def test_capacity_ramps_users_and_reports_the_knee(project: Path, odoo: OdooDouble, tmp_path: Path) -> None:
    done = loadtest(project, "capacity", "--stack", "dev", "--host", odoo.url, "--db", DB, "--max-users", "4",
                    "--duration", "1s", "--json", str(tmp_path / "cap.json"))
    assert done.returncode == 0, done.stderr
    steps = json.loads((tmp_path / "cap.json").read_text())["steps"]
    assert [s["users"] for s in steps] == [1, 2, 4]
    assert steps[-1]["rps"] > steps[0]["rps"]
    assert "did not double" in done.stdout  # 4 users cannot saturate a double that sleeps


def test_a_read_only_run_writes_nothing_and_still_measures(project: Path, tmp_path: Path) -> None:
    with OdooDouble(base_ms=2, jitter_ms=1) as odoo:
        before = odoo.snapshot()
        done = loadtest(project, "run", "--stack", "dev", "--host", odoo.url, "--db", DB, "--read-only",
                        "--users", "10", "--duration", "2s", "--json", str(tmp_path / "run.json"))
        served, after = dict(odoo.served), odoo.snapshot()
    assert done.returncode == 0, done.stderr
    assert "read-only" in done.stderr
    assert served and {method for _, method in served} <= READ_METHODS, sorted(served)
    assert after == before  # not one record created or changed
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["read_only"] is True and not run["exceptions"]
    assert set(run["requests"]) == set(run["declared"]) == READ_ONLY_REQUEST
    # every read of a read-write run is still made, under the same name, but those that read back what
    # the user just wrote (the state after confirming, the lines of its own receipt)
    reads = {n for n in EVERY_REQUEST if n.startswith("page:") or n.split(":")[1] in READ_METHODS}
    assert reads - {"purchase.order:read", "sale.order:read", "stock.move.line:search_read"} <= set(run["requests"])
    assert run["total"]["count"] > 0 and run["total"]["failures"] == 0 and run["total"]["p95"] is not None


def test_record_and_gate_write_their_reports_into_missing_folders(project: Path, odoo: OdooDouble) -> None:
    """runbooks/load-test-gate.md on a fresh checkout: neither `out/` nor the baseline's folder exist yet."""
    for folder in ("out", "fresh"):
        assert not (project / folder).exists()
    short = ["--warmup", "0.5s", "--duration", "3s", "--users", "30"]  # long enough for every declared step
    recorded = loadtest(project, "record", "--stack", "dev", "--host", odoo.url, "--db", DB, "--runs", "1", *short,
                        "--baseline", "fresh/baselines/dev.json", "--html", "fresh/reports/record.html")
    assert recorded.returncode == 0, recorded.stderr
    assert json.loads((project / "fresh/baselines/dev.json").read_text())["requests"]
    assert "<html" in (project / "fresh/reports/record.html").read_text()[:2000].lower()

    done = loadtest(project, "gate", "--stack", "dev", "--host", odoo.url, "--db", DB, "--runs", "1", *short,
                    "--baseline", "fresh/baselines/dev.json", "--junit", "out/loadtest-dev.xml",
                    "--json", "out/loadtest-dev.json", "--html", "out/loadtest-dev.html")
    assert done.returncode in (0, 1, 7), done.stderr  # the verdict of one short run does not matter here
    assert "Traceback" not in done.stderr
    out = project / "out"
    assert {p.name for p in out.iterdir()} == {"loadtest-dev.xml", "loadtest-dev.json", "loadtest-dev.html"}
    assert json.loads((out / "loadtest-dev.json").read_text())["stack"] == "dev"
    assert ET.parse(out / "loadtest-dev.xml").getroot().tag == "testsuites"  # noqa: S314 (our own output)
    # the report a release manager opens: in a real browser, the verdict and the runs' latency plot have data
    page = browser.load(out / "loadtest-dev.html", CHARTS, screenshot=REPO / "out" / "loadtest-gate-dev.png")
    assert page.console_errors == [] and page.exceptions == []
    assert page.value["verdict"] == {0: "PASS", 1: "FAIL", 7: "INCONCLUSIVE"}[done.returncode]
    assert "Aggregated" in page.value["requests"]
    assert len(page.value["lines"]) == 1 and page.value["lines"][0] >= 1  # one run, a point per second
    assert page.value["bars"] >= 4


def test_a_report_path_that_cannot_be_created_is_bad_input_before_any_run(project: Path, odoo: OdooDouble,
                                                                        tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    done = loadtest(project, "run", "--stack", "dev", "--host", odoo.url, "--db", DB, "--duration", "1s",
                    "--json", str(tmp_path / "file" / "run.json"))
    assert done.returncode == 2, done.stderr
    assert "cannot create the folder of" in done.stderr and "run 1/1" not in done.stderr
