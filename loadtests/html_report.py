"""The gate's HTML report, for a release manager: the verdict per request name, baseline vs now, plots.

One self-contained file (inline CSS and SVG, no script, no network): it opens from a CI artifact
store or a mail attachment as it is. Pure Python, no Locust.

  - the verdict, then every check the gate made (p95 per request name with its bootstrap 95% CI,
    error ratio, req/s, SLOs, crashes);
  - per request name: baseline vs current p50 / p95 / p99, error ratio and req/s;
  - latency over time: p95 per second of each run (one line per run);
  - percentile comparison: baseline vs current p50 and p95 for the busiest request names;
  - the most frequent errors with their messages.
"""

from __future__ import annotations

import html
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from loadtests.stats import TOTAL, Verdict

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf"]
BASE_COLOR, NOW_COLOR = "#9aa5b1", "#1f5fbf"
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1180px;color:#1d232a}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde3ea}
.verdict{display:inline-block;padding:4px 12px;border-radius:4px;font-weight:700;color:#fff}
.v-pass{background:#2e7d32} .v-fail{background:#c62828} .v-inconclusive{background:#b26a00} .muted{color:#6b7785}
table{border-collapse:collapse;width:100%;font-size:13px} th,td{padding:4px 8px;border-bottom:1px solid #eef1f4}
th{text-align:left;background:#f5f7f9} td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.regression td,tr.FAIL td{background:#fdecea} tr.insufficient td{color:#6b7785} tr.Aggregated td{font-weight:600}
.legend span{display:inline-block;margin-right:14px} .swatch{display:inline-block;width:12px;height:3px;
vertical-align:middle;margin-right:4px} svg text{font-size:11px;fill:#4a5561}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _median(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _name_stats(name: str, runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    entries = [r["total"] if name == TOTAL else r["requests"].get(name) for r in runs]
    present = [e for e in entries if e and e.get("count")]
    count = sum(e["count"] for e in present)
    failures = sum(e["failures"] for e in present)
    seconds = sum(r.get("duration_s") or 0 for r in runs) or None
    return {"count": count, "failures": failures, "error_ratio": failures / count if count else None,
            "rps": count / seconds if seconds else None,
            **{q: _median([e.get(q) for e in present]) for q in ("p50", "p95", "p99")}}


def _axis_ticks(top: float, n: int = 4) -> list[float]:
    if top <= 0:
        return [0.0]
    raw = top / n
    mag = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 1
    step = max(1.0, round(raw / mag) * mag) if raw >= 1 else raw
    return [i * step for i in range(int(top // step) + 2)]


def latency_chart(runs: Sequence[Mapping[str, Any]], width: int = 1100, height: int = 280) -> str:
    """p95 per second of each run, as lines; x: seconds into the measured run, y: ms."""
    pad_l, pad_b, pad_t, pad_r = 56, 34, 12, 12
    series = [[(p["t"], p["p95"]) for p in r.get("timeline") or [] if p.get("p95") is not None] for r in runs]
    points = [pt for s in series for pt in s]
    if not points:
        return '<p class="muted">No per-second data in this run (an older runner).</p>'
    x_max = max(t for t, _ in points) or 1
    y_max = max(v for _, v in points) * 1.1 or 1
    ticks = _axis_ticks(y_max)
    y_max = max(y_max, ticks[-1])

    def x(t: float) -> float:
        return pad_l + (width - pad_l - pad_r) * t / x_max

    def y(v: float) -> float:
        return height - pad_b - (height - pad_b - pad_t) * v / y_max

    parts = [f'<svg id="latency-over-time" role="img" aria-label="p95 latency per second of each run" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    for tick in ticks:
        parts.append(f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
                     f'stroke="#eef1f4"/><text x="{pad_l - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">'
                     f'{tick:.0f} ms</text>')
    for t in _axis_ticks(x_max, 6):
        if t <= x_max:
            parts.append(f'<text x="{x(t):.1f}" y="{height - pad_b + 16}" text-anchor="middle">{t:.0f} s</text>')
    for i, s in enumerate(series):
        if not s:
            continue
        color = COLORS[i % len(COLORS)]
        pts = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in s)
        parts.append(f'<polyline class="series" data-run="{i + 1}" data-points="{len(s)}" fill="none" '
                     f'stroke="{color}" stroke-width="1.6" points="{pts}"><title>run {i + 1}</title></polyline>')
    parts.append("</svg>")
    legend = "".join(f'<span><i class="swatch" style="background:{COLORS[i % len(COLORS)]}"></i>run {i + 1}</span>'
                     for i in range(len(runs)))
    return "".join(parts) + f'<div class="legend">{legend}</div>'


def percentile_chart(rows: Sequence[tuple[str, Mapping[str, Any], Mapping[str, Any]]], width: int = 1100) -> str:
    """Baseline vs current p50 and p95 per request name, as horizontal bars."""
    label_w, bar_h, gap, pad_r = 300, 9, 10, 70
    rows = [r for r in rows if any(v is not None for v in (r[1].get("p95"), r[2].get("p95")))]
    if not rows:
        return '<p class="muted">No request to compare.</p>'
    top = max(v for _, b, c in rows for v in (b.get("p95"), c.get("p95"), b.get("p50"), c.get("p50"))
              if v is not None) or 1
    row_h = 4 * bar_h + gap
    height = len(rows) * row_h + 24
    scale = (width - label_w - pad_r) / top
    parts = [f'<svg id="percentile-comparison" role="img" aria-label="baseline and current p50 and p95 per request" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    for i, (name, base, now) in enumerate(rows):
        y0 = i * row_h + 4
        parts.append(f'<text x="{label_w - 8}" y="{y0 + 2 * bar_h + 4}" text-anchor="end">{_e(name)}</text>')
        for j, (q, side, color) in enumerate((("p50", base, BASE_COLOR), ("p50", now, NOW_COLOR),
                                             ("p95", base, BASE_COLOR), ("p95", now, NOW_COLOR))):
            v = side.get(q)
            if v is None:
                continue
            who = "baseline" if side is base else "current"
            w = max(1.0, v * scale)
            opacity = "0.55" if q == "p50" else "1"
            parts.append(f'<rect class="bar" data-q="{q}" data-side="{who}" x="{label_w}" y="{y0 + j * bar_h}" '
                         f'width="{w:.1f}" height="{bar_h - 1}" fill="{color}" fill-opacity="{opacity}">'
                         f'<title>{_e(name)} {who} {q} {v:.0f} ms</title></rect>'
                         f'<text x="{label_w + w + 4:.1f}" y="{y0 + j * bar_h + bar_h - 1}">{q} {v:.0f}</text>')
    parts.append("</svg>")
    legend = (f'<div class="legend"><span><i class="swatch" style="background:{BASE_COLOR}"></i>baseline</span>'
              f'<span><i class="swatch" style="background:{NOW_COLOR}"></i>this gate</span>'
              '<span class="muted">pale: p50, full: p95 (ms)</span></div>')
    return "".join(parts) + legend


def render(v: Verdict, runs: Sequence[Mapping[str, Any]], baseline: Mapping[str, Any],
           meta: Mapping[str, Any] | None = None, max_bars: int = 14) -> str:
    meta = dict(meta or {})
    verdict_txt = getattr(v, "status", "PASS" if v.passed else "FAIL")  # PASS, FAIL or INCONCLUSIVE
    verdict_cls = {"PASS": "v-pass", "FAIL": "v-fail"}.get(verdict_txt, "v-inconclusive")
    base_req = baseline.get("requests") or {}
    p95 = {c.name: c for c in v.checks if c.kind == "p95"}
    names = sorted(p95, key=lambda n: (n == TOTAL, -(p95[n].detail.get("samples") or 0), n))
    rows_html = []
    bars = []
    for name in names:
        d = p95[name].detail
        now = _name_stats(name, runs)
        base = base_req.get(name) or {}
        ci = f"{d['ci_low']:.2f}–{d['ci_high']:.2f}" if d.get("ci_low") is not None else "-"
        ratio = f"{d['ratio']:.2f}" if d.get("ratio") is not None else "-"
        er = "-" if now["error_ratio"] is None else f"{now['error_ratio']:.2%}"
        rps = "-" if now["rps"] is None else f"{now['rps']:.1f}"
        rows_html.append(
            f'<tr class="{_e(d["status"])} {"Aggregated" if name == TOTAL else ""}"><td>{_e(name)}</td>'
            f'<td>{_e(d["status"])}</td><td class="n">{d["samples"]}</td>'
            + "".join(f'<td class="n">{_ms(base.get(q))}</td><td class="n">{_ms(now[q])}</td>'
                      for q in ("p50", "p95", "p99"))
            + f'<td class="n">{ratio}</td><td class="n">{ci}</td><td class="n">{er}</td><td class="n">{rps}</td></tr>')
        if name != TOTAL and len(bars) < max_bars:
            bars.append((name, base, now))
    others = "".join(
        f'<tr class="{"pass" if c.ok else "FAIL"}"><td>{_e(c.kind)}</td><td>{_e(c.name)}</td>'
        f'<td>{"not judged" if not c.judged else ("FAIL" if not c.ok else "pass")}</td><td>{_e(c.message)}</td></tr>'
        for c in v.checks if c.kind != "p95")
    errors: dict[tuple[str, str], int] = {}
    for r in runs:
        for e in r.get("errors") or []:
            errors[(e["name"], e["error"])] = errors.get((e["name"], e["error"]), 0) + int(e["occurrences"])
    errors_html = "".join(f'<tr><td class="n">{n}</td><td>{_e(name)}</td><td>{_e(msg)}</td></tr>'
                          for (name, msg), n in sorted(errors.items(), key=lambda kv: -kv[1])[:20])
    facts = [("target", v.host), ("Odoo", meta.get("odoo_serie")), ("mode", meta.get("mode")),
             ("runs", f"{v.runs} × {meta.get('duration_per_run_s', '?')} s × {meta.get('users', '?')} users "
                      f"(warm-up {meta.get('warmup_s', 0)} s, not counted)"),
             ("started", meta.get("started_at")), ("baseline", meta.get("baseline")),
             ("baseline recorded", baseline.get("recorded_at")),
             ("tolerance", f"p95 may be {v.tolerance:.0%} slower (lower bound of the 95% CI)")]
    facts_html = "".join(f"<tr><th>{_e(k)}</th><td>{_e(val)}</td></tr>" for k, val in facts if val is not None)
    failed = [c for c in v.checks if not c.ok]
    unseen = [c for c in v.checks if c.ok and not getattr(c, "conclusive", True)]
    reason = ("failed: " + ", ".join(f"{c.kind} {c.name}" for c in failed) if failed else
              "inconclusive, the runs could not see the slow-down the spec requires on: "
              + ", ".join(f"{c.kind} {c.name}" for c in unseen) if unseen else "every check passed")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>erpops loadtest gate {_e(v.stack)}: {verdict_txt}</title><style>{STYLE}</style></head>
<body>
<h1>Load-test gate {_e(v.stack)} <span id="verdict" class="verdict {verdict_cls}">{verdict_txt}</span></h1>
<p>{_e(reason)}. {v.requests} requests, {v.failures} failed, {v.rps:.1f} req/s (median of runs).</p>
<table class="facts">{facts_html}</table>
<h2>Per request: baseline vs this gate</h2>
<table id="requests"><thead><tr><th>request</th><th>p95 verdict</th><th>n</th>
<th>base p50</th><th>p50</th><th>base p95</th><th>p95</th><th>base p99</th><th>p99</th>
<th>p95 ratio</th><th>95% CI</th><th>errors</th><th>req/s</th></tr></thead><tbody>{"".join(rows_html)}</tbody></table>
<p class="muted">Latencies in ms: baseline pooled over its runs, this gate's the median over runs. The p95 ratio is
this gate's over the baseline's; a request regresses when the whole 95% bootstrap interval lies above
1 + tolerance. Names with too few requests are not judged (insufficient).</p>
<h2>Other checks</h2>
<table id="checks"><thead><tr><th>check</th><th>on</th><th>verdict</th><th>detail</th></tr></thead>
<tbody>{others}</tbody></table>
<h2>Latency over time (p95 per second, each run)</h2>
{latency_chart(runs)}
<h2>Percentile comparison (busiest {len(bars)} requests)</h2>
{percentile_chart(bars)}
<h2>Errors</h2>
{f'<table id="errors"><thead><tr><th>count</th><th>request</th><th>message</th></tr></thead><tbody>{errors_html}'
 '</tbody></table>' if errors_html else '<p id="errors" class="muted">No failed request.</p>'}
</body></html>
"""
