"""`erpops loadtest`: run, record a baseline, gate a change, find capacity. Never imports Locust.

Locust monkey-patches the standard library with gevent when imported, so every load runs in its own
process: `[sys.executable, "-m", "loadtests.runner", ...]`. This module only starts it, reads the
JSON it writes, judges and prints.

Exit codes (gate; the other commands use 0, 1, 2 and 3 the same way):
  0  pass
  1  regression: a p95 slower than the baseline beyond tolerance, a request name the personas declare
     never sent, a business check (MO done, transfer done...) failing, error ratio above the spec's
     slo.error_ratio, req/s below slo.min_rps, a request above its slo.requests limits, a crash
     inside the load-test users; or a server too slow to answer the pre-flight (it is up, not down)
  2  bad input: invalid spec or flags, no baseline for the stack, a baseline recorded in the other mode
     (read-only vs read-write), or write personas aimed at a prod-tier stack without --allow-writes
  3  target unreachable (connection refused, name unknown) or login refused
  4  the load generator itself failed (an erpops problem, not the target's)
  7  INCONCLUSIVE: nothing failed, but the run could not have caught the slow-down the spec requires
     (slo.detect) on some request name: too few samples; run longer or with more users
  70 an unexpected internal error (a traceback follows; a bug in erpops)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape

from erpops.errors import (
    EXIT_FAILED,
    EXIT_OK,
    CredentialsError,
    ErpopsError,
    Inconclusive,
    OperationFailed,
    ServiceError,
    UsageError,
)
from loadtests import modes, report, stats

out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

PASSWORD_ENV = "ERPOPS_ODOO_PASSWORD"  # noqa: S105 (the variable's name)
WARMUP_HELP = ("Each run waits until every user has logged in and finished its start-up, then this much more, "
               "before measuring; use the same for record and gate.")
PREFLIGHT_TIMEOUT = 60.0


class SlowServer(ErpopsError):
    """The server accepted the connection but did not answer in time: it is up and slow, not unreachable."""

    exit_code = EXIT_FAILED


def parse_duration(text: str, option: str = "--duration", zero_ok: bool = False) -> float:
    """`20s`, `2m`, `1m30s` or plain seconds."""
    m = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text)
    if not text.strip() or not m or not (m[1] or m[2]):
        raise UsageError(f"{option} {text!r} is not a duration: write 20s, 2m or 1m30s")
    seconds = float(m[1] or 0) * 60 + float(m[2] or 0)
    if seconds <= 0 and not zero_ok:
        raise UsageError(f"{option} must be longer than 0 s")
    return seconds


class Target:
    """What to load and how, resolved from the stack's spec and the flags."""

    def __init__(self, ctx: click.Context, stack: str, host: str | None, db: str | None, login: str,
                 read_only: bool = False, allow_writes: bool = False, preflight_timeout: str | None = None) -> None:
        from erpops import spec

        if preflight_timeout is not None:
            self.preflight_timeout = parse_duration(preflight_timeout, "--preflight-timeout")
        root = (ctx.obj or {}).get("root") if isinstance(ctx.obj, dict) else None
        self.root: Path = root or spec.find_root()
        self.sized = spec.load(stack, self.root)
        self.stack = stack
        # before any request: write personas never reach a prod-tier stack by accident
        modes.write_guard(stack, self.sized.spec.tier, read_only, allow_writes)
        self.read_only = read_only
        if allow_writes and self.sized.spec.tier == "prod":
            err.print(f"[yellow]WARNING[/yellow]: --allow-writes on prod stack {stack}: the personas will create, "
                      "confirm and validate real records in it")
        self.slo = self.sized.spec.slo
        self.host = (host or f"https://{self.sized.spec.kubernetes.host}").rstrip("/")
        if not self.host.startswith(("http://", "https://")):
            raise UsageError(f"--host {self.host!r} is not an http(s) URL: write it like https://erp.example.com")
        self.db = db or self.sized.database
        self.login = login
        self.password = os.environ.get(PASSWORD_ENV, "")

    def baseline_path(self, given: Path | None) -> Path:
        return given or self.root / "loadtests" / "baselines" / modes.default_baseline_name(self.stack, self.read_only)

    @property
    def mode(self) -> str:
        return modes.mode_name(self.read_only)

    preflight_timeout: float = PREFLIGHT_TIMEOUT

    def _post(self, path: str, params: dict[str, Any]) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "method": "call", "params": params, "id": 1}).encode()
        req = urllib.request.Request(self.host + path, data=body,  # noqa: S310 (scheme checked in __init__)
                                     headers={"Content-Type": "application/json"})
        timeout = self.preflight_timeout
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (scheme checked in __init__)
                return json.loads(resp.read() or b"{}")
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError) or isinstance(exc, TimeoutError):
                raise SlowServer(f"Odoo at {self.host} accepted the connection but did not answer {path} within "
                                 f"{timeout:g} s: the server is up and too slow to load-test (a failure, not an "
                                 "unreachable server). Look at its workers and database; --preflight-timeout "
                                 "waits longer") from None
            why = f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else str(reason)
            raise ServiceError(f"Odoo at {self.host} is unreachable ({path}: {why}): check --host and that "
                               "the server is up") from None

    def preflight(self) -> str:
        """The server's serie; raises ServiceError/CredentialsError (exit 3) before any load starts."""
        info = self._post("/web/webclient/version_info", {})
        if "result" not in info:
            raise ServiceError(f"{self.host} answered version_info without a result: is it Odoo?")
        auth = self._post("/web/session/authenticate", {"db": self.db, "login": self.login, "password": self.password})
        if not (auth.get("result") or {}).get("uid"):
            why = ((auth.get("error") or {}).get("data") or {}).get("message") or "no uid returned"
            raise CredentialsError(f"login {self.login!r} on database {self.db!r} refused ({why}): check --db, "
                                   f"--login and ${PASSWORD_ENV}")
        return str(info["result"].get("server_serie") or info["result"].get("server_version"))

    def run_locust(self, users: int, duration: float, runs: int = 1, html: Path | None = None,
                   scenario: str = "personas", warmup: float = 0.0) -> list[dict[str, Any]]:
        """Start the runner in its own process, relay its progress lines, return its runs."""
        with tempfile.TemporaryDirectory(prefix="erpops-loadtest-") as tmp:
            result = Path(tmp) / "result.json"
            cmd = [sys.executable, "-m", "loadtests.runner", "--host", self.host, "--users", str(users),
                   "--duration", str(duration), "--warmup", str(warmup), "--runs", str(runs), "--scenario", scenario,
                   "--db", self.db,
                   "--login", self.login, "--think", *(str(t) for t in self.slo.think_time_seconds),
                   "--weights", json.dumps(dict(self.slo.persona_weights)), "--result", str(result)]
            if html is not None:
                cmd += ["--html", str(html.resolve())]
            if self.read_only:
                cmd.append("--read-only")
            env = {**os.environ, PASSWORD_ENV: self.password}
            # stderr to a file, not a pipe: a crashing user prints a traceback per iteration, which would
            # fill a pipe nobody reads while we follow stdout, and both processes would wait forever.
            with open(Path(tmp) / "stderr.txt", "w+") as stderr, \
                    subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env) as proc:
                assert proc.stdout is not None
                for line in proc.stdout:
                    err.print(f"[dim]{escape(line.rstrip())}[/dim]", highlight=False)
                code = proc.wait()
                stderr.seek(0)
                tail = stderr.read()[-1500:].strip()
            if code != 0 or not result.exists():
                # the target was reachable (preflight passed): this is erpops failing, not the service
                raise OperationFailed(f"the load generator failed (exit {code}), not the target: {tail}")
            return list(json.loads(result.read_text())["runs"])


