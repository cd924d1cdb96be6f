"""What the one validator costs per stack: each stage of `spec.load` timed beside the whole.

    .venv/bin/python benchmarks/spec_validate.py [--rounds 20]

Stages: reading the stack file, pydantic's structural pass alone (the baseline: what the model
checked before issue 13 was mostly this), the credential scan (detect-secrets and the project's
shapes over every string), the sibling stack files, and the whole `spec.load` (rules included).
Every command that loads a stack pays the whole once. Timings depend on the machine's load: the
tests assert outcomes only, this script prints speed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from erpops import spec  # noqa: E402
from erpops.spec_secrets import pasted_credentials  # noqa: E402


def timed(fn: Callable[[], object], rounds: int) -> float:
    fn()  # imports and caches out of the figure
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    print(f"{'stack':<8} {'read ms':>8} {'pydantic ms':>12} {'secrets ms':>11} {'siblings ms':>12} "
          f"{'spec.load ms':>13}")
    for stack in spec.list_stacks(ROOT):
        path = spec.stack_file(ROOT, stack)
        raw = spec.read_raw(path)
        tier = raw.get("tier") or spec.infer_tier(stack)
        merged = spec._merge(spec.tier_defaults(tier), {**raw, "tier": tier})
        figures = [
            timed(lambda path=path: spec.read_raw(path), args.rounds),
            timed(lambda merged=merged: spec.Spec.model_validate(merged), args.rounds),
            timed(lambda raw=raw: pasted_credentials(raw), args.rounds),
            timed(lambda stack=stack: spec.siblings_of(ROOT, stack), args.rounds),
            timed(lambda stack=stack: spec.load(stack, ROOT), args.rounds),
        ]
        print(f"{stack:<8} {figures[0]:>8.1f} {figures[1]:>12.1f} {figures[2]:>11.1f} {figures[3]:>12.1f} "
              f"{figures[4]:>13.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
