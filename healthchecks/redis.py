"""Redis checks over erpops' own RESP client (no redis-py)."""

from __future__ import annotations

import time

from erpops.errors import ErpopsError
from erpops.local.resp import RespClient
from healthchecks.core import Check, State, Targets, Thresholds, Unknown

Outcome = tuple[State, str, dict[str, float]]


def _info(t: Targets, th: Thresholds) -> dict[str, str]:
    if not t.redis_url:
        raise Unknown("no Redis target")
    try:
        with RespClient.from_url(t.redis_url, timeout=th.timeout) as client:
            return client.info()
    except ErpopsError as exc:
        raise Unknown(str(exc)) from exc


def ping(t: Targets, th: Thresholds) -> Outcome:
    if not t.redis_url:
        raise Unknown("no Redis target")
    try:
        with RespClient.from_url(t.redis_url, timeout=th.timeout) as client:
            client.connect()
            t0 = time.monotonic()
            ok = client.ping()
            ms = (time.monotonic() - t0) * 1000
    except ErpopsError as exc:
        raise Unknown(str(exc)) from exc
    if not ok:
        return State.CRIT, "PING did not answer PONG", {}
    level = th["redis_latency_ms"]
    return level.grade(ms), f"PONG in {ms:.1f} ms ({level.describe()})", {"latency_ms": round(ms, 2)}


def memory(t: Targets, th: Thresholds) -> Outcome:
    info = _info(t, th)
    used, maxmemory = int(info["used_memory"]), int(info.get("maxmemory", "0"))
    policy = info.get("maxmemory_policy", "?")
    limit, source = (maxmemory, "maxmemory") if maxmemory else (th.redis_memory_bytes or 0, "container limit")
    # max_bytes is the limit the ratio and the message use (maxmemory, else the container's), 0 if none
    metrics: dict[str, float] = {"used_bytes": used, "max_bytes": limit}
    if not limit:
        return State.OK, f"{used / 1024**2:.1f} MiB used; no maxmemory and no limit known to compare", metrics
    ratio = used / limit
    level = th["redis_memory_ratio"]
    metrics["ratio"] = round(ratio, 4)
    return (level.grade(ratio), f"{used / 1024**2:.1f} of {limit / 1024**2:.1f} MiB ({source}) used = "
            f"{ratio:.0%}, policy {policy} ({level.describe()})", metrics)


def evictions(t: Targets, th: Thresholds) -> Outcome:
    info = _info(t, th)
    evicted = int(info.get("evicted_keys", "0"))
    level = th["redis_evicted_keys"]
    # Odoo keeps sessions here: every evicted key is a user logged out.
    return level.grade(evicted), f"{evicted} keys evicted since start ({level.describe()})", {"evicted_keys": evicted}


def clients(t: Targets, th: Thresholds) -> Outcome:
    info = _info(t, th)
    connected, blocked = int(info["connected_clients"]), int(info.get("blocked_clients", "0"))
    level = th["redis_connected_clients"]
    return (level.grade(connected), f"{connected} clients connected, {blocked} blocked ({level.describe()})",
            {"connected": connected, "blocked": blocked})


def persistence(t: Targets, th: Thresholds) -> Outcome:
    info = _info(t, th)
    rdb, aof = info.get("rdb_last_bgsave_status", "ok"), info.get("aof_last_write_status", "ok")
    aof_on = info.get("aof_enabled") == "1"
    metrics = {"rdb_ok": float(rdb == "ok"), "aof_ok": float(aof == "ok"),
               "changes_since_save": int(info.get("rdb_changes_since_last_save", "0"))}
    failed = []
    if rdb != "ok":
        failed.append(f"rdb_last_bgsave_status={rdb}")
    if aof_on and aof != "ok":
        failed.append(f"aof_last_write_status={aof}")
    if failed:
        # With stop-writes-on-bgsave-error (the default) Redis now refuses writes.
        return State.CRIT, "persistence failing: " + ", ".join(failed), metrics
    return State.OK, f"last RDB save {rdb}, AOF {'on, ' + aof if aof_on else 'off'}", metrics


CHECKS = [
    Check("redis.ping", ping),
    Check("redis.memory", memory),
    Check("redis.evictions", evictions),
    Check("redis.clients", clients),
    Check("redis.persistence", persistence),
]