def prepare_outputs(*paths: Path | None) -> None:
    """Create the folders of the report files before any load runs (CI checkouts have no `out/`).

    A folder that cannot be made is bad input (exit 2), found in a second, not after the runs.
    """
    for path in paths:
        if path is None or str(path) == "-":
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the folder of {path} ({exc.strerror}): choose another path") from None
        if path.is_dir():
            raise UsageError(f"{path} is a folder: give a file name, e.g. {path / 'report'}")


def _fail(exc: ErpopsError) -> NoReturn:
    err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
    sys.exit(exc.exit_code)


JSON_HELP = ("Write the result as the erpops JSON envelope (docs/json-output.md) to this file, or to stdout with `-` "
             "(the tables go to stderr then); an error is written there too, with its exit code.")


class JsonOut:
    """Where a loadtest command's --json envelope goes: nowhere, a file, or stdout (`-`)."""

    def __init__(self, path: Path | None, command: str) -> None:
        self.path = path
        self.command = command
        self.written = False

    @property
    def to_stdout(self) -> bool:
        return self.path is not None and str(self.path) == "-"

    @property
    def console(self) -> Console:
        """Where the tables for people go: stderr when stdout carries the JSON."""
        return err if self.to_stdout else out

    def write(self, body: Mapping[str, Any], ok: bool | None = None) -> None:
        from erpops.jsonout import envelope

        if self.path is None:
            return
        self._put(json.dumps(envelope(body, command=self.command, ok=ok), indent=1, default=str) + "\n")

    def error(self, exc: BaseException) -> None:
        """The error envelope, unless a result was written already; a file that cannot be written is let be
        (the reason is on stderr, and the exit code says it all)."""
        from erpops.jsonout import error

        if self.path is None or self.written:
            return
        with contextlib.suppress(OSError):
            self._put(json.dumps(error(exc, command=self.command), indent=1, default=str) + "\n")

    def _put(self, text: str) -> None:
        if self.to_stdout:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            assert self.path is not None
            report.write_atomic(self.path, text)
        self.written = True


