"""Run Locust headless in this process and write what it measured as JSON. Imports Locust (gevent).

Never imported by erpops, the CLI or pytest: they start it as
`[sys.executable, "-m", "loadtests.runner", ...]`. The password is read from $ERPOPS_ODOO_PASSWORD
so it never shows in a process list.

The result file holds one entry per run: per request name the count, failures, p50/p95/p99 and the
latency histogram (1 ms buckets -> count) the gate's statistic resamples from; the business checks
(`check:*`), and the request names the personas declare (`declared`), so a name never sent shows.

Steady state only: a run waits until every user has logged in and finished its start-up, then
`--warmup` seconds more, then counts the requests that *start* within `--duration` (those in flight
at its end are waited for). Login bursts and requests in flight at the switch are never counted.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()  # before anything imports ssl/socket: the order Locust's own entry point uses

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from locust import between  # noqa: E402
from locust.env import Environment  # noqa: E402

from loadtests.odoo_user import OdooUser  # noqa: E402
from loadtests.stats import EmpiricalDistribution  # noqa: E402

SCENARIOS = ("personas", "bench-odoo", "bench-plain")


def user_classes(scenario: str, weights: dict[str, int], think: tuple[float, float], db: str, login: str,
                 password: str, read_only: bool = False) -> list[type]:
    if scenario == "bench-odoo":
        from loadtests.bench_users import OdooVersionInfo
        return [OdooVersionInfo]
    if scenario == "bench-plain":
        from loadtests.bench_users import PlainVersionInfo
        return [PlainVersionInfo]
    from loadtests.personas import PERSONAS

    OdooUser.db, OdooUser.login, OdooUser.password = db, login, password
    OdooUser.read_only = read_only  # personas read only; call_kw refuses anything but READ_METHODS
    classes: list[type] = []
    for persona, cls in PERSONAS.items():
        weight = int(weights.get(persona, 0))
        if weight > 0:
            cls.weight = weight
            cls.wait_time = between(*think)
            classes.append(cls)
    return classes


class Measured:
    """Requests that *started* inside the measurement window, at 1 ms resolution, per name and in total.

    Locust keeps its own histogram rounded to 10 ms above 100 ms and to 100 ms above 1 s: a step of
    up to 10%, as large as the gate's tolerance. Counting by start time also means a request still in
    flight when the window opens (a slow login of the start-up burst) is never counted, however late
    it completes, and one in flight when it closes is waited for and counted.
    Business checks (`check:*`, fired by the personas) are kept apart: they have no latency.
    """

    def __init__(self) -> None:
        self.window: tuple[float, float] | None = None  # wall-clock [start, end) of the measurement
        self.by_name: dict[str, Counter[int]] = defaultdict(Counter)
        self.failures: Counter[str] = Counter()
        self.errors: Counter[tuple[str, str]] = Counter()
        self.checks: dict[str, Counter[str]] = defaultdict(Counter)
        self.total: Counter[int] = Counter()
        self.startup_errors: Counter[tuple[str, str]] = Counter()  # failures before the window: not measured
        self.per_second: dict[int, Counter[int]] = defaultdict(Counter)  # second of the window -> latencies
        self.failed_per_second: Counter[int] = Counter()

    def on_request(self, name: str, response_time: float, exception: Any = None, start_time: float | None = None,
                   **_: Any) -> None:
        started = start_time if start_time is not None else time.time() - (response_time or 0) / 1000.0
        if self.window is None or not self.window[0] <= started < self.window[1]:
            if exception and (self.window is None or started < self.window[0]):
                self.startup_errors[(name, str(exception))] += 1
            return
        if name.startswith("check:"):
            self.checks[name]["failed" if exception else "ok"] += 1
            if exception:
                self.errors[(name, str(exception))] += 1
            return
        ms = int(response_time + 0.5)
        self.by_name[name][ms] += 1
        self.total[ms] += 1
        second = int(started - self.window[0])
        self.per_second[second][ms] += 1
        if exception:
            self.failures[name] += 1
            self.errors[(name, str(exception))] += 1
            self.failed_per_second[second] += 1

    def timeline(self) -> list[dict[str, Any]]:
        """Per second of the measured window: requests, failures, p50 and p95 (the HTML report's latency plot)."""
        out = []
        for second, hist in sorted(self.per_second.items()):
            dist = EmpiricalDistribution(hist)
            out.append({"t": second, "requests": dist.n, "failures": self.failed_per_second.get(second, 0),
                        "p50": dist.quantile(0.50), "p95": dist.quantile(0.95)})
        return out


def summary(hist: Counter[int], failures: int) -> dict[str, Any]:
    dist = EmpiricalDistribution(hist)
    return {
        "count": dist.n,
        "failures": failures,
        "p50": dist.quantile(0.50) if dist.n else None,
        "p95": dist.quantile(0.95) if dist.n else None,
        "p99": dist.quantile(0.99) if dist.n else None,
        "hist": {str(ms): c for ms, c in sorted(hist.items())},
    }


def declared_names(classes: list[type], counts: dict[str, int], read_only: bool) -> list[str]:
    """What the personas that got at least one user declare they send in the steady state."""
    names: set[str] = set()
    for cls in classes:
        if counts.get(cls.__name__, 0) > 0 and hasattr(cls, "declared"):
            names |= cls.declared(read_only)
    return sorted(names)


def wait_for_start_up(runner: Any, users: int, timeout: float) -> tuple[float, int]:
    """Until every spawned user logged in and finished its start-up (or `timeout`): (seconds, users done)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if OdooUser.started_up >= users:  # a user that failed to log in has stopped: count, not user_count
            break
        gevent.sleep(0.05)
    return time.monotonic() - t0, OdooUser.started_up


def one_run(classes: list[type], host: str, users: int, duration: float, html: Path | None,
            warmup: float = 0.0, read_only: bool = False, steady: bool = True,
            startup_timeout: float = 120.0) -> dict[str, Any]:
    """One measured run. With `steady`, the warm-up ends when every user has finished its start-up,
    then `warmup` more seconds; only requests started after that (and before the end) count."""
    env = Environment(user_classes=classes, host=host)
    measured = Measured()
    env.events.request.add_listener(measured.on_request)
    OdooUser.started_up = 0
    runner = env.create_local_runner()
    runner.start(users, spawn_rate=max(users * 10, 1))
    startup_s, started = (wait_for_start_up(runner, users, startup_timeout) if steady else (0.0, 0))
    if warmup > 0:
        gevent.sleep(warmup)
    env.stats.reset_all()  # Locust's own table (the HTML report): from here on, like ours
    cpu0 = time.process_time()
    start = time.time()
    measured.window = (start, start + duration)
    gevent.sleep(duration)
    # requests started before the end are counted when they complete: wait 1.5x the slowest seen
    gevent.sleep(min(30.0, max(0.2, 1.5 * max(measured.total, default=0) / 1000.0)))
    counts = dict(getattr(runner, "user_classes_count", {}) or {})
    runner.quit()
    wall, cpu = duration, time.process_time() - cpu0
    requests = {name: summary(h, measured.failures[name]) for name, h in sorted(measured.by_name.items())}
    total = summary(measured.total, sum(measured.failures.values()))
    if html is not None:
        from locust.html import get_html_report
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(get_html_report(env, show_download_link=False))
    errors = [{"name": n, "error": e, "occurrences": c} for (n, e), c in measured.errors.most_common(20)]
    return {
        "users": users, "warmup_s": warmup, "startup_s": round(startup_s, 3), "started_up": started,
        "duration_s": round(wall, 3), "cpu_seconds": round(cpu, 3),
        "rps": total["count"] / wall if wall else 0.0,
        "fail_ratio": total["failures"] / total["count"] if total["count"] else 0.0,
        "requests": requests,
        "total": total,
        "checks": {name: {"ok": c["ok"], "failed": c["failed"]} for name, c in sorted(measured.checks.items())},
        "declared": declared_names(classes, counts, read_only),
        "user_classes": counts,
        "errors": errors,
        "startup_errors": [{"name": n, "error": e, "occurrences": c}
                           for (n, e), c in measured.startup_errors.most_common(20)],
        "timeline": measured.timeline(),
        # crashes inside a user (a bug in a persona, not a server failure): the gate refuses to judge
        "exceptions": [{"count": e["count"], "msg": e["msg"], "traceback": e["traceback"][-2000:]}
                       for e in runner.exceptions.values()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.runner", description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per run")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=0.0,
                        help="seconds run after every user finished its start-up, before measuring (not counted)")
    parser.add_argument("--startup-timeout", type=float, default=120.0,
                        help="longest wait for every user to log in and finish its start-up")
    parser.add_argument("--scenario", choices=SCENARIOS, default="personas")
    parser.add_argument("--db", default="")
    parser.add_argument("--login", default="admin")
    parser.add_argument("--think", type=float, nargs=2, default=(1.0, 5.0), metavar=("MIN", "MAX"))
    parser.add_argument("--weights", default="{}", help="JSON {persona: weight}")
    parser.add_argument("--read-only", action="store_true",
                        help="personas only read (search_read, web_search_read, read, search_count, pages)")
    parser.add_argument("--result", type=Path, required=True, help="write the JSON result here")
    parser.add_argument("--html", type=Path, default=None, help="Locust's HTML report of the last run")
    args = parser.parse_args(argv)
    logging.getLogger("locust").setLevel(logging.ERROR)  # the caller prints the verdict; keep stderr for crashes

    classes = user_classes(args.scenario, json.loads(args.weights), tuple(args.think), args.db, args.login,
                           os.environ.get("ERPOPS_ODOO_PASSWORD", ""), args.read_only)
    if not classes:
        print("no user class to run: every persona weight is 0", file=sys.stderr)
        return 2
    runs = []
    for i in range(args.runs):
        html = args.html if args.html is not None and i == args.runs - 1 else None
        run = one_run(classes, args.host, args.users, args.duration, html, args.warmup, args.read_only,
                      steady=args.scenario == "personas", startup_timeout=args.startup_timeout)
        run["read_only"] = args.read_only
        runs.append(run)
        print(f"run {i + 1}/{args.runs}: {run['total']['count']} requests, {run['rps']:.1f} req/s, "
              f"{run['fail_ratio']:.2%} failed, p95 {run['total']['p95']} ms, {run['users']} users "
              f"(start-up {run['startup_s']:.1f} s)", flush=True)
    args.result.write_text(json.dumps({"scenario": args.scenario, "host": args.host, "read_only": args.read_only,
                                       "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
