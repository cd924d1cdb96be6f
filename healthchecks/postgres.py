"""PostgreSQL checks, through psql (erpops.pg.Pg): no driver, as the rest of erpops.

Each check runs one query returning one JSON row. Statistics about other sessions need the
pg_read_all_stats role (or superuser): without it PostgreSQL hides them, and the check says so
(UNKNOWN) rather than reporting a falsely quiet server.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from erpops.errors import ErpopsError
from healthchecks.core import Check, State, Targets, Thresholds, Unknown

Outcome = tuple[State, str, dict[str, float]]

_CAN_READ_STATS = "pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')"


def _pg(t: Targets) -> Any:
    if t.pg is None:
        raise Unknown("no PostgreSQL target")
    return t.pg


def query(t: Targets, th: Thresholds, sql: str, db: str | None = None) -> dict[str, Any]:
    """One row as a dict: `sql` is a SELECT whose columns become the keys."""
    pg = _pg(t)
    wrapped = f"SET statement_timeout = {int(th.timeout * 1000)};\nSELECT to_jsonb(q)::text FROM ({sql}) q;"
    try:
        out = pg.psql(wrapped, db or t.pg_db, timeout=th.timeout)
    except subprocess.TimeoutExpired as exc:
        raise Unknown(f"psql did not answer within {th.timeout:g}s") from exc
    except ErpopsError as exc:
        raise Unknown(str(exc).splitlines()[0][:300]) from exc
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise Unknown(f"query returned no row: {out.strip()[:200]}")
    return json.loads(lines[-1])


def _need_stats(row: dict[str, Any]) -> None:
    if not row.get("can_read_stats"):
        raise Unknown("missing permission: the check user cannot see other sessions; "
                      "GRANT pg_monitor TO <user>")


def connect(t: Targets, th: Thresholds) -> Outcome:
    t0 = time.monotonic()
    row = query(t, th, "SELECT version() AS version")
    ms = (time.monotonic() - t0) * 1000
    level = th["pg_connect_ms"]
    state = level.grade(ms)
    version = str(row["version"]).split(" on ")[0]
    return state, f"{version}; psql round trip {ms:.0f} ms ({level.describe()})", {"connect_ms": round(ms, 1)}


def connections(t: Targets, th: Thresholds) -> Outcome:
    row = query(t, th, f"""
        SELECT count(*) FILTER (WHERE backend_type = 'client backend') AS used,
               current_setting('max_connections')::int AS max,
               current_setting('superuser_reserved_connections')::int AS reserved,
               {_CAN_READ_STATS} AS can_read_stats
        FROM pg_stat_activity""")
    ratio = row["used"] / row["max"]
    level = th["pg_connections_ratio"]
    return (level.grade(ratio),
            f"{row['used']} of max_connections {row['max']} used ({ratio:.0%}; {level.describe()})",
            {"used": row["used"], "max": row["max"], "ratio": round(ratio, 4)})


def longest_transaction(t: Targets, th: Thresholds) -> Outcome:
    row = query(t, th, f"""
        SELECT coalesce(extract(epoch FROM max(now() - xact_start)), 0)::float AS age,
               (array_agg(pid ORDER BY xact_start))[1] AS pid,
               {_CAN_READ_STATS} AS can_read_stats
        FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND xact_start IS NOT NULL AND pid <> pg_backend_pid()""")
    _need_stats(row)
    age = float(row["age"])
    level = th["pg_longest_transaction_seconds"]
    where = f" (pid {row['pid']})" if row["pid"] else ""
    return level.grade(age), f"longest open transaction {age:.0f}s{where} ({level.describe()})", \
        {"age_seconds": round(age, 1)}


def idle_in_transaction(t: Targets, th: Thresholds) -> Outcome:
    row = query(t, th, f"""
        SELECT coalesce(extract(epoch FROM max(now() - state_change)), 0)::float AS age,
               count(*) AS sessions,
               (array_agg(pid ORDER BY state_change))[1] AS pid,
               {_CAN_READ_STATS} AS can_read_stats
        FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'""")
    _need_stats(row)
    age = float(row["age"])
    level = th["pg_idle_in_transaction_seconds"]
    where = f" (pid {row['pid']})" if row["pid"] else ""
    return (level.grade(age),
            f"{row['sessions']} idle in transaction, longest {age:.0f}s{where} ({level.describe()})",
            {"age_seconds": round(age, 1), "sessions": row["sessions"]})