def _json_envelope(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The command's `json_file` becomes a JsonOut; an error (ours: its exit code; any other: 70 and the
    traceback) is written there as the error envelope before the command exits."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            js = JsonOut(kwargs.get("json_file"), command)
            kwargs["json_file"] = js
            try:
                return fn(*args, **kwargs)
            except ErpopsError as exc:
                js.error(exc)
                _fail(exc)
            except Exception as exc:
                js.error(exc)
                raise

        return wrapper

    return decorate


def _common(f: Any) -> Any:
    for option in reversed([
        click.option("--stack", "-s", required=True, help="Stack whose spec gives the SLO, weights and think times."),
        click.option("--host", default=None, help="Odoo base URL (default: https://<kubernetes.host> of the stack)."),
        click.option("--db", default=None, help="Database (default: the stack's odoo.database)."),
        click.option("--login", default="admin", show_default=True,
                     help=f"Odoo login of the simulated users (password: ${PASSWORD_ENV})."),
        click.option("--read-only", is_flag=True,
                     help="Personas only read (search_read, web_search_read, read, search_count, page loads); "
                          "nothing is created, written, confirmed or validated. Allowed on prod."),
        click.option("--allow-writes", is_flag=True,
                     help="Run the write personas on a prod-tier stack (refused there without it)."),
        click.option("--preflight-timeout", default=f"{PREFLIGHT_TIMEOUT:g}s", show_default=True,
                     help="How long the pre-flight waits for version_info and login: a server slower than "
                          "this is reported slow (exit 1), one that refuses the connection unreachable (exit 3)."),
    ]):
        f = option(f)
    return f


@click.group("loadtest")
def loadtest() -> None:
    """Load-test Odoo with Locust personas (planner, shop floor, buyer, sales, warehouse); gate regressions."""


@loadtest.command("run")
@_common
@click.option("--users", "-u", type=click.IntRange(1), default=10, show_default=True)
@click.option("--duration", "-d", default="20s", show_default=True, help="Run time, e.g. 20s or 2m.")
@click.option("--html", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Locust's HTML report.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), default=None,
              help=JSON_HELP + " It holds the run's statistics (with histograms).")
