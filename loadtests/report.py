"""Render a gate verdict or a run: rich table for people, JUnit XML for CI, JSON for tools."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import tempfile
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


def junit_xml(v: Verdict, *, started_at: str | None = None, duration_s: float | None = None,
              properties: Mapping[str, Any] | None = None, hostname: str | None = None) -> str:
    """The verdict as JUnit XML (a `<testsuites>` root, one suite, one test case per check), written with junitparser.

    Valid against tests/schemas/junit.xsd (the format Jenkins' JUnit/xUnit plugins and GitLab read): `errors`,
    `time`, `timestamp`, `hostname` on the suite. A failed check is a `<failure>`; a crash inside the load-test
    users is an `<error>` (the gate could not judge); a check not judged is `<skipped>`. The baseline, target and
    run count go into `<properties>`.
    """
    from junitparser import Error, Failure, JUnitXml, Skipped, TestCase, TestSuite

    suite = TestSuite(f"erpops loadtest gate {v.stack}")
    suite.hostname = hostname or socket.gethostname()
    suite.timestamp = started_at or dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    props = {"stack": v.stack, "host": v.host, "runs": v.runs, "tolerance": v.tolerance, "requests": v.requests,
             "failed_requests": v.failures, "rps_median": round(v.rps, 3), **(properties or {})}
    for name, value in props.items():
        if value is not None:
            suite.add_property(name, str(value))
    for c in v.checks:
        case = TestCase(c.name, classname=f"loadtest.{v.stack}.{c.kind}", time=0)
        if c.kind == "crash" and not c.ok:
            result = Error(c.message, c.kind)
            result.text = json.dumps(c.detail, default=str)
            case.result = [result]
        elif not c.ok:
            result = Failure(c.message, c.kind)
            result.text = json.dumps(c.detail, default=str)
            case.result = [result]
        elif not c.judged or not c.conclusive:
            case.result = [Skipped(c.message)]
        else:
            case.system_out = c.message
        suite.add_testcase(case)
    suite.update_statistics()
    suite.time = round(duration_s or 0.0, 3)  # the runs' wall time, warm-ups included
    root = JUnitXml(f"erpops loadtest gate {v.stack}")
    root.add_testsuite(suite)
    # by hand, not root.update_statistics(): that adds `skipped` to <testsuites>, which the XSD does not allow
    root.tests, root.failures, root.errors, root.time = suite.tests, suite.failures, suite.errors, suite.time
    return '<?xml version="1.0" encoding="utf-8"?>\n' + root.tostring().decode() + "\n"


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