def blocked_locks(t: Targets, th: Thresholds) -> Outcome:
    row = query(t, th, f"""
        SELECT count(*) AS blocked,
               coalesce(extract(epoch FROM max(now() - coalesce(state_change, query_start))), 0)::float AS wait,
               (SELECT array_agg(DISTINCT b) FROM pg_stat_activity a2, unnest(pg_blocking_pids(a2.pid)) b)
                   AS blockers,
               {_CAN_READ_STATS} AS can_read_stats
        FROM pg_stat_activity WHERE cardinality(pg_blocking_pids(pid)) > 0""")
    _need_stats(row)
    metrics = {"blocked_sessions": row["blocked"], "longest_wait_seconds": round(float(row["wait"]), 1)}
    if not row["blocked"]:
        return State.OK, "no session waits on a lock", metrics
    level = th["pg_lock_wait_seconds"]
    return (level.grade(float(row["wait"])),
            f"{row['blocked']} session(s) blocked, longest {row['wait']:.0f}s, by pid(s) "
            f"{', '.join(map(str, row['blockers'] or []))} ({level.describe()})", metrics)


def replication(t: Targets, th: Thresholds) -> Outcome:
    row = query(t, th, f"""
        SELECT pg_is_in_recovery() AS standby,
               (SELECT count(*) FROM pg_stat_replication) AS replicas,
               (SELECT count(*) FROM pg_stat_replication WHERE replay_lsn IS NULL) AS hidden,
               CASE WHEN pg_is_in_recovery()
                    THEN coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)
                    ELSE (SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), 0)
                          FROM pg_stat_replication) END::float AS lag_bytes,
               CASE WHEN pg_is_in_recovery()
                    THEN coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
                    ELSE (SELECT coalesce(extract(epoch FROM max(replay_lag)), 0) FROM pg_stat_replication)
                    END::float AS lag_seconds,
               {_CAN_READ_STATS} AS can_read_stats""")
    if not row["standby"] and row["replicas"] == 0:
        return State.OK, "no replicas (standalone primary)", {"replicas": 0}
    if row["hidden"] and not row["can_read_stats"]:
        raise Unknown("missing permission: replica positions are hidden; GRANT pg_monitor TO <user>")
    lag_b, lag_s = float(row["lag_bytes"]), float(row["lag_seconds"])
    by_bytes, by_time = th["pg_replica_lag_bytes"], th["pg_replica_lag_seconds"]
    state = max(by_bytes.grade(lag_b), by_time.grade(lag_s), key=lambda s: s.severity)
    role = "standby replay" if row["standby"] else f"{row['replicas']} replica(s), worst"
    return (state, f"{role} lag {lag_b / 1024**2:.1f} MiB / {lag_s:.0f}s", {
        "replicas": row["replicas"], "lag_bytes": lag_b, "lag_seconds": round(lag_s, 1)})


def cache_hit(t: Targets, th: Thresholds) -> Outcome:
    row = query(t, th, """
        SELECT sum(blks_hit)::float AS hit, sum(blks_read)::float AS read FROM pg_stat_database""")
    total = (row["hit"] or 0) + (row["read"] or 0)
    metrics = {"blocks_hit": row["hit"] or 0, "blocks_read": row["read"] or 0}
    if total < 1000:  # a freshly started server has no meaningful ratio yet
        return State.OK, f"too few block reads so far ({total:.0f}) for a ratio", metrics
    ratio = row["hit"] / total
    level = th["pg_cache_hit_ratio_min"]
    metrics["ratio"] = round(ratio, 5)
    return level.grade(ratio), f"cache hit ratio {ratio:.2%} ({level.describe()})", metrics


def xid_age(t: Targets, th: Thresholds) -> Outcome:
    row = query(t, th, """
        SELECT age(datfrozenxid) AS age, datname FROM pg_database ORDER BY age(datfrozenxid) DESC LIMIT 1""")
    level = th["pg_xid_age"]
    return (level.grade(row["age"]),
            f"oldest unfrozen xid age {row['age']:,} in {row['datname']} of ~2.1 billion ({level.describe()})",
            {"age": row["age"]})


def database_size(t: Targets, th: Thresholds) -> Outcome:
    row = query(t, th, """
        SELECT pg_database_size(current_database()) AS size,
               (SELECT sum(pg_database_size(oid)) FROM pg_database)::bigint AS cluster""")
    metrics: dict[str, float] = {"bytes": row["size"], "cluster_bytes": row["cluster"]}
    text = f"{t.pg_db} {row['size'] / 1024**2:.0f} MiB, cluster {row['cluster'] / 1024**2:.0f} MiB"
    if not th.pg_storage_bytes:
        return State.OK, text + " (no volume size known: pass --stack to grade it)", metrics
    ratio = row["cluster"] / th.pg_storage_bytes
    level = th["pg_database_size_ratio"]
    metrics["volume_ratio"] = round(ratio, 4)
    return level.grade(ratio), f"{text} = {ratio:.0%} of the volume ({level.describe()})", metrics