@click.pass_context
@_json_envelope("erpops loadtest run")
def run_cmd(ctx: click.Context, stack: str, host: str | None, db: str | None, login: str, read_only: bool,
            allow_writes: bool, preflight_timeout: str, users: int, duration: str, html: Path | None,
            json_file: JsonOut) -> None:
    """One run; prints per-request statistics and the declared names never sent. Exit 0 whatever the latencies
    (use `gate` to judge)."""
    target = Target(ctx, stack, host, db, login, read_only, allow_writes, preflight_timeout)
    seconds = parse_duration(duration)
    prepare_outputs(html, json_file.path)
    serie = target.preflight()
    err.print(f"Odoo {serie} at {target.host}: {users} users for {seconds:g} s, {target.mode}")
    run = target.run_locust(users, seconds, html=html)[0]
    report.run_table(f"erpops loadtest run {stack} ({target.host}, Odoo {serie})", run, json_file.console)
    json_file.write({"stack": stack, "host": target.host, "odoo_serie": serie, "users": users, "duration_s": seconds,
                     "mode": target.mode, **run})


@loadtest.command("record")
@_common
@click.option("--users", "-u", type=click.IntRange(1), default=10, show_default=True)
@click.option("--duration", "-d", default="20s", show_default=True, help="Run time of each run.")
@click.option("--runs", type=click.IntRange(1), default=10, show_default=True,
              help="Runs to record: every gate's interval carries the baseline's uncertainty too, and a baseline "
                   "is recorded once (10 runs of a baseline and 5 of a gate see what 5 and 5 cannot).")
@click.option("--warmup", default="2s", show_default=True, help=WARMUP_HELP)
@click.option("--baseline", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write (default: loadtests/baselines/<stack>.json, <stack>.read-only.json "
                   "with --read-only).")
@click.option("--html", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Locust's HTML report of the last run.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), default=None,
              help=JSON_HELP + " It holds the baseline written and its path (`baseline_path`).")
@click.pass_context
@_json_envelope("erpops loadtest record")
def record(ctx: click.Context, stack: str, host: str | None, db: str | None, login: str, read_only: bool,
           allow_writes: bool, preflight_timeout: str, users: int, duration: str, runs: int, warmup: str,
           baseline: Path | None, html: Path | None, json_file: JsonOut) -> None:
    """Record the baseline the gate compares with: p50/p95/p99, histograms, error ratio, req/s."""
    show = json_file.console
    target = Target(ctx, stack, host, db, login, read_only, allow_writes, preflight_timeout)
    seconds = parse_duration(duration)
    warm = parse_duration(warmup, "--warmup", zero_ok=True)
    prepare_outputs(html, target.baseline_path(baseline), json_file.path)
    serie = target.preflight()
    err.print(f"recording {stack}: Odoo {serie} at {target.host}, {runs} runs x {seconds:g} s x {users} users, "
              f"{target.mode}")
    results = target.run_locust(users, seconds, runs, html, warmup=warm)
    crashes = [e for r in results for e in r.get("exceptions") or []]
    if crashes:
        raise OperationFailed(f"not recorded: the load-test users crashed (a persona bug, not the target): "
                              f"{crashes[0]['msg']}")
    never = sorted(set().union(*(report.never_sent(r) for r in results)) - {n for r in results for n in r["requests"]}
                   - {n for r in results for n in r.get("checks") or {}}) if results else []
    if never:
        for r in results[-1:]:
            report.run_table(f"last run of {runs}", r, show)
        raise ErpopsError(f"not recorded: the personas never sent {', '.join(never)} (a step that did nothing: "
                          "see the errors above); a baseline without them cannot judge them")
    doc = {"stack": stack, "host": target.host, "odoo_serie": serie,
           "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
           "read_only": target.read_only, "users": users, "duration_s": seconds, "warmup_s": warm,
           "think_time_seconds": list(target.slo.think_time_seconds),
           "persona_weights": dict(target.slo.persona_weights), **stats.summarize(results)}
    path = target.baseline_path(baseline)
    report.write_atomic(path, json.dumps(doc, indent=1) + "\n")
    for r in results[-1:]:
        report.run_table(f"last run of {runs}", r, show)
    show.print(f"[green]{target.mode} baseline written[/green] {path}: {doc['rps']:.1f} req/s, error ratio "
               f"{doc['error_ratio']:.2%}, p95 {doc['requests'][stats.TOTAL]['p95']:.0f} ms")
    json_file.write({"baseline_path": str(path), "mode": target.mode, "runs": runs, **doc})
    if doc["error_ratio"] > target.slo.error_ratio:
        err.print(f"[yellow]WARNING[/yellow]: the baseline's error ratio {doc['error_ratio']:.2%} is above the "
                  f"spec's {target.slo.error_ratio:.2%}: every gate against it will fail on errors")


def load_baseline(path: Path, read_only: bool = False) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        flag = " --read-only" if read_only else ""
        raise UsageError(f"no baseline at {path}: record one with `erpops loadtest record --stack <stack>{flag} "
                         "--host <url>` (see runbooks/load-test-gate.md)") from None
    except ValueError as exc:
        raise UsageError(f"baseline {path} is not JSON ({exc}): re-record it") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("requests"), dict):
        raise UsageError(f"baseline {path} has no `requests` table: re-record it")
    return doc


