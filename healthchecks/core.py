"""The check model: states, results, thresholds, targets, and the concurrent runner."""

from __future__ import annotations

import concurrent.futures as cf
import enum
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from erpops.pg import Pg

RUNBOOKS = "runbooks/alerts"  # one <check>.md per check, relative to the project root


class State(enum.IntEnum):
    """Nagios values (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)."""

    OK = 0
    WARN = 1
    CRIT = 2
    UNKNOWN = 3

    @property
    def severity(self) -> int:
        # UNKNOWN ranks between WARN and CRIT: a check that could not look may hide a problem,
        # but a CRIT that was actually seen must never be masked by it in the exit code.
        return {State.OK: 0, State.WARN: 1, State.UNKNOWN: 2, State.CRIT: 3}[self]


def worst(states: Iterable[State]) -> State:
    return max(states, key=lambda s: s.severity, default=State.OK)


@dataclass(frozen=True)
class Level:
    """warn/crit pair. `higher_is_worse=False` for minimums (cache hit ratio, free disk)."""

    warn: float
    crit: float
    higher_is_worse: bool = True

    def grade(self, value: float) -> State:
        if self.higher_is_worse:
            return State.CRIT if value >= self.crit else State.WARN if value >= self.warn else State.OK
        return State.CRIT if value <= self.crit else State.WARN if value <= self.warn else State.OK

    def describe(self) -> str:
        op = ">=" if self.higher_is_worse else "<="
        return f"warn {op} {self.warn:g}, crit {op} {self.crit:g}"


# Minimums among the spec's thresholds (lower is worse).
_MINIMUMS = {"pg_cache_hit_ratio_min", "disk_free_ratio_min"}


@dataclass
class Thresholds:
    """Every threshold a check reads, by name, plus the per-check timeout and derived targets."""

    levels: dict[str, Level]
    timeout: float = 5.0
    rpo_minutes: float = 1440.0
    odoo_version: str | None = None  # the version the spec expects
    pg_storage_bytes: int | None = None  # volume size, for pg_database_size_ratio
    redis_memory_bytes: int | None = None  # container limit, when Redis has no maxmemory

    def __getitem__(self, name: str) -> Level:
        return self.levels[name]

    @classmethod
    def defaults(cls) -> Thresholds:
        from erpops.spec import Health

        return cls.from_health(Health())

    @classmethod
    def from_health(cls, health: Any, **derived: Any) -> Thresholds:
        levels: dict[str, Level] = {}
        for name in type(health).model_fields:
            value = getattr(health, name)
            if hasattr(value, "warn") and hasattr(value, "crit"):
                levels[name] = Level(value.warn, value.crit, name not in _MINIMUMS)
        rpo = derived.pop("rpo_minutes", 1440.0)
        # The RPO is the objective: missing it is a WARN; twice over it pages.
        levels.setdefault("backup_age_minutes", Level(rpo, 2 * rpo))
        return cls(levels=levels, timeout=health.timeout_seconds, rpo_minutes=rpo, **derived)

    @classmethod
    def from_sized(cls, sized: Any) -> Thresholds:
        from erpops.units import mib

        spec = sized.spec
        return cls.from_health(
            spec.health,
            rpo_minutes=float(spec.backup.rpo_minutes),
            odoo_version=spec.odoo.version,
            pg_storage_bytes=mib(spec.postgres.storage) * 1024 * 1024,
            redis_memory_bytes=mib(spec.redis.memory) * 1024 * 1024 if spec.redis.enabled else None,
        )

    def override(self, **levels: tuple[float, float]) -> Thresholds:
        """A copy with some levels replaced: override(pg_xid_age=(10, 20))."""
        new = dict(self.levels)
        for name, (warn, crit) in levels.items():
            new[name] = Level(warn, crit, self.levels[name].higher_is_worse)
        return Thresholds(new, self.timeout, self.rpo_minutes, self.odoo_version, self.pg_storage_bytes,
                          self.redis_memory_bytes)


@dataclass
class Targets:
    """What to check. A target left None skips its checks."""

    odoo_url: str | None = None
    odoo_db: str | None = None  # the Odoo database: enables cron / mail checks and call_kw
    odoo_login: str | None = None
    odoo_password: str | None = field(default=None, repr=False)
    pg: Pg | None = None
    pg_db: str = "postgres"
    redis_url: str | None = None
    redis_ca_file: str | None = None  # CA bundle that signed the server's TLS certificate (implies TLS)
    redis_sentinels: tuple[tuple[str, int], ...] = ()  # Sentinel: (host, port) of each sentinel
    redis_sentinel_master: str | None = None  # the master's name at the sentinels (default mymaster)
    s3_endpoint: str | None = None
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_region: str | None = None
    data_paths: list[str] = field(default_factory=list)
    host: bool = True
    patch_state_dir: str | None = None  # erpops patch's state dir: enables patch.stuck


@dataclass
class Result:
    check: str
    state: State
    message: str
    metrics: dict[str, float] = field(default_factory=dict)
    duration: float = 0.0
    info: dict[str, str] = field(default_factory=dict)  # facts as text (versions): Prometheus `_info` labels

    def to_dict(self) -> dict[str, Any]:
        out = {"check": self.check, "state": self.state.name, "message": self.message,
               "metrics": self.metrics, "duration_seconds": round(self.duration, 4),
               "runbook": f"{RUNBOOKS}/{self.check}.md"}
        if self.info:
            out["info"] = self.info
        return out


class Unknown(Exception):
    """A check could not look: its result is UNKNOWN with this reason."""


# A check function gets the targets and thresholds and returns (state, message, metrics), or
# (state, message, metrics, info) where info holds text facts such as a version.
CheckFn = Callable[[Targets, Thresholds], tuple[State, str, dict[str, float]]]


@dataclass(frozen=True)
class Check:
    name: str
    fn: CheckFn


def run_checks(checks: list[Check], targets: Targets, thresholds: Thresholds,
               timeout: float | None = None) -> list[Result]:
    """Run every check concurrently; each gets `timeout` seconds from the start, then is UNKNOWN.

    The executor does not wait for a timed-out thread: the check functions pass the same
    timeout to their sockets and subprocesses, so the thread ends on its own soon after.
    """
    timeout = thresholds.timeout if timeout is None else timeout
    pool = cf.ThreadPoolExecutor(max_workers=max(1, len(checks)), thread_name_prefix="health")
    started = time.monotonic()
    futures = {check.name: pool.submit(_timed, check, targets, thresholds) for check in checks}
    results: list[Result] = []
    try:
        for check in checks:
            remaining = max(0.0, started + timeout - time.monotonic())
            try:
                results.append(futures[check.name].result(timeout=remaining))
            except cf.TimeoutError:
                results.append(Result(check.name, State.UNKNOWN, f"timed out after {timeout:g}s",
                                      duration=time.monotonic() - started))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return results


def _timed(check: Check, targets: Targets, thresholds: Thresholds) -> Result:
    t0 = time.monotonic()
    info: dict[str, str] = {}
    try:
        outcome = check.fn(targets, thresholds)
        state, message, metrics = outcome[:3]
        if len(outcome) > 3:
            info = dict(outcome[3])  # type: ignore[misc]
    except Unknown as exc:
        state, message, metrics = State.UNKNOWN, str(exc), {}
    except Exception as exc:  # a check that breaks must still answer, and never OK
        state, message, metrics = State.UNKNOWN, f"{type(exc).__name__}: {exc}", {}
    return Result(check.name, state, message, metrics, time.monotonic() - t0, info)
