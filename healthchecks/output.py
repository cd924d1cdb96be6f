"""Rendering results: a rich table, JSON, and a node_exporter textfile (Prometheus format)."""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from healthchecks.core import Result, State, worst

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
    doc: dict[str, Any] = {
        "stack": stack,
        "state": worst(r.state for r in results).name,
        "elapsed_seconds": round(elapsed, 4),
        "checks": [r.to_dict() for r in results],
    }
    return json.dumps(doc, indent=2, sort_keys=False)


_NAGIOS = {State.OK: "OK", State.WARN: "WARNING", State.CRIT: "CRITICAL", State.UNKNOWN: "UNKNOWN"}


def nagios(results: list[Result]) -> str:
    """Nagios plugin output: one status line naming the failing checks, then perfdata after `|`."""
    state = worst(r.state for r in results)
    bad = sorted((r for r in results if r.state is not State.OK), key=lambda r: (-r.state.severity, r.check))
    summary = "; ".join(f"{r.check} {r.state.name}: {r.message}" for r in bad) or f"{len(results)} checks OK"
    perf = " ".join(f"'{r.check}.{key}'={_value(float(value))}" for r in results
                    for key, value in sorted(r.metrics.items()) if ":" not in key and "'" not in key)
    return f"ERPOPS {_NAGIOS[state]} - {summary.replace('|', '/')}" + (f" | {perf}" if perf else "")


def _name(text: str) -> str:
    name = re.sub(r"[^a-zA-Z0-9_]", "_", text)
    return re.sub(r"_+", "_", name).strip("_")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _value(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


def prometheus(results: list[Result], stack: str | None) -> str:
    """Text exposition format: state per check, duration per check, each metric as a gauge.

    Metric `x` of check `pg.connections` becomes `erpops_pg_connections_x`; a metric key
    `name:detail` (e.g. `free_ratio:/data`) becomes `name` with label detail="/data".
    """
    stack_label = f'stack="{_label(stack or "none")}"'
    families: dict[str, list[str]] = {}
    helps: dict[str, str] = {
        "erpops_check_state": "Check state: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN",
        "erpops_check_duration_seconds": "How long the check took",
    }
    for r in results:
        check = f'check="{_label(r.check)}"'
        families.setdefault("erpops_check_state", []).append(f"erpops_check_state{{{check},{stack_label}}} "
                                                             f"{int(r.state)}")
        families.setdefault("erpops_check_duration_seconds", []).append(
            f"erpops_check_duration_seconds{{{check},{stack_label}}} {_value(round(r.duration, 4))}")
        for key, value in sorted(r.metrics.items()):
            base, _, detail = key.partition(":")
            family = _name(f"erpops_{r.check}_{base}")
            extra = f',detail="{_label(detail)}"' if detail else ""
            helps.setdefault(family, f"{r.check} {base}")
            families.setdefault(family, []).append(f"{family}{{{stack_label}{extra}}} {_value(float(value))}")
    lines: list[str] = []
    for family, samples in families.items():
        lines += [f"# HELP {family} {helps[family]}", f"# TYPE {family} gauge", *samples]
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
