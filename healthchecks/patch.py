"""Patch runs: one whose process died mid-run leaves the stack frozen (maintenance, cron stopped)."""

from __future__ import annotations

from pathlib import Path

from healthchecks.core import Check, State, Targets, Thresholds, Unknown

Outcome = tuple[State, str, dict[str, float]]


def stuck(t: Targets, th: Thresholds) -> Outcome:
    """CRIT when a patch run died mid-way (erpops.patch.stuck_runs), with the command that resolves it."""
    from erpops.patch import stuck_message, stuck_runs

    if not t.patch_state_dir:
        raise Unknown("no patch state directory (--patch-state-dir)")
    directory = Path(t.patch_state_dir)
    if not directory.is_dir():
        return State.OK, f"no patch has run from here ({directory} does not exist)", {"stuck": 0.0}
    runs = stuck_runs(directory)
    if runs:
        return State.CRIT, " | ".join(stuck_message(r) for r in runs), {"stuck": float(len(runs))}
    return State.OK, f"no stuck patch run in {directory}", {"stuck": 0.0}


CHECKS = [Check("patch.stuck", stuck)]
