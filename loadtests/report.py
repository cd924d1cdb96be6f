"""Render a gate verdict or a run: rich table for people, JUnit XML for CI, JSON for tools."""

from __future__ import annotations

import json
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from loadtests.stats import FAIL, INCONCLUSIVE, TOTAL, Verdict


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def verdict_table(v: Verdict, console: Console) -> None:
    table = Table(title=f"erpops loadtest gate {v.stack}: {v.runs} runs against {v.host}, tolerance "
                        f"{v.tolerance:.0%}", title_justify="left")
    for col, justify in (("check", "left"), ("request", "left"), ("n", "right"), ("base p95", "right"),
                         ("p95", "right"), ("ratio", "right"), ("95% CI", "right"), ("detects", "right"),
                         ("verdict", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for c in v.checks:
        if c.kind == "p95":
            d = c.detail
            ci = f"{_x(d['ci_low'])}-{_x(d['ci_high'])}" if d["ci_low"] is not None else "-"
            detects = "-" if d.get("detectable") is None else f">={d['detectable']:.2f} ({d['detect']:.2f})"
            state = {"pass": "[green]pass[/green]", "regression": "[bold red]REGRESSION[/bold red]",
                     "inconclusive": "[yellow]inconclusive[/yellow]"}.get(d["status"], f"[dim]{d['status']}[/dim]")
            if d["status"] == "missing" and not c.ok:
                state = "[bold red]MISSING[/bold red]"
            elif not c.conclusive and d["status"] != "inconclusive":
                state = f"[yellow]{d['status']}[/yellow]"
            table.add_row("p95", c.name, str(d["samples"]), _ms(d["baseline_p95"]), _ms(d["current_p95"]),
                          _x(d["ratio"]), ci, detects, state, style="bold" if c.name == TOTAL else None)
        else:
            state = "[green]pass[/green]" if c.ok else "[bold red]FAIL[/bold red]"
            if not c.conclusive:
                state = "[yellow]inconclusive[/yellow]"
            elif not c.judged:
                state = "[dim]not judged[/dim]"
            table.add_row(c.kind, c.name, "", "", "", "", "", "", f"{state} {c.message}")
    console.print(table)
    failed = [c for c in v.checks if not c.ok]
    open_ = [c for c in v.checks if c.ok and not c.conclusive]
    if v.status == FAIL:
        console.print(f"[bold red]FAIL[/bold red]: {len(failed)} check(s) failed: "
                      + ", ".join(f"{c.kind} {c.name}" for c in failed))
    elif v.status == INCONCLUSIVE:
        console.print(f"[bold yellow]INCONCLUSIVE[/bold yellow]: nothing failed, but {len(open_)} check(s) could not "
                      "see the slow-down they must catch: " + ", ".join(f"{c.kind} {c.name}" for c in open_[:8])
                      + (" ..." if len(open_) > 8 else "") + ". Run longer (--duration, --runs) or with more users.")
    else:
        console.print(f"[green]PASS[/green]: {v.requests} requests, {v.failures} failed, {v.rps:.1f} req/s")


def junit_xml(v: Verdict) -> str:
    suite = ET.Element("testsuite", name=f"erpops loadtest gate {v.stack}", tests=str(len(v.checks)),
                       failures=str(sum(not c.ok for c in v.checks)),
                       skipped=str(sum(not c.judged for c in v.checks)))
    for c in v.checks:
        case = ET.SubElement(suite, "testcase", classname=f"loadtest.{v.stack}.{c.kind}", name=c.name)
        if not c.ok:
            ET.SubElement(case, "failure", message=c.message, type=c.kind).text = json.dumps(c.detail, default=str)
        elif not c.judged or not c.conclusive:
            ET.SubElement(case, "skipped", message=c.message)
        else:
            ET.SubElement(case, "system-out").text = c.message
    return ET.tostring(ET.ElementTree(suite).getroot(), encoding="unicode", xml_declaration=True) + "\n"


def run_table(title: str, run: Mapping[str, Any], console: Console) -> None:
    table = Table(title=title, title_justify="left")
    for col in ("request", "count", "failures", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(col, justify="left" if col == "request" else "right")
    rows = [*sorted(run["requests"].items()), (TOTAL, run["total"])]
    for name, e in rows:
        fails = f"[red]{e['failures']}[/red]" if e["failures"] else "0"
        table.add_row(name, str(e["count"]), fails, _ms(e["p50"]), _ms(e["p95"]), _ms(e["p99"]),
                      style="bold" if name == TOTAL else None)
    console.print(table)
    console.print(f"{run['rps']:.1f} req/s, {run['fail_ratio']:.2%} failed, {run['users']} users, "
                  f"{run['duration_s']:.1f} s")
    for name, c in sorted((run.get("checks") or {}).items()):
        style = "red" if c["failed"] else "green"
        console.print(f"  [{style}]{name}[/{style}]: {c['ok']} held, {c['failed']} failed", highlight=False)
    never = never_sent(run)
    if never:
        console.print(f"[bold red]never sent[/bold red] (declared by the personas): {', '.join(never)}",
                      highlight=False)
    for e in run.get("errors") or []:
        console.print(f"  [red]{e['occurrences']}x[/red] {escape(e['name'])}: {escape(e['error'])}", highlight=False)
    for e in run.get("startup_errors") or []:
        console.print(f"  [red]{e['occurrences']}x[/red] (start-up) {escape(e['name'])}: {escape(e['error'])}",
                      highlight=False)


def never_sent(run: Mapping[str, Any]) -> list[str]:
    """Request names and checks the personas declare that this run never sent (or never reached)."""
    seen = set(run.get("requests") or {}) | set(run.get("checks") or {})
    return sorted(set(run.get("declared") or []) - seen)
