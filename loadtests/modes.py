"""Read-only vs read-write load, and the prod guard. Pure Python (no Locust): the CLI imports it.

The manufacturing personas create, confirm and validate real records (purchase and sale orders,
manufacturing orders, transfers). `--read-only` makes them perform only the reads of their day
(`READ_METHODS` and `page:` loads), under the same request names, so a read-only gate compares with
a read-only baseline. On a prod-tier stack, write personas need `--allow-writes` explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from erpops.errors import UsageError

# The only call_kw methods a read-only user sends; OdooUser refuses any other one (a crash, which
# fails the gate and stops a record) rather than write, should a persona ever forget to check.
READ_METHODS = frozenset({"search_read", "web_search_read", "read", "search_count"})

READ_ONLY_FLAG, ALLOW_WRITES_FLAG = "--read-only", "--allow-writes"


def mode_name(read_only: bool) -> str:
    return "read-only" if read_only else "read-write"


def write_guard(stack: str, tier: str, read_only: bool, allow_writes: bool) -> None:
    """Raise UsageError (exit 2) when write personas would run on prod without `--allow-writes`."""
    if read_only and allow_writes:
        raise UsageError(f"{READ_ONLY_FLAG} and {ALLOW_WRITES_FLAG} contradict each other: pass one of them")
    if tier == "prod" and not read_only and not allow_writes:
        raise UsageError(
            f"stack {stack!r} is prod tier: the personas would create, confirm and validate real orders, "
            f"manufacturing orders and transfers in production. Pass {READ_ONLY_FLAG} to load it with reads "
            f"only, or {ALLOW_WRITES_FLAG} if writing test records into this stack is really intended")


def baseline_mode(baseline: Mapping[str, Any]) -> bool:
    """True when the baseline was recorded read-only; baselines from before the flag were read-write."""
    return bool(baseline.get("read_only", False))


def check_baseline_mode(baseline: Mapping[str, Any], read_only: bool, path: Path | str, stack: str) -> None:
    """Raise UsageError (exit 2) when the run's mode differs from the baseline's: their requests differ."""
    recorded = baseline_mode(baseline)
    if recorded == read_only:
        return
    record_flag = f" {READ_ONLY_FLAG}" if read_only else ""
    rerun = f"add {READ_ONLY_FLAG}" if recorded else f"drop {READ_ONLY_FLAG}"
    raise UsageError(
        f"baseline {path} was recorded {mode_name(recorded)} but this gate runs {mode_name(read_only)}: their "
        f"requests differ and cannot be compared. Either {rerun} to match it, or record a {mode_name(read_only)} "
        f"baseline: `erpops loadtest record --stack {stack}{record_flag} --host <url>` (see "
        "runbooks/load-test-gate.md)")


def default_baseline_name(stack: str, read_only: bool) -> str:
    """`<stack>.json` (read-write) or `<stack>.read-only.json`: both kinds can sit side by side."""
    return f"{stack}.read-only.json" if read_only else f"{stack}.json"
