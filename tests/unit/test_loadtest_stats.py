"""The load-test gate's statistic and verdict, on synthetic histograms (no server, no Locust)."""

from __future__ import annotations

import random
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from erpops.errors import UsageError
from loadtests import report, stats
from loadtests.cli import parse_duration


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
    assert stats.compare_p95("x", baseline, runs).status == "pass"


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


def test_the_cli_does_not_import_locust_or_gevent() -> None:
    code = ("import sys, erpops.cli, loadtests.cli, loadtests.stats, loadtests.report, loadtests.testing.odoo_double;"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('locust', 'gevent'));"
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
