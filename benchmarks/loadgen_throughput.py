"""Load-generator throughput: requests per CPU-second of OdooUser vs plain Locust FastHttpUser.

Both hit the same cheap endpoint of OdooDouble (`/web/webclient/version_info`, no added latency)
with the same users, each in its own `python -m loadtests.runner` process. The runner reports the
CPU time its own process used while loading, so the server's CPU (a thread in this process) does
not count. Both are paced at the same rate (`--rate` per user, 0 = flat out): unpaced, the Python
server is the bottleneck and its noise, not the generator, decides the figures. Rounds alternate
the two generators; per-round ratios and medians are printed.

    .venv/bin/python benchmarks/loadgen_throughput.py [--rounds 5 --duration 8 --users 10 --rate 60]

Target: OdooUser >= 80% of plain FastHttpUser (it also builds the JSON-RPC envelope, parses the
answer and checks it for an `error`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtests.testing.odoo_double import OdooDouble

SCENARIOS = {"OdooUser (ours)": "bench-odoo", "FastHttpUser (plain)": "bench-plain"}


def measure(url: str, scenario: str, users: int, duration: float, rate: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "r.json"
        subprocess.run([sys.executable, "-m", "loadtests.runner", "--host", url, "--scenario", scenario,
                        "--users", str(users), "--duration", str(duration), "--result", str(result)],
                       check=True, capture_output=True, text=True, env={**os.environ, "ERPOPS_BENCH_RATE": str(rate)})
        run = json.loads(result.read_text())["runs"][0]
    n = run["total"]["count"]
    return {"requests": n, "failures": run["total"]["failures"], "rps": run["rps"], "cpu": run["cpu_seconds"],
            "per_cpu": n / run["cpu_seconds"] if run["cpu_seconds"] else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--rate", type=float, default=60.0, help="requests/s per user; 0 = as fast as possible")
    args = parser.parse_args()
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in SCENARIOS}
    with OdooDouble(base_ms=0, jitter_ms=0) as odoo:
        for i in range(args.rounds):
            order = list(SCENARIOS.items()) if i % 2 == 0 else list(reversed(SCENARIOS.items()))
            for name, scenario in order:
                samples[name].append(m := measure(odoo.url, scenario, args.users, args.duration, args.rate))
                print(f"round {i + 1}: {name:22s} {m['requests']:7.0f} req {m['failures']:4.0f} failed "
                      f"{m['rps']:7.1f} req/s {m['cpu']:6.2f} CPU-s {m['per_cpu']:7.0f} req/CPU-s", flush=True)
    med = {name: {k: statistics.median(s[k] for s in runs) for k in runs[0]} for name, runs in samples.items()}
    pace = f"{args.rate:g} req/s per user" if args.rate else "unpaced"
    print(f"\n{'generator':22s} {'req/s':>8s} {'CPU-s':>7s} {'req/CPU-s':>10s}   (median of {args.rounds} rounds, "
          f"{args.users} users, {pace}, {args.duration:g} s)")
    for name, m in med.items():
        print(f"{name:22s} {m['rps']:8.1f} {m['cpu']:7.2f} {m['per_cpu']:10.0f}")
    rounds = [o["per_cpu"] / p["per_cpu"] for o, p in zip(samples["OdooUser (ours)"], samples["FastHttpUser (plain)"],
                                                           strict=True) if p["per_cpu"]]
    ratio = statistics.median(rounds) if rounds else 0.0
    print(f"ratio ours/plain per round: {', '.join(f'{r:.0%}' for r in rounds)}")
    print(f"ratio ours/plain (median): {ratio:.0%} (target >= 80%: {'met' if ratio >= 0.8 else 'NOT met'})")


if __name__ == "__main__":
    main()
