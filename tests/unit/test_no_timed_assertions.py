"""No test asserts that something was fast: on a busy machine that fails by chance and turns CI red.

`elapsed_seconds < 1.0` once failed a fresh clone at 1.57 s. Speed belongs in benchmarks/, printed
beside its target. Allowed: a wait loop's hang guard (`time.monotonic() < deadline`) and lower bounds
(an injected delay shows up in the measured latency), which a slow machine cannot break.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.sources import nodes

TESTS = Path(__file__).resolve().parents[1]
CLOCKS = {"monotonic", "perf_counter", "time", "process_time", "monotonic_ns", "perf_counter_ns", "time_ns"}
TIMED_NAME = re.compile(r"(^|_)(elapsed|took|wall|runtime|durations?|timings?)(_|$)", re.IGNORECASE)


def _names(node: ast.AST) -> list[str]:
    found = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.append(sub.id)
        elif isinstance(sub, ast.Attribute):
            found.append(sub.attr)
        elif isinstance(sub, ast.Subscript) and isinstance(sub.slice, ast.Constant):
            found.append(str(sub.slice.value))  # report["wall_s"]
    return found


def _measures_time(node: ast.AST) -> bool:
    """`clock() - t0`, or a value named like a measured duration (elapsed, took, wall_s, timings...)."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Sub):
            calls = [c for c in ast.walk(sub) if isinstance(c, ast.Call)]
            if any(isinstance(c.func, ast.Attribute | ast.Name) and _names(c.func)[-1] in CLOCKS for c in calls):
                return True
    return any(TIMED_NAME.search(name) for name in _names(node))


def timed_assertions(source: str | Path) -> list[int]:
    """Line numbers of assertions that bound a measured duration from above, in a file or a snippet."""
    lines = []
    for node in nodes(source) if isinstance(source, Path) else ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Assert):
            continue
        for cmp in (n for n in ast.walk(node.test) if isinstance(n, ast.Compare)):
            operands = [cmp.left, *cmp.comparators]
            for op, left, right in zip(cmp.ops, operands[:-1], operands[1:], strict=True):
                upper = (isinstance(op, ast.Lt | ast.LtE) and _measures_time(left)) or \
                        (isinstance(op, ast.Gt | ast.GtE) and _measures_time(right))
                if upper:
                    lines.append(node.lineno)
    return sorted(set(lines))


def test_no_test_bounds_a_duration_from_above() -> None:
    found = {str(p.relative_to(TESTS.parent)): lines for p in sorted(TESTS.rglob("*.py"))
             if p != Path(__file__).resolve() and (lines := timed_assertions(p))}
    assert found == {}, f"timed assertions (move the speed claim to benchmarks/): {found}"


@pytest.mark.parametrize(("source", "flagged"), [
    ("assert result.elapsed_seconds < 1.0", True),
    ("assert time.monotonic() - t0 <= 2", True),
    ("assert 0.5 > perf_counter() - start", True),
    ("assert report['wall_s'] < 30", True),
    ("assert max(timings) < 1.0, timings", True),
    ("assert time.monotonic() < deadline, 'condition not reached'", False),
    ("assert metrics['latency_ms'] >= 150", False),
    ("assert run['startup_s'] >= 1.5 and run['started_up'] == 10", False),
    ("assert steps[-1]['rps'] > steps[0]['rps']", False),
    ("assert set(e) >= {'row_counts', 'duration_seconds'}", False),
])
def test_the_check_tells_a_speed_claim_from_a_hang_guard(source: str, flagged: bool) -> None:
    assert bool(timed_assertions(source)) is flagged
