"""Checks of the machine erpops runs on (psutil): CPU, memory, free disk of data paths, load."""

from __future__ import annotations

import os
import time

import psutil

from healthchecks.core import Check, State, Targets, Thresholds, Unknown

Outcome = tuple[State, str, dict[str, float]]


def cpu(t: Targets, th: Thresholds) -> Outcome:
    """Busy share of all cores over a short window, less what this process and its children used.

    The suite's own work (psql children, TLS, JSON) runs during the window; left in, a check run
    on a small machine would report the CPU it burns itself.
    """
    me = psutil.Process()
    window = min(0.2, th.timeout / 2)
    sys0, own0 = psutil.cpu_times(), me.cpu_times()
    time.sleep(window)
    sys1, own1 = psutil.cpu_times(), me.cpu_times()
    total = sum(sys1) - sum(sys0)
    idle = (sys1.idle + getattr(sys1, "iowait", 0.0)) - (sys0.idle + getattr(sys0, "iowait", 0.0))
    own = sum(own1[:4]) - sum(own0[:4])  # user, system, children_user, children_system
    if total <= 0:
        raise Unknown("no CPU time elapsed in the sample window")
    busy = max(0.0, total - idle)
    percent = 100 * max(0.0, busy - own) / total
    level = th["host_cpu_percent"]
    return (level.grade(percent), f"CPU {percent:.0f}% busy, not counting this check's own "
            f"{100 * own / total:.0f}% ({level.describe()})",
            {"percent": round(percent, 1), "total_percent": round(100 * busy / total, 1)})


def memory(t: Targets, th: Thresholds) -> Outcome:
    vm = psutil.virtual_memory()
    ratio = 1 - vm.available / vm.total
    level = th["host_memory_ratio"]
    return (level.grade(ratio), f"memory {ratio:.0%} used, {vm.available / 1024**3:.1f} GiB available "
            f"({level.describe()})", {"used_ratio": round(ratio, 4), "available_bytes": vm.available})


def disk(t: Targets, th: Thresholds) -> Outcome:
    paths = t.data_paths or ["/"]
    level = th["disk_free_ratio_min"]
    metrics: dict[str, float] = {}
    worst: tuple[float, str] | None = None
    for path in paths:
        try:
            usage = psutil.disk_usage(path)
        except OSError as exc:
            raise Unknown(f"cannot stat {path}: {exc.strerror}") from exc
        free = usage.free / usage.total
        metrics[f"free_ratio:{path}"] = round(free, 4)
        if worst is None or free < worst[0]:
            worst = (free, f"{path} {free:.0%} free ({usage.free / 1024**3:.1f} GiB)")
    assert worst is not None
    metrics["min_free_ratio"] = round(worst[0], 4)
    return level.grade(worst[0]), f"least free: {worst[1]} ({level.describe()})", metrics


def load(t: Targets, th: Thresholds) -> Outcome:
    one, five, _ = os.getloadavg()
    cores = psutil.cpu_count() or 1
    per_core = five / cores
    level = th["host_load_per_core"]
    return (level.grade(per_core), f"load {one:.2f}/{five:.2f} (1/5 min) on {cores} cores = {per_core:.2f} "
            f"per core ({level.describe()})", {"load1": one, "load5": five, "per_core": round(per_core, 3)})


CHECKS = [Check("host.cpu", cpu), Check("host.memory", memory), Check("host.disk", disk), Check("host.load", load)]
