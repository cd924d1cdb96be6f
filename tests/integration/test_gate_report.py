"""The gate's HTML report in a real headless Chromium: it loads without a console error, the verdict and
every request name are on the page, and both charts hold data. A screenshot is kept under out/."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests import html_report, stats
from tests import browser
from tests.unit.test_loadtest_stats import _baseline, _hist, _run

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
META = {"odoo_serie": "17.0", "users": 5, "duration_per_run_s": 10, "warmup_s": 2, "mode": "read-write",
        "baseline": "loadtests/baselines/dev.json"}
CHARTS = """(() => ({
  verdict: document.getElementById('verdict').textContent,
  requests: [...document.querySelectorAll('#requests tbody tr td:first-child')].map(td => td.textContent),
  lines: [...document.querySelectorAll('#latency-over-time polyline.series')].map(l => l.points.numberOfItems),
  bars: document.querySelectorAll('#percentile-comparison rect.bar').length,
  barWidths: [...document.querySelectorAll('#percentile-comparison rect.bar')].map(r => r.getBBox().width),
  errors: document.querySelectorAll('#errors tbody tr').length,
}))()"""


def _runs(slow: float) -> list[dict]:
    runs = []
    for s in range(3):
        run = _run({"a:read": _hist(40 * slow, 5, 300, 80 + s), "b:write": _hist(80, 10, 300, 90 + s)}, failures=2)
        run["timeline"] = [{"t": t, "requests": 30, "failures": 0, "p50": 38.0 * slow + t + s,
                            "p95": 50.0 * slow + t + 3 * s} for t in range(10)]
        run["errors"] = [{"name": "b:write", "error": "JSON-RPC error psycopg2.errors.SerializationFailure",
                          "occurrences": 2}]
        runs.append(run)
    return runs


@pytest.mark.parametrize(("slow", "verdict"), [(1.0, "PASS"), (1.5, "FAIL")])
def test_gate_report_loads_in_chromium_with_its_charts(tmp_path: Path, slow: float, verdict: str) -> None:
    runs = _runs(slow)
    v = stats.judge("dev", "http://odoo.test", _baseline(), runs, 0.05, 1.0)
    page_file = tmp_path / "report.html"
    page_file.write_text(html_report.render(v, runs, _baseline(), META))
    shot = REPO / "out" / f"loadtest-gate-report-{verdict.lower()}.png"
    page = browser.load(page_file, CHARTS, screenshot=shot)
    assert page.console_errors == [] and page.exceptions == []
    seen = page.value
    assert seen["verdict"] == verdict
    assert seen["requests"] == ["a:read", "b:write", "Aggregated"]
    assert seen["lines"] == [10, 10, 10]  # one line per run, a point per second
    assert seen["bars"] == 8 and min(seen["barWidths"]) > 0  # p50 and p95, baseline and now, per request
    assert seen["errors"] == 1
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
