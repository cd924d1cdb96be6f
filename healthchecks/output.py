"""Rendering results: a rich table, JSON, and a node_exporter textfile (Prometheus format)."""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from healthchecks import metrics
from healthchecks.core import Result, State, Thresholds, worst

_STYLE = {State.OK: "green", State.WARN: "yellow", State.CRIT: "bold red", State.UNKNOWN: "magenta"}


def table(results: list[Result], console: Console, title: str = "erpops health") -> None:
    t = Table(title=title)
    t.add_column("check")
    t.add_column("state")
    t.add_column("message", overflow="fold")
    t.add_column("ms", justify="right")
    for r in sorted(results, key=lambda r: (-r.state.severity, r.check)):
        style = _STYLE[r.state]
        t.add_row(r.check, f"[{style}]{r.state.name}[/{style}]", r.message, f"{r.duration * 1000:.0f}")
    console.print(t)


def to_json(results: list[Result], stack: str | None, elapsed: float) -> str:
    from erpops.jsonout import SCHEMA_VERSION

    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "command": "erpops health",
        "ok": worst(r.state for r in results) is State.OK,
        "stack": stack,
        "state": worst(r.state for r in results).name,
        "elapsed_seconds": round(elapsed, 4),
        "checks": [r.to_dict() for r in results],
    }
    return json.dumps(doc, indent=2, sort_keys=False)


_NAGIOS = {State.OK: "OK", State.WARN: "WARNING", State.CRIT: "CRITICAL", State.UNKNOWN: "UNKNOWN"}


def _perf_number(v: float | None) -> str:
    """Plain decimal (the plugin guidelines allow no exponent): 134217728, 0.0125."""
    if v is None:
        return ""
    if float(v).is_integer():
        return str(int(v))
    return f"{v:.6f}".rstrip("0").rstrip(".")


def nagios(results: list[Result], thresholds: Thresholds | None = None) -> str:
    """Nagios plugin output: one status line naming the failing checks, then perfdata after `|`.

    Perfdata per the plugin guidelines: `'label'=value[UOM];[warn];[crit];[min];[max]`, in base units
    (s, B, c for counters; ratios as plain numbers 0..1), warn and crit from the spec's thresholds.
    For a minimum (cache hit ratio, free disk) the ranges are written `@lower:` style as `warn:`:
    Nagios alerts outside `x:`, i.e. below x.
    """
    state = worst(r.state for r in results)
    bad = sorted((r for r in results if r.state is not State.OK), key=lambda r: (-r.state.severity, r.check))
    summary = "; ".join(f"{r.check} {r.state.name}: {r.message}" for r in bad) or f"{len(results)} checks OK"
    perf: list[str] = []
    for r in results:
        for key, value in sorted(r.metrics.items()):
            if "'" in key or "=" in key:
                continue
            m, _ = metrics.describe(r.check, key)
            label = metrics.perf_label(r.check, key)
            warn = crit = ""
            if m.level and thresholds is not None and m.level in thresholds.levels:
                level = thresholds.levels[m.level]
                w, c = level.warn * m.level_scale, level.crit * m.level_scale
                warn, crit = (_perf_number(w), _perf_number(c)) if level.higher_is_worse else (
                    f"{_perf_number(w)}:", f"{_perf_number(c)}:")
            perf.append(f"'{label}'={_perf_number(float(value) * m.scale)}{m.uom};{warn};{crit};"
                        f"{_perf_number(m.min)};{_perf_number(m.max)}")
    return f"ERPOPS {_NAGIOS[state]} - {summary.replace('|', '/')}" + (f" | {' '.join(perf)}" if perf else "")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _value(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


def _labels(pairs: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in pairs.items()) + "}"


def prometheus(results: list[Result], stack: str | None, now: float | None = None) -> str:
    """node_exporter textfile (Prometheus text format 0.0.4), names and units per healthchecks/metrics.py.

    Per check: `erpops_check_state` (0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN) and `erpops_check_duration_seconds`;
    each metric in base units under its catalog name (a `key:detail` key gives the catalog's label, e.g.
    `mountpoint`); versions as `_info` series; `erpops_health_last_run_timestamp_seconds` last, so an alert
    can tell a stale file (`time() - erpops_health_last_run_timestamp_seconds > 600`) from a healthy one.
    """
    base = {"stack": stack or "none"}
    families: dict[str, tuple[str, str, list[str]]] = {
        "erpops_check_state": ("gauge", "State of each health check: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN "
                               "(runbooks/alerts/<check>.md)", []),
        "erpops_check_duration_seconds": ("gauge", "How long each health check took", []),
    }
    for r in results:
        labels = _labels({"check": r.check, **base})
        families["erpops_check_state"][2].append(f"erpops_check_state{labels} {int(r.state)}")
        families["erpops_check_duration_seconds"][2].append(
            f"erpops_check_duration_seconds{labels} {_value(round(r.duration, 4))}")
        for key, value in sorted(r.metrics.items()):
            m, detail = metrics.describe(r.check, key)
            pairs = dict(base)
            if detail is not None:
                pairs[m.label or "detail"] = detail
            sample = m.name + ("_total" if m.kind == "counter" else "")
            families.setdefault(m.name, (m.kind, m.help, []))[2].append(
                f"{sample}{_labels(pairs)} {_value(float(value) * m.scale)}")
        if r.info and r.check in metrics.INFO:
            name, help_text = metrics.INFO[r.check]
            families.setdefault(name, ("gauge", help_text, []))[2].append(f"{name}{_labels({**base, **r.info})} 1")
    families["erpops_health_last_run_timestamp_seconds"] = (
        "gauge", "When erpops health last wrote this file, in seconds since the Unix epoch",
        [f"erpops_health_last_run_timestamp_seconds{_labels(base)} {_value(round(now or time.time(), 3))}"])
    lines: list[str] = []
    for family, (kind, help_text, samples) in families.items():
        # text format 0.0.4: a counter's HELP and TYPE name its samples, `_total` included (as prometheus_client
        # writes them); the parser then reports the family without the suffix
        named = family + "_total" if kind == "counter" else family
        lines += [f"# HELP {named} {help_text}", f"# TYPE {named} {kind}", *samples]
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Temp file in the same directory, fsync, rename: node_exporter never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