def _slo_limits(target: Target) -> dict[str, Mapping[str, float]]:
    return {name: r.model_dump() for name, r in target.slo.requests.items()}


@loadtest.command("gate")
@_common
@click.option("--runs", type=click.IntRange(1), default=5, show_default=True, help="Short runs to repeat.")
@click.option("--warmup", default="2s", show_default=True, help=WARMUP_HELP)
@click.option("--duration", "-d", default="20s", show_default=True, help="Run time of each run.")
@click.option("--users", "-u", type=click.IntRange(1), default=None,
              help="Simulated users (default: as many as the baseline was recorded with).")
@click.option("--tolerance", type=click.FloatRange(0, 10), default=None,
              help="Allowed p95 slow-down: fail when the 95% CI's lower bound of p95/baseline exceeds 1 + this "
                   "(default: the spec's slo.tolerance, 0.10, or slo.requests.<name>.tolerance).")
@click.option("--detect", type=click.FloatRange(1, 20, min_open=True), default=None,
              help="The p95 slow-down the gate must be able to catch (90% power); a run that cannot is "
                   "INCONCLUSIVE, exit 7 (default: the spec's slo.detect, 1.30, or slo.requests.<name>.detect).")
@click.option("--min-samples", type=click.IntRange(1), default=20, show_default=True,
              help="Requests a name needs (over all runs) to be judged at all.")
@click.option("--baseline", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Baseline to compare with (default: loadtests/baselines/<stack>.json, <stack>.read-only.json "
                   "with --read-only).")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write JUnit XML.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), default=None,
              help=JSON_HELP + " It holds the verdict (ok: whether the gate passed).")
@click.option("--html", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the gate's report: verdict per request, baseline vs current p50/p95/p99 with the "
                   "bootstrap interval, error ratio, req/s, latency over time and percentile plots (one file).")