def dead_tuples(t: Targets, th: Thresholds) -> Outcome:
    row = query(t, th, """
        SELECT coalesce(json_agg(x ORDER BY x.ratio DESC), '[]') AS tables FROM (
            SELECT relname, n_dead_tup AS dead, n_live_tup AS live,
                   n_dead_tup::float / greatest(n_live_tup + n_dead_tup, 1) AS ratio
            FROM pg_stat_user_tables
            WHERE n_live_tup + n_dead_tup >= 1000
            ORDER BY pg_total_relation_size(relid) DESC LIMIT 10) x""")
    tables = row["tables"]
    if not tables:
        return State.OK, "no table large enough (>= 1000 rows) to judge", {"max_ratio": 0.0}
    top = tables[0]
    level = th["pg_dead_tuple_ratio"]
    return (level.grade(top["ratio"]),
            f"worst of the 10 largest tables: {top['relname']} {top['ratio']:.0%} dead "
            f"({top['dead']:,} rows; {level.describe()})", {"max_ratio": round(top["ratio"], 4)})


# -- Odoo-level, on the Odoo database ----------------------------------------------------------

def _odoo_db(t: Targets) -> str:
    if not t.odoo_db:
        raise Unknown("no Odoo database given (--odoo-db)")
    return t.odoo_db


def _require_table(t: Targets, th: Thresholds, db: str, table: str) -> None:
    row = query(t, th, f"SELECT to_regclass('public.{table}') IS NOT NULL AS present", db)
    if not row["present"]:
        raise Unknown(f"no {table} table in database {db}: not an Odoo database, or the module is not installed")


def cron_overdue(t: Targets, th: Thresholds) -> Outcome:
    db = _odoo_db(t)
    _require_table(t, th, db, "ir_cron")
    level = th["cron_overdue_minutes"]
    # Odoo stores nextcall as UTC without time zone.
    row = query(t, th, f"""
        SELECT count(*) FILTER (WHERE overdue >= {level.warn}) AS overdue,
               coalesce(max(overdue), 0)::float AS worst,
               (array_agg(name ORDER BY overdue DESC))[1] AS name
        FROM (SELECT coalesce(to_jsonb(cron_name) ->> 'en_US', to_jsonb(cron_name) #>> '{{}}') AS name,
                     extract(epoch FROM (now() AT TIME ZONE 'UTC') - nextcall) / 60 AS overdue
              FROM ir_cron WHERE active) c""", db)
    worst_min = max(0.0, float(row["worst"]))
    metrics = {"overdue_jobs": row["overdue"], "max_overdue_minutes": round(worst_min, 1)}
    if not row["overdue"]:
        return State.OK, f"no active cron overdue by {level.warn:g} min or more", metrics
    return (level.grade(worst_min),
            f"{row['overdue']} active cron job(s) overdue; worst {row['name']!s} by {worst_min:.0f} min "
            f"({level.describe()})", metrics)


def mail_queue(t: Targets, th: Thresholds) -> Outcome:
    db = _odoo_db(t)
    _require_table(t, th, db, "mail_mail")
    row = query(t, th, """
        SELECT count(*) FILTER (WHERE state = 'exception') AS exception,
               count(*) FILTER (WHERE state = 'outgoing') AS outgoing FROM mail_mail""", db)
    level = th["mail_exception_count"]
    return (level.grade(row["exception"]),
            f"{row['exception']} mail(s) in exception, {row['outgoing']} outgoing ({level.describe()})",
            {"exception": row["exception"], "outgoing": row["outgoing"]})


def erpops_leftovers(t: Targets, th: Thresholds) -> Outcome:
    """Side databases, sandbox roles and temp dirs that a killed erpops run left (erpops.backup.leftovers)."""
    from erpops.backup import leftovers

    try:
        found = leftovers.find(_pg(t))
    except ErpopsError as exc:
        raise Unknown(str(exc).splitlines()[0][:300]) from exc
    dead = [x for x in found if x.state == "dead"]
    other = [x for x in found if x.state != "dead"]
    metrics = {"dead": float(len(dead)), "in_use": float(len(other))}
    if dead:
        shown = "; ".join(x.describe() for x in dead[:3]) + (f" and {len(dead) - 3} more" if len(dead) > 3 else "")
        return (State.WARN, f"{len(dead)} leftover(s) of dead erpops runs: {shown}. Any erpops backup, restore "
                f"or import against this server removes them (runbooks/alerts/pg.erpops_leftovers.md)", metrics)
    if other:
        return State.OK, f"no leftovers; {len(other)} object(s) of erpops runs in progress (or on other hosts)", metrics
    return State.OK, "no leftovers of erpops runs", metrics


CHECKS = [
    Check("pg.connect", connect),
    Check("pg.connections", connections),
    Check("pg.longest_transaction", longest_transaction),
    Check("pg.idle_in_transaction", idle_in_transaction),
    Check("pg.blocked_locks", blocked_locks),
    Check("pg.replication", replication),
    Check("pg.cache_hit", cache_hit),
    Check("pg.xid_age", xid_age),
    Check("pg.database_size", database_size),
    Check("pg.dead_tuples", dead_tuples),
    Check("pg.erpops_leftovers", erpops_leftovers),
]
ODOO_DB_CHECKS = [
    Check("odoo.cron_overdue", cron_overdue),
    Check("odoo.mail_exception", mail_queue),
]
