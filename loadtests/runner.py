"""Run Locust headless in this process and write what it measured as JSON. Imports Locust (gevent).

Never imported by erpops, the CLI or pytest: they start it as
`[sys.executable, "-m", "loadtests.runner", ...]`. The password is read from $ERPOPS_ODOO_PASSWORD
so it never shows in a process list.

The result file holds one entry per run: per request name the count, failures, p50/p95/p99 and the
latency histogram (1 ms buckets -> count) the gate's statistic resamples from.
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
from locust.stats import StatsEntry  # noqa: E402

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


class Latencies:
    """Every response time at 1 ms resolution, per request name and in total.

    Locust keeps its own histogram rounded to 10 ms above 100 ms and to 100 ms above 1 s: a step of
    up to 10%, as large as the gate's tolerance. This listener keeps what the gate needs instead.
    """

    def __init__(self) -> None:
        self.by_name: dict[str, Counter[int]] = defaultdict(Counter)
        self.total: Counter[int] = Counter()
        self.failed: Counter[int] = Counter()  # per second of the run: failed requests
        self.per_second: dict[int, Counter[int]] = defaultdict(Counter)  # second of the run -> latency histogram
        self.t0 = time.monotonic()

    def on_request(self, name: str, response_time: float, exception: BaseException | None = None,
                   **_: Any) -> None:
        ms = int(response_time + 0.5)
        self.by_name[name][ms] += 1
        self.total[ms] += 1
        second = int(time.monotonic() - self.t0)
        self.per_second[second][ms] += 1
        if exception is not None:
            self.failed[second] += 1

    def reset(self) -> None:
        self.by_name.clear()
        self.total.clear()
        self.failed.clear()
        self.per_second.clear()
        self.t0 = time.monotonic()

    def timeline(self) -> list[dict[str, Any]]:
        """Per second of the measured run: requests, failures, p50 and p95 (the HTML report's latency plot)."""
        out = []
        for second, hist in sorted(self.per_second.items()):
            dist = EmpiricalDistribution(hist)
            out.append({"t": second, "requests": dist.n, "failures": self.failed.get(second, 0),
                        "p50": dist.quantile(0.50), "p95": dist.quantile(0.95)})
        return out


def entry_summary(entry: StatsEntry, hist: Counter[int]) -> dict[str, Any]:
    dist = EmpiricalDistribution(hist)
    return {
        "count": entry.num_requests,
        "failures": entry.num_failures,
        "p50": dist.quantile(0.50) if dist.n else None,
        "p95": dist.quantile(0.95) if dist.n else None,
        "p99": dist.quantile(0.99) if dist.n else None,
        "hist": {str(ms): c for ms, c in sorted(hist.items())},
    }


def one_run(classes: list[type], host: str, users: int, duration: float, html: Path | None,
            warmup: float = 0.0) -> dict[str, Any]:
    env = Environment(user_classes=classes, host=host)
    latencies = Latencies()
    env.events.request.add_listener(latencies.on_request)
    runner = env.create_local_runner()
    runner.start(users, spawn_rate=max(users * 10, 1))
    if warmup > 0:
        # Logins and data discovery all happen at once at the start; in a short run that burst would
        # weigh on the tail percentiles the gate compares. Measure the steady state only.
        gevent.sleep(warmup)
        env.stats.reset_all()
        latencies.reset()
    latencies.t0 = time.monotonic()  # the timeline counts from the measured part (after any warm-up)
    cpu0, wall0 = time.process_time(), time.monotonic()
    gevent.sleep(duration)
    runner.quit()
    wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    by_name: dict[str, StatsEntry] = {}
    for (name, _method), entry in env.stats.entries.items():
        if not entry.num_requests:
            continue  # requested during the warm-up only
        if name in by_name:
            by_name[name].extend(entry)
        else:
            by_name[name] = entry
    total = env.stats.total
    failures = [{"name": e.name, "error": str(e.error), "occurrences": e.occurrences}
                for e in env.stats.errors.values()]
    if html is not None:
        from locust.html import get_html_report
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(get_html_report(env, show_download_link=False))
    return {
        "users": users, "warmup_s": warmup, "duration_s": round(wall, 3), "cpu_seconds": round(cpu, 3),
        "rps": total.num_requests / wall if wall else 0.0,
        "fail_ratio": total.fail_ratio,
        "requests": {name: entry_summary(e, latencies.by_name[name]) for name, e in sorted(by_name.items())},
        "total": entry_summary(total, latencies.total),
        "errors": sorted(failures, key=lambda f: -f["occurrences"])[:20],
        "timeline": latencies.timeline(),
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
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds run before measuring, not counted")
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
        run = one_run(classes, args.host, args.users, args.duration, html, args.warmup)
        run["read_only"] = args.read_only
        runs.append(run)
        print(f"run {i + 1}/{args.runs}: {run['total']['count']} requests, {run['rps']:.1f} req/s, "
              f"{run['fail_ratio']:.2%} failed, p95 {run['total']['p95']} ms, {run['users']} users", flush=True)
    args.result.write_text(json.dumps({"scenario": args.scenario, "host": args.host, "read_only": args.read_only,
                                       "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