@click.pass_context
@_json_envelope("erpops loadtest gate")
def gate(ctx: click.Context, stack: str, host: str | None, db: str | None, login: str, read_only: bool,
         allow_writes: bool, preflight_timeout: str, runs: int, warmup: str, duration: str, users: int | None,
         tolerance: float | None, detect: float | None, min_samples: int, baseline: Path | None,
         junit: Path | None, json_file: JsonOut, html: Path | None) -> None:
    """Repeat short runs and compare with the baseline; exit 0 pass, 1 regression, 2 bad input, 3 unreachable,
    7 inconclusive (the run could not have caught the slow-down the spec requires)."""
    target = Target(ctx, stack, host, db, login, read_only, allow_writes, preflight_timeout)
    seconds = parse_duration(duration)
    warm = parse_duration(warmup, "--warmup", zero_ok=True)
    prepare_outputs(junit, json_file.path, html)
    base_path = target.baseline_path(baseline)
    base = load_baseline(base_path, target.read_only)
    modes.check_baseline_mode(base, target.read_only, base_path, stack)
    users = users or int(base.get("users") or 10)
    if users != base.get("users"):
        err.print(f"[yellow]note[/yellow]: {users} users, the baseline had {base.get('users')}: "
                  "latencies may differ for that reason alone")
    serie = target.preflight()
    if base.get("odoo_serie") and base["odoo_serie"] != serie:
        err.print(f"[yellow]note[/yellow]: the server runs Odoo {serie}, the baseline was recorded on "
                  f"{base['odoo_serie']}")
    if base.get("warmup_s") is not None and base["warmup_s"] != warm:
        err.print(f"[yellow]note[/yellow]: warm-up {warm:g} s, the baseline had {base['warmup_s']:g} s")
    err.print(f"gate {stack}: Odoo {serie} at {target.host}, {runs} runs x {seconds:g} s x {users} users, "
              f"{target.mode}")
    started_at, wall0 = dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), time.monotonic()
    results = target.run_locust(users, seconds, runs, warmup=warm)
    wall = time.monotonic() - wall0
    tol = target.slo.tolerance if tolerance is None else tolerance
    det = target.slo.detect if detect is None else detect
    if det <= 1 + tol:
        raise UsageError(f"--detect {det:g} must be above 1 + tolerance ({1 + tol:g}): a gate cannot catch a "
                         "slow-down it tolerates")
    limits = _slo_limits(target)
    if tolerance is not None or detect is not None:  # a flag overrides the spec for every name
        limits = {n: {**lim, "tolerance": tolerance if tolerance is not None else lim.get("tolerance"),
                      "detect": detect if detect is not None else lim.get("detect")} for n, lim in limits.items()}
    verdict = stats.judge(stack, target.host, base, results, target.slo.error_ratio, target.slo.min_rps,
                          limits, tol, min_samples=min_samples, detect=det)
    report.verdict_table(verdict, json_file.console)
    meta = {"baseline": str(base_path), "baseline_recorded_at": base.get("recorded_at"), "odoo_serie": serie,
            "users": users, "duration_per_run_s": seconds, "warmup_s": warm, "mode": target.mode}
    if junit is not None:
        report.write_atomic(junit, report.junit_xml(verdict, started_at=started_at, duration_s=wall, properties=meta))
    if html is not None:
        from loadtests import html_report

        report.write_atomic(html, html_report.render(verdict, results, base, {**meta, "started_at": started_at}))
    json_file.write({**verdict.to_dict(), "read_only": target.read_only}, ok=verdict.passed)
    # sys.exit, not ctx.exit: erpops runs click with standalone_mode=False (see healthchecks/cli.py)
    codes = {stats.PASS: EXIT_OK, stats.FAIL: EXIT_FAILED, stats.INCONCLUSIVE: Inconclusive.exit_code}
    sys.exit(codes[verdict.status])


@loadtest.command("capacity")
@_common
@click.option("--start-users", type=click.IntRange(1), default=1, show_default=True)
@click.option("--max-users", type=click.IntRange(1), default=256, show_default=True)
@click.option("--factor", type=click.FloatRange(1.1, 10), default=2.0, show_default=True,
              help="Multiply the users by this at each step.")
@click.option("--duration", "-d", default="20s", show_default=True, help="Run time of each step.")
@click.option("--warmup", default="2s", show_default=True, help="Run this long before measuring each step.")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="Odoo workers serving --host (default: the stack's workers per pod x odoo.web.replicas).")
@click.option("--worker-rss-mib", type=click.FloatRange(1), default=None,
              help="A worker's resident memory under load, when its processes are not on this machine.")
@click.option("--worker-vms-mib", type=click.FloatRange(1), default=None,
              help="A worker's virtual memory under load (what limit_memory_soft compares), likewise.")
