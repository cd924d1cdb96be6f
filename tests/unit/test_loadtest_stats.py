"""The load-test gate's statistic and verdict, on synthetic histograms (no server, no Locust);
the prod write guard and the read-only/read-write baseline check (refused before any request)."""

from __future__ import annotations

import json
import random
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from erpops.errors import UsageError
from loadtests import modes, report, stats
from loadtests.cli import loadtest, parse_duration

REPO = Path(__file__).resolve().parents[2]
UNREACHABLE = "http://127.0.0.1:9"  # a refusal that got as far as the network would exit 3, not 2


def _hist(center: float, spread: float, n: int, seed: int) -> dict[int, int]:
    rng = random.Random(seed)
    out: dict[int, int] = {}
    for _ in range(n):
        ms = round(max(1.0, rng.gauss(center, spread)))
        out[ms] = out.get(ms, 0) + 1
    return out


def _run(hists: dict[str, dict[int, int]], failures: int = 0, rps: float = 100.0) -> dict:
    def entry(h: dict[int, int], f: int = 0) -> dict:
        d = stats.EmpiricalDistribution(h)
        return {"count": d.n, "failures": f, "p50": d.quantile(0.5), "p95": d.quantile(0.95),
                "p99": d.quantile(0.99), "hist": {str(k): v for k, v in h.items()}}

    return {"users": 5, "duration_s": 4.0, "rps": rps, "fail_ratio": 0.0,
            "requests": {n: entry(h) for n, h in hists.items()},
            "total": entry(stats.merge(list(hists.values())), failures), "errors": [], "exceptions": []}


def test_quantile_of_a_histogram() -> None:
    dist = stats.EmpiricalDistribution({10: 50, 20: 45, 100: 5})
    assert (dist.quantile(0.5), dist.quantile(0.95), dist.quantile(0.99)) == (10, 20, 100)


def test_bootstrap_quantile_centres_on_the_sample_quantile() -> None:
    dist = stats.EmpiricalDistribution(_hist(50, 10, 2000, seed=1))
    rng = random.Random(2)
    draws = sorted(dist.bootstrap_quantile(0.95, rng) for _ in range(2000))
    assert abs(draws[1000] - dist.quantile(0.95)) <= 1


@pytest.mark.parametrize(("slowdown", "status"), [(1.0, "pass"), (1.03, "pass"), (1.25, "regression"),
                                                  (1.5, "regression")])
def test_p95_comparison(slowdown: float, status: str) -> None:
    baseline = stats.merge([_hist(50, 8, 300, seed=s) for s in range(3)])
    runs = [_hist(50 * slowdown, 8 * slowdown, 300, seed=10 + s) for s in range(3)]
    assert stats.compare_p95("sale.order:create", baseline, runs).status == status


def test_one_noisy_run_of_five_does_not_fail_the_gate() -> None:
    baseline = stats.merge([_hist(50, 8, 300, seed=s) for s in range(5)])
    runs = [_hist(50, 8, 300, seed=20 + s) for s in range(4)] + [_hist(90, 20, 300, seed=30)]
    assert stats.compare_p95("x", baseline, runs).status != "regression"  # it may not see far, but does not fail


def test_a_baseline_recorded_on_a_noisy_day_widens_the_interval() -> None:
    runs = [_hist(60, 8, 300, seed=40 + s) for s in range(3)]
    steady = [_hist(50, 8, 300, seed=50 + s) for s in range(3)]
    noisy = [_hist(50, 8, 300, seed=60), _hist(62, 8, 300, seed=61), _hist(45, 8, 300, seed=62)]
    tight, wide = stats.compare_p95("x", steady, runs), stats.compare_p95("x", noisy, runs)
    assert wide.ci_high - wide.ci_low > tight.ci_high - tight.ci_low


@pytest.mark.parametrize(("baseline", "runs", "status"), [
    ({50: 100}, [{50: 3}], "insufficient"),
    ({}, [{50: 100}], "new"),
    ({50: 100}, [{}], "missing"),
])
def test_names_that_cannot_be_judged(baseline: dict, runs: list, status: str) -> None:
    assert stats.compare_p95("x", baseline, runs).status == status


