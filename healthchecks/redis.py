"""Redis checks over redis-py: plain, TLS (`rediss://`, a CA file) or through Sentinel.

The URL gives the password, the database and whether to speak TLS; with Sentinel (`--redis-sentinel
host:port`, repeatable, and `--redis-sentinel-master`) the sentinels name the master to connect to, and the
sentinels are reached the same way (TLS when the URL is rediss://). Errors name the address, never the
password.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from healthchecks.core import Check, State, Targets, Thresholds, Unknown

Outcome = tuple[State, str, dict[str, float]]
DEFAULT_SENTINEL_MASTER = "mymaster"


def connection_options(t: Targets, timeout: float) -> dict[str, Any]:
    """redis-py keyword arguments of the target's connections (pure: unit-tested)."""
    url = urlsplit(t.redis_url or "redis://")
    if url.scheme not in ("redis", "rediss"):
        raise Unknown(f"--redis-url {url.scheme}://...: use redis:// or rediss:// (TLS)")
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout,
                               "db": int(url.path.strip("/") or 0)}
    if url.username:
        options["username"] = unquote(url.username)
    if url.password:
        options["password"] = unquote(url.password)
    if url.scheme == "rediss" or t.redis_ca_file:
        options["ssl"] = True
        if t.redis_ca_file:
            options["ssl_ca_certs"] = t.redis_ca_file
    return options


def client(t: Targets, timeout: float) -> redis.Redis:
    """A client of the target's Redis: the URL's host, or the master the sentinels name.

    No retries: redis-py retries a failed connection three times by default, which would turn a refused
    certificate or a dead server into a timeout without its reason.
    """
    options = {**connection_options(t, timeout), "retry": Retry(NoBackoff(), 0)}
    if t.redis_sentinels:
        sentinel_options = {k: v for k, v in options.items() if k not in ("db", "username", "password")}
        sentinel = Sentinel(list(t.redis_sentinels), sentinel_kwargs=sentinel_options, **options)
        return sentinel.master_for(t.redis_sentinel_master or DEFAULT_SENTINEL_MASTER)
    url = urlsplit(t.redis_url or "")
    return redis.Redis(host=url.hostname or "127.0.0.1", port=url.port or 6379, **options)


def _where(t: Targets) -> str:
    if t.redis_sentinels:
        hosts = ",".join(f"{h}:{p}" for h, p in t.redis_sentinels)
        return f"Redis master {t.redis_sentinel_master or DEFAULT_SENTINEL_MASTER} via sentinels {hosts}"
    url = urlsplit(t.redis_url or "")
    return f"Redis at {url.hostname}:{url.port or 6379}"


def _call(t: Targets, th: Thresholds, what: str, fn: Any) -> Any:
    if not t.redis_url and not t.redis_sentinels:
        raise Unknown("no Redis target")
    conn = client(t, th.timeout)
    try:
        return fn(conn)
    except redis.AuthenticationError as exc:
        raise Unknown(f"{_where(t)} refused the credentials ({exc}): check the password in --redis-url") from exc
    except redis.RedisError as exc:
        raise Unknown(f"{what} on {_where(t)} failed: {exc}") from exc
    finally:
        conn.close()


def _info(t: Targets, th: Thresholds) -> dict[str, str]:
    info = _call(t, th, "INFO", lambda c: c.info())
    return {k: str(v) for k, v in info.items()}


def ping(t: Targets, th: Thresholds) -> Outcome:
    def timed(conn: redis.Redis) -> tuple[bool, float]:
        conn.ping()  # connects (and authenticates, and does the TLS handshake): not part of the latency
        t0 = time.monotonic()
        ok = conn.ping()
        return bool(ok), (time.monotonic() - t0) * 1000

    ok, ms = _call(t, th, "PING", timed)
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