@click.option("--calibration", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to record (default: loadtests/baselines/<stack>.calibration.json).")
@click.option("--no-record", is_flag=True, help="Only print the ramp; record no calibration.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), default=None,
              help=JSON_HELP + " It holds every step of the ramp and the knee.")
@click.pass_context
@_json_envelope("erpops loadtest capacity")
def capacity(ctx: click.Context, stack: str, host: str | None, db: str | None, login: str, read_only: bool,
             allow_writes: bool, preflight_timeout: str, start_users: int, max_users: int, factor: float,
             duration: str, warmup: str, workers: int | None, worker_rss_mib: float | None,
             worker_vms_mib: float | None, calibration: Path | None, no_record: bool, json_file: JsonOut) -> None:
    """Ramp users until a p95 crosses its SLO or p50 doubles; record users and req/s per worker there.

    The calibration (loadtests/baselines/<stack>.calibration.json) feeds `erpops size --users N` and
    odoo.web.target_users. See runbooks/calibrate-sizing.md.
    """
    from rich.table import Table

    from erpops import capacity as cap
    from loadtests.calibrate import MemorySampler

    target = Target(ctx, stack, host, db, login, read_only, allow_writes, preflight_timeout)
    seconds = parse_duration(duration)
    prepare_outputs(json_file.path)
    warm = parse_duration(warmup, "--warmup", zero_ok=True)
    workers = workers or target.sized.odoo.workers * target.sized.spec.odoo.web.replicas
    slo_p95 = {name: r.p95_ms for name, r in target.slo.requests.items()}
    serie = target.preflight()
    err.print(f"capacity {stack}: Odoo {serie} at {target.host}, {workers} workers, {seconds:g} s per step, "
              f"{target.mode}")
    steps: list[dict[str, Any]] = []
    users, knee = start_users, None
    sampler = MemorySampler(target.host)
    while True:
        with sampler:
            run = target.run_locust(users, seconds, warmup=warm)[0]
        steps.append({"users": users, "rps": run["rps"], "p50": run["total"]["p50"] or 0.0,
                      "p95": run["total"]["p95"], "fail_ratio": run["fail_ratio"],
                      "p95_by_name": {n: e["p95"] for n, e in run["requests"].items() if n in slo_p95}})
        if len(steps) > 1 and cap.broken(steps[-1], steps[0]["p50"], slo_p95):
            knee = steps[-1]
            break
        if users >= max_users:
            break
        users = min(max_users, max(users + 1, round(users * factor)))
    table = Table(title=f"erpops loadtest capacity {stack} ({target.host})", title_justify="left")
    for col in ("users", "req/s", "p50 ms", "p95 ms", "failed"):
        table.add_column(col, justify="right")
    for s in steps:
        table.add_row(str(s["users"]), f"{s['rps']:.1f}", f"{s['p50']:.0f}", f"{s['p95'] or 0:.0f}",
                      f"{s['fail_ratio']:.2%}", style="bold red" if s is knee else None)
    show = json_file.console
    show.print(table)
    result = {"stack": stack, "host": target.host, "read_only": target.read_only, "steps": steps, "knee": knee,
              "calibration": None, "calibration_path": None}
    if knee is None:
        show.print(f"p50 did not double and no p95 crossed its SLO up to {steps[-1]['users']} users "
                   f"({steps[-1]['rps']:.1f} req/s): raise --max-users; no calibration recorded")
        json_file.write(result)
        return
    show.print(f"latency broke at [bold]{knee['users']} users, {knee['rps']:.1f} req/s[/bold] (the step below: "
               f"{steps[-2]['users']} users); a smaller --factor gives a finer answer")
    if no_record:
        json_file.write(result)
        return
    if worker_rss_mib is not None:
        memory = {"rss_mib": worker_rss_mib, "vms_mib": worker_vms_mib, "source": "given (--worker-rss-mib)"}
    elif sampler.rss_mib is not None:
        memory = {"rss_mib": round(sampler.rss_mib, 1), "vms_mib": round(sampler.vms_mib or 0, 1),
                  "source": f"measured: max over {sampler.processes} process(es) serving {target.host}"}
    else:
        memory = {"rss_mib": None, "vms_mib": None,
                  "source": "not measured (--host is not on this machine; pass --worker-rss-mib): the docs' mix "
                            "is used for memory"}
    doc = cap.calibration(stack=stack, host=target.host, odoo_serie=serie, read_only=target.read_only,
                          personas=dict(target.slo.persona_weights),
                          think_time_seconds=tuple(target.slo.think_time_seconds), workers=workers,
                          steps=steps, slo_p95=slo_p95, memory=memory)
    path = calibration or cap.calibration_path(target.root, stack)
    report.write_atomic(path, json.dumps(doc, indent=1) + "\n")
    for line in doc["arithmetic"]:
        show.print(f"  {line}")
    show.print(f"[green]calibration written[/green] {path}: {doc['users_per_worker']:.2f} users and "
               f"{doc['rps_per_worker']:.2f} req/s per worker ({doc['criterion']}); worker memory "
               f"{memory['rss_mib'] or '-'} MiB resident, {memory['vms_mib'] or '-'} MiB virtual ({memory['source']})")
    json_file.write({**result, "calibration": doc, "calibration_path": str(path)})