def _baseline() -> dict:
    return stats.summarize([_run({"a:read": _hist(40, 5, 300, s), "b:write": _hist(80, 10, 300, s + 1)})
                            for s in range(3)])


@pytest.mark.parametrize(("failures", "rps", "failed_kinds"), [
    (0, 100.0, []),
    (30, 100.0, ["error_ratio"]),  # 30 of 1800 = 1.7% > 1%
    (0, 3.0, ["min_rps"]),
])
def test_judge_error_ratio_and_rate(failures: int, rps: float, failed_kinds: list[str]) -> None:
    runs = [_run({"a:read": _hist(40, 5, 300, 50 + s), "b:write": _hist(80, 10, 300, 60 + s)},
                 failures=failures // 3, rps=rps) for s in range(3)]
    verdict = stats.judge("dev", "http://x", _baseline(), runs, error_ratio_max=0.01, min_rps=5.0)
    assert [c.kind for c in verdict.checks if not c.ok] == failed_kinds
    assert verdict.passed is (not failed_kinds)


def test_judge_flags_an_slo_breach_and_a_crash() -> None:
    runs = [_run({"a:read": _hist(40, 5, 300, 70 + s)}) for s in range(3)]
    runs[0]["exceptions"] = [{"count": 2, "msg": "KeyError: 'id'", "traceback": ""}]
    verdict = stats.judge("dev", "http://x", _baseline(), runs, 0.01, 1.0,
                          slo={"a:read": {"p50_ms": 10, "p95_ms": 100, "p99_ms": 200}})
    failed = {(c.kind, c.name) for c in verdict.checks if not c.ok}
    assert failed == {("crash", "user code"), ("slo", "a:read")}


def test_junit_lists_every_check_and_marks_the_failures() -> None:
    runs = [_run({"a:read": _hist(60, 8, 300, 80 + s), "b:write": _hist(80, 10, 300, 90 + s)}) for s in range(3)]
    verdict = stats.judge("dev", "http://x", _baseline(), runs, 0.01, 1.0)
    suite = ET.fromstring(report.junit_xml(verdict))  # noqa: S314 (our own output)
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert "a:read" in failed and "b:write" not in failed
    assert suite.get("tests") == str(len(verdict.checks))


@pytest.mark.parametrize(("text", "seconds"), [("20s", 20), ("2m", 120), ("1m30s", 90), ("4", 4), ("2.5s", 2.5)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "0s", "-3s"])
def test_bad_durations_are_bad_input(text: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_duration(text)
    assert exc.value.exit_code == 2


# ---- read-only mode and the prod guard ------------------------------------------------------------

@pytest.mark.parametrize(("tier", "read_only", "allow_writes", "refused"), [
    ("prod", False, False, True),
    ("prod", True, False, False),
    ("prod", False, True, False),
    ("staging", False, False, False),
    ("dev", False, False, False),
    ("dev", True, True, True),  # contradictory flags, whatever the tier
    ("prod", True, True, True),
])
def test_write_guard(tier: str, read_only: bool, allow_writes: bool, refused: bool) -> None:
    if not refused:
        modes.write_guard("s", tier, read_only, allow_writes)
        return
    with pytest.raises(UsageError) as exc:
        modes.write_guard("s", tier, read_only, allow_writes)
    assert exc.value.exit_code == 2
    assert "--read-only" in str(exc.value) and "--allow-writes" in str(exc.value)


@pytest.mark.parametrize(("recorded", "read_only", "fix"), [
    ({"read_only": False}, True, "drop --read-only"),
    ({}, True, "drop --read-only"),  # recorded before the flag existed: the personas wrote
    ({"read_only": True}, False, "add --read-only"),
])
def test_a_baseline_of_the_other_mode_is_refused(recorded: dict, read_only: bool, fix: str) -> None:
    with pytest.raises(UsageError) as exc:
        modes.check_baseline_mode(recorded, read_only, "b.json", "prod")
    assert exc.value.exit_code == 2
    message = str(exc.value)
    assert fix in message and "erpops loadtest record --stack prod" in message
    assert ("--read-only --host" in message) is read_only  # the record command matches the gate's mode


@pytest.mark.parametrize("read_only", [False, True])
def test_a_baseline_of_the_same_mode_is_accepted(read_only: bool) -> None:
    modes.check_baseline_mode({"read_only": read_only}, read_only, "b.json", "dev")


def _cli(*args: str) -> tuple[int, str]:
    done = CliRunner().invoke(loadtest, list(args), obj={"root": REPO})
    return done.exit_code, done.stderr


@pytest.mark.parametrize("command", [["run"], ["record"], ["gate"], ["capacity"]])
def test_write_personas_on_prod_are_refused_before_any_request(command: list[str]) -> None:
    code, stderr = _cli(*command, "--stack", "prod", "--host", UNREACHABLE)
    assert code == 2, stderr
    assert "prod tier" in stderr and "--read-only" in stderr and "--allow-writes" in stderr


def test_read_only_and_allow_writes_get_past_the_prod_guard(tmp_path: Path) -> None:
    (tmp_path / "b.json").write_text(json.dumps({"read_only": True, "users": 1, "requests": {}}))
    for flag in ("--read-only", "--allow-writes"):
        code, stderr = _cli("run", "--stack", "prod", "--host", UNREACHABLE, flag)
        assert code == 3 and "unreachable" in stderr, stderr  # refused by the network, not by the guard
    code, stderr = _cli("gate", "--stack", "prod", "--host", UNREACHABLE, "--read-only", "--baseline",
                        str(tmp_path / "b.json"))
    assert code == 3 and "unreachable" in stderr, stderr


@pytest.mark.parametrize(("recorded", "flags"), [(False, ["--read-only"]), (True, [])])
def test_gate_refuses_a_baseline_of_the_other_mode(recorded: bool, flags: list[str], tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"read_only": recorded, "users": 1, "requests": {}}))
    code, stderr = _cli("gate", "--stack", "dev", "--host", UNREACHABLE, "--baseline", str(path), *flags)
    assert code == 2, stderr
    assert f"recorded {modes.mode_name(recorded)}" in stderr and "erpops loadtest record" in stderr


def test_read_only_runs_have_their_own_default_baseline(tmp_path: Path) -> None:
    assert modes.default_baseline_name("prod", read_only=False) == "prod.json"
    assert modes.default_baseline_name("prod", read_only=True) == "prod.read-only.json"
    code, stderr = _cli("gate", "--stack", "prod", "--host", UNREACHABLE, "--read-only")
    assert code == 2 and "prod.read-only.json" in stderr and "record --stack <stack> --read-only" in stderr, stderr


def test_the_patch_smoke_reads_only_and_is_short() -> None:
    from erpops.patch import Patch

    smoke = Patch.__new__(Patch)
    smoke.o = SimpleNamespace(odoo_url="https://erp.example.com", stack="prod", db="odoo_prod")
    args = shlex.split(smoke._default_smoke() or "")
    assert args[1:3] == ["loadtest", "gate"] and "--read-only" in args and "--allow-writes" not in args
    assert args[args.index("--runs") + 1] == "1"


# ---- power, declared names, business checks ------------------------------------------------------

def _lognormal(median: float, sigma: float, n: int, seed: int) -> dict[int, int]:
    rng = random.Random(seed)
    out: dict[int, int] = {}
    for _ in range(n):
        ms = round(median * rng.lognormvariate(0, sigma))
        out[ms] = out.get(ms, 0) + 1
    return out


@pytest.mark.parametrize("n", [100, 400, 1600])
def test_more_samples_detect_a_smaller_slowdown(n: int) -> None:
    def detectable(size: int) -> float:
        base = [_lognormal(100, 0.25, size, seed=s) for s in range(3)]
        runs = [_lognormal(100, 0.25, size, seed=10 + s) for s in range(3)]
        return stats.compare_p95("x", base, runs, detect=1.3).detectable

    assert detectable(n * 4) < detectable(n)


def test_a_run_too_short_to_see_the_threshold_is_inconclusive_not_a_pass() -> None:
    base = [_lognormal(100, 0.25, 60, seed=s) for s in range(3)]
    runs = [_lognormal(100, 0.25, 60, seed=20 + s) for s in range(3)]
    c = stats.compare_p95("sale.order:create", base, runs, tolerance=0.10, detect=1.3)
    assert c.status == "inconclusive" and c.detectable > 1.3
    assert f"detects >= {c.detectable:.2f}x" in c.message and "run longer" in c.message
    long_base = [_lognormal(100, 0.25, 3000, seed=s) for s in range(3)]
    long_runs = [_lognormal(100, 0.25, 3000, seed=20 + s) for s in range(3)]
    assert stats.compare_p95("sale.order:create", long_base, long_runs, detect=1.3).status == "pass"


def _runs_with(names: dict[str, dict[int, int]], declared: list[str], checks: dict | None = None) -> list[dict]:
    runs = [_run(names) for _ in range(3)]
    for r in runs:
        r["declared"] = declared
        r["checks"] = checks or {}
    return runs


def test_a_declared_name_never_sent_fails_the_gate() -> None:
    hists = {"a:read": _lognormal(40, 0.1, 2000, 1), "b:write": _lognormal(80, 0.1, 2000, 2)}
    baseline = stats.summarize(_runs_with(hists, []))
    runs = _runs_with({"a:read": _lognormal(40, 0.1, 2000, 3)}, ["a:read", "b:write"])
    verdict = stats.judge("dev", "http://x", baseline, runs, 0.01, 1.0, detect=3.0)
    assert verdict.status == stats.FAIL
    assert {(c.kind, c.name) for c in verdict.checks if not c.ok} == {("p95", "b:write")}
    # the same name, not declared (a wizard step some data never needs): shown, not failed
    runs = _runs_with({"a:read": _lognormal(40, 0.1, 2000, 3)}, ["a:read"])
    assert stats.judge("dev", "http://x", baseline, runs, 0.01, 1.0, detect=3.0).status == stats.PASS


def test_a_failed_business_check_fails_the_gate_and_an_unreached_one_too() -> None:
    hists = {"a:read": _lognormal(40, 0.1, 2000, 1)}
    baseline = stats.summarize(_runs_with(hists, []))
    held = _runs_with(hists, ["a:read", "check:mrp.production done"], {"check:mrp.production done": {"ok": 50,
                                                                                                      "failed": 0}})
    assert stats.judge("dev", "http://x", baseline, held, 0.01, 1.0, detect=3.0).status == stats.PASS
    for checks in ({"check:mrp.production done": {"ok": 10, "failed": 5}}, {}):
        runs = _runs_with(hists, ["a:read", "check:mrp.production done"], checks)
        verdict = stats.judge("dev", "http://x", baseline, runs, 0.01, 1.0, detect=3.0)
        assert {(c.kind, c.name) for c in verdict.checks if not c.ok} == {("check", "check:mrp.production done")}


def test_per_name_thresholds_from_the_slo() -> None:
    hists = {"a:read": _lognormal(40, 0.25, 150, 1), "b:write": _lognormal(80, 0.25, 3000, 2)}
    baseline = stats.summarize([_run(hists) for _ in range(3)])
    runs = _runs_with({"a:read": _lognormal(40, 0.25, 150, 7), "b:write": _lognormal(80, 0.25, 3000, 8)},
                      ["a:read", "b:write"])
    strict = stats.judge("dev", "http://x", baseline, runs, 0.01, 1.0, detect=1.3)
    assert strict.status == stats.INCONCLUSIVE  # 150 requests of a:read cannot show a 1.3x slow-down
    loose = stats.judge("dev", "http://x", baseline, runs, 0.01, 1.0, detect=1.3, slo={"a:read": {"detect": 3.0}})
    by_name = {c.name: c for c in loose.checks if c.kind == "p95"}
    assert by_name["a:read"].detail["detect"] == 3.0 and by_name["b:write"].detail["detect"] == 1.3
    assert loose.status == stats.PASS


def test_the_spec_refuses_a_detect_the_tolerance_swallows() -> None:
    from pydantic import ValidationError

    from erpops.spec import Slo

    with pytest.raises(ValidationError, match=r"must be above 1 \+ slo\.tolerance"):
        Slo(tolerance=0.3, detect=1.2)
    with pytest.raises(ValidationError, match=r"slo\.requests\.sale\.order:create"):
        Slo(requests={"sale.order:create": {"detect": 1.05}})
    slo = Slo(requests={"sale.order:create": {"detect": 1.5}})
    assert slo.thresholds("sale.order:create") == (0.10, 1.5) and slo.thresholds("x:y") == (0.10, 1.30)


# The gate's power on a model of the noise measured against the Odoo test double on a shared 2-core machine
# (benchmarks/gate_power.py prints the same outcomes measured for real): service times of 1 s x U(1, 1.1) x
# log-normal(0.1); each run as a whole a little faster or slower (the machine, sd 2%); and in some runs a stall
# of the machine that holds every request in flight (+400-900 ms for 5-20% of the run's requests, every name).
POWER_NAMES = {"mrp.production:read": 120, "mrp.production:button_mark_done": 80, "stock.picking:create": 32,
               "page:load_menus": 20}  # requests per run of 10 s (150 users): the busiest to the sparsest declared


def _noisy_run(rng: random.Random, slow: dict[str, float]) -> dict:
    machine = rng.gauss(1.0, 0.02)
    stalled = rng.random() < 0.2
    share, stall_ms = (rng.uniform(0.05, 0.2), rng.uniform(400, 900)) if stalled else (0.0, 0.0)
    hists = {}
    for name, n in POWER_NAMES.items():
        h: dict[int, int] = {}
        for _ in range(n):
            ms = 1000 * rng.uniform(1.0, 1.1) * rng.lognormvariate(0, 0.1) * machine * slow.get(name, 1.0)
            ms += stall_ms if rng.random() < share else 0.0
            h[round(ms)] = h.get(round(ms), 0) + 1
        hists[name] = h
    run = _run(hists)
    run["declared"] = sorted(POWER_NAMES)
    return run


@pytest.mark.parametrize(("baseline_runs", "gate_runs", "slowed", "verdict", "at_least"), [
    (10, 5, {}, stats.PASS, 10),
    (10, 5, {"mrp.production:button_mark_done": 1.3}, stats.FAIL, 9),
])
def test_the_gate_passes_the_unchanged_and_fails_a_slower_request(baseline_runs: int, gate_runs: int,
                                                                  slowed: dict[str, float], verdict: str,
                                                                  at_least: int) -> None:
    """10 gates, each against the same baseline: the outcome the issue asks of the gate (10/10, >= 9/10)."""
    rng = random.Random(1234)
    baseline = stats.summarize([_noisy_run(rng, {}) for _ in range(baseline_runs)])
    verdicts = [stats.judge("dev", "http://x", baseline, [_noisy_run(rng, slowed) for _ in range(gate_runs)],
                            0.01, 1.0, detect=1.5, seed=g).status for g in range(10)]
    assert verdicts.count(verdict) >= at_least, verdicts
    if slowed:
        assert stats.PASS not in verdicts, verdicts  # a 1.3x slower request never passes as unchanged


def test_a_gate_too_short_for_its_sparsest_name_says_so() -> None:
    """The same noise with 3 requests of a declared name per run: INCONCLUSIVE (exit 7), not PASS."""
    rng = random.Random(99)
    sparse = {**POWER_NAMES, "page:load_menus": 3}
    baseline = stats.summarize([_noisy_run(rng, {}) for _ in range(10)])
    POWER_NAMES_BACKUP = dict(POWER_NAMES)
    try:
        POWER_NAMES.update(sparse)
        gate = [_noisy_run(rng, {}) for _ in range(5)]
    finally:
        POWER_NAMES.update(POWER_NAMES_BACKUP)
    verdict = stats.judge("dev", "http://x", baseline, gate, 0.01, 1.0, detect=1.5, seed=0)
    assert verdict.status == stats.INCONCLUSIVE
    [open_] = [c for c in verdict.checks if c.ok and not c.conclusive]
    assert open_.name == "page:load_menus"
