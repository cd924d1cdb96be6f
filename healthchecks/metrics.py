"""What each check's metrics mean to Prometheus and Nagios: names, types, units, HELP, thresholds.

A check returns its metrics in the units its message uses (`latency_ms`, `age_minutes`); this
catalog turns them into Prometheus base units (seconds, bytes, ratios 0..1), names without
repetition (`erpops_backup_newest_age_seconds`, not `..._backup_age_age_minutes`), counters with
`_total` for values that only grow (Redis evicted keys, PostgreSQL block counts), node_exporter's
label names (`mountpoint`), and HELP a reader can act on. The same entry gives Nagios perfdata
its unit and the spec threshold (warn;crit) the check grades the value with.

A metric a check reports that is not in the catalog is still exported, under a derived name with
the same unit rules (see `derived`), so a new check is never silent; give it an entry here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str  # the family name; a counter's samples add `_total`
    help: str
    kind: str = "gauge"  # "gauge" or "counter"
    scale: float = 1.0  # multiply the check's value by this to reach the base unit
    label: str | None = None  # label name for the `key:detail` part of a metric key
    level: str | None = None  # the Thresholds level the check grades this value with
    level_scale: float = 1.0  # that level's unit -> the base unit
    uom: str = ""  # Nagios unit of measure: s, %, B, c or "" (a plain number)
    min: float | None = 0.0
    max: float | None = None
    perf_label: str | None = None  # Nagios label after `<check>.` (default: the key less its unit word)


MS, MINUTE = 0.001, 60.0

CATALOG: dict[tuple[str, str], Metric] = {
    # host
    ("host.cpu", "percent"): Metric("erpops_host_cpu_busy_ratio", "Share of all CPU time busy over the check's "
                                    "sample window, without the health check's own processes (0..1)", scale=0.01,
                                    level="host_cpu_percent", level_scale=0.01, max=1.0, perf_label="busy_ratio"),
    ("host.cpu", "total_percent"): Metric("erpops_host_cpu_busy_with_check_ratio", "Share of all CPU time busy over "
                                          "the sample window, the health check's own processes included (0..1)",
                                          scale=0.01, max=1.0, perf_label="busy_with_check_ratio"),
    ("host.memory", "used_ratio"): Metric("erpops_host_memory_used_ratio", "Share of physical memory in use, page "
                                          "cache excluded (0..1)", level="host_memory_ratio", max=1.0),
    ("host.memory", "available_bytes"): Metric("erpops_host_memory_available_bytes",
                                               "Memory available to new processes without swapping", uom="B"),
    ("host.disk", "free_ratio"): Metric("erpops_host_filesystem_free_ratio", "Free share of the filesystem holding "
                                        "an Odoo or PostgreSQL data path (0..1)", label="mountpoint",
                                        level="disk_free_ratio_min", max=1.0),
    ("host.disk", "min_free_ratio"): Metric("erpops_host_filesystem_min_free_ratio", "Free share of the fullest "
                                            "filesystem among the data paths (0..1)", level="disk_free_ratio_min",
                                            max=1.0),
    ("host.load", "load1"): Metric("erpops_host_load1", "1-minute load average"),
    ("host.load", "load5"): Metric("erpops_host_load5", "5-minute load average"),
    ("host.load", "per_core"): Metric("erpops_host_load1_per_core", "1-minute load average divided by the CPU cores",
                                      level="host_load_per_core"),
    # Odoo
    ("odoo.version", "major"): Metric("erpops_odoo_version_major", "Major version of the Odoo serving the stack "
                                      "(see erpops_odoo_version_info for the full version)"),
    ("odoo.health", "http_status"): Metric("erpops_odoo_health_http_status", "HTTP status of /web/health"),
    ("odoo.health", "db_http_status"): Metric("erpops_odoo_health_db_http_status", "HTTP status of "
                                              "/web/health?db_server_status=1 (Odoo 17+: its database reachable)"),
    ("odoo.login", "latency_ms"): Metric("erpops_odoo_login_page_latency_seconds", "Time to serve the /web/login "
                                         "page", scale=MS, level="odoo_latency_ms", level_scale=MS, uom="s"),
    ("odoo.login", "http_status"): Metric("erpops_odoo_login_page_http_status", "HTTP status of /web/login"),
    ("odoo.login", "redirects"): Metric("erpops_odoo_login_page_redirect_hops", "HTTP redirects followed to reach "
                                        "the login form"),
    # two calls (authenticate, read), graded per call: the thresholds apply twice over to the total
    ("odoo.call_kw", "latency_ms"): Metric("erpops_odoo_call_kw_latency_seconds", "Time to log in and read one "
                                           "res.users record over JSON-RPC (two calls)", scale=MS,
                                           level="odoo_latency_ms", level_scale=2 * MS, uom="s"),
    ("odoo.cron_overdue", "overdue_jobs"): Metric("erpops_odoo_crons_overdue", "Active scheduled actions overdue by "
                                                  "at least the warning threshold"),
    ("odoo.cron_overdue", "max_overdue_minutes"): Metric("erpops_odoo_cron_max_overdue_seconds", "How late the most "
                                                         "overdue active scheduled action is", scale=MINUTE,
                                                         level="cron_overdue_minutes", level_scale=MINUTE,
                                                         uom="s"),
    ("odoo.mail_exception", "exception"): Metric("erpops_odoo_mails_in_exception", "Outgoing mails Odoo failed to "
                                                 "send (mail.mail state exception)", level="mail_exception_count"),
    ("odoo.mail_exception", "outgoing"): Metric("erpops_odoo_mails_outgoing", "Mails waiting to be sent "
                                                "(mail.mail state outgoing)"),
    # PostgreSQL
    ("pg.connect", "connect_ms"): Metric("erpops_pg_connect_latency_seconds", "Time to connect and run SELECT "
                                         "version() with psql", scale=MS, level="pg_connect_ms", level_scale=MS,
                                         uom="s"),
    ("pg.connections", "used"): Metric("erpops_pg_connections", "Client connections open on the server"),
    ("pg.connections", "max"): Metric("erpops_pg_connections_max", "max_connections less the superuser-reserved "
                                      "ones"),
    ("pg.connections", "ratio"): Metric("erpops_pg_connections_used_ratio", "Share of the usable connections in "
                                        "use (0..1)", level="pg_connections_ratio", max=1.0),
    ("pg.longest_transaction", "age_seconds"): Metric("erpops_pg_longest_transaction_seconds", "Age of the oldest "
                                                      "open transaction", level="pg_longest_transaction_seconds",
                                                      uom="s"),
    ("pg.idle_in_transaction", "age_seconds"): Metric("erpops_pg_idle_in_transaction_longest_seconds", "How long "
                                                      "the longest idle-in-transaction session has been idle",
                                                      level="pg_idle_in_transaction_seconds", uom="s"),
    ("pg.idle_in_transaction", "sessions"): Metric("erpops_pg_idle_in_transaction_sessions", "Sessions idle inside "
                                                   "an open transaction"),
    ("pg.blocked_locks", "blocked_sessions"): Metric("erpops_pg_lock_blocked_sessions", "Sessions waiting on a lock "
                                                     "held by another session"),
    ("pg.blocked_locks", "longest_wait_seconds"): Metric("erpops_pg_lock_wait_longest_seconds", "Longest current "
                                                         "wait for a lock", level="pg_lock_wait_seconds", uom="s"),
    ("pg.replication", "replicas"): Metric("erpops_pg_replicas", "Streaming replicas attached to the primary"),
    ("pg.replication", "lag_bytes"): Metric("erpops_pg_replication_lag_bytes", "WAL not yet replayed by the worst "
                                            "replica (on a standby: received but not replayed)",
                                            level="pg_replica_lag_bytes", uom="B"),
    ("pg.replication", "lag_seconds"): Metric("erpops_pg_replication_lag_seconds", "Replay lag of the worst replica",
                                              level="pg_replica_lag_seconds", uom="s"),
    ("pg.cache_hit", "blocks_hit"): Metric("erpops_pg_blocks_hit", "Block reads served from shared buffers since "
                                           "the statistics were reset", kind="counter", uom="c"),
    ("pg.cache_hit", "blocks_read"): Metric("erpops_pg_blocks_read", "Block reads that went to the operating system "
                                            "since the statistics were reset", kind="counter", uom="c"),
    ("pg.cache_hit", "ratio"): Metric("erpops_pg_cache_hit_ratio", "Share of block reads served from shared "
                                      "buffers since the statistics were reset (0..1)", level="pg_cache_hit_ratio_min",
                                      max=1.0),
    ("pg.xid_age", "age"): Metric("erpops_pg_oldest_xid_age", "Transactions since the oldest unfrozen xid of any "
                                  "database (wraparound stops writes near 2^31)", level="pg_xid_age",
                                  max=2.0**31),
    ("pg.database_size", "bytes"): Metric("erpops_pg_database_size_bytes", "Size of the Odoo database", uom="B"),
    ("pg.database_size", "cluster_bytes"): Metric("erpops_pg_cluster_size_bytes", "Size of every database of the "
                                                  "server together", uom="B"),
    ("pg.database_size", "volume_ratio"): Metric("erpops_pg_database_volume_used_ratio", "The databases' size as a "
                                                 "share of the PostgreSQL volume (0..1)",
                                                 level="pg_database_size_ratio", max=1.0),
    ("pg.dead_tuples", "max_ratio"): Metric("erpops_pg_dead_tuples_max_ratio", "Dead share of the rows of the "
                                            "worst table of 1000 rows or more (0..1)", level="pg_dead_tuple_ratio",
                                            max=1.0),
    ("pg.erpops_leftovers", "dead"): Metric("erpops_pg_leftovers_dead", "Side databases, sandbox roles and temp "
                                            "directories left by erpops runs that died (removed by the next run)"),
    ("pg.erpops_leftovers", "in_use"): Metric("erpops_pg_leftovers_in_use", "Objects of erpops runs in progress "
                                              "(or on other hosts)"),
    # patches
    ("patch.stuck", "stuck"): Metric("erpops_patch_runs_stuck", "Patch runs that died mid-way and left the stack "
                                     "frozen (runbooks/alerts/patch.stuck.md)"),
    # Redis
    ("redis.ping", "latency_ms"): Metric("erpops_redis_ping_latency_seconds", "Round trip of PING", scale=MS,
                                         level="redis_latency_ms", level_scale=MS, uom="s"),
    ("redis.memory", "used_bytes"): Metric("erpops_redis_memory_used_bytes", "Memory Redis uses (used_memory)",
                                           uom="B"),
    ("redis.memory", "max_bytes"): Metric("erpops_redis_memory_limit_bytes", "The limit used_memory is graded "
                                          "against: maxmemory, else the container limit from the spec; 0 when "
                                          "neither is known", uom="B"),
    ("redis.memory", "ratio"): Metric("erpops_redis_memory_used_ratio", "used_memory as a share of the limit "
                                      "(0..1)", level="redis_memory_ratio", max=1.0),
    ("redis.evictions", "evicted_keys"): Metric("erpops_redis_evicted_keys", "Keys evicted since Redis started "
                                                "(each one a logged-out Odoo session)", kind="counter",
                                                level="redis_evicted_keys", uom="c"),
    ("redis.clients", "connected"): Metric("erpops_redis_clients_connected", "Client connections open",
                                           level="redis_connected_clients"),
    ("redis.clients", "blocked"): Metric("erpops_redis_clients_blocked", "Clients blocked in a blocking call"),
    ("redis.persistence", "rdb_ok"): Metric("erpops_redis_rdb_last_save_ok", "1 when the last RDB save succeeded",
                                            max=1.0),
    ("redis.persistence", "aof_ok"): Metric("erpops_redis_aof_last_write_ok", "1 when the last AOF write succeeded",
                                            max=1.0),
    ("redis.persistence", "changes_since_save"): Metric("erpops_redis_changes_since_last_save", "Writes not yet in "
                                                        "an RDB snapshot"),
    # S3 and backups
    ("s3.backup_age", "complete_sets"): Metric("erpops_backup_sets_complete", "Complete backup sets of the stack"),
    ("s3.backup_age", "incomplete_sets"): Metric("erpops_backup_sets_incomplete", "Backup sets left incomplete by "
                                                 "failed backups"),
    ("s3.backup_age", "running_sets"): Metric("erpops_backup_sets_running", "Backups running now"),
    ("s3.backup_age", "bad_sets"): Metric("erpops_backup_sets_unusable", "Newer sets passed over: manifest "
                                          "unreadable or failed verification"),
    ("s3.backup_age", "age_minutes"): Metric("erpops_backup_newest_age_seconds", "Age of the newest complete backup "
                                             "set", scale=MINUTE, level="backup_age_minutes", level_scale=MINUTE,
                                             uom="s"),
    ("s3.backup_age", "rpo_minutes"): Metric("erpops_backup_rpo_seconds", "The stack's recovery point objective "
                                             "(backup.rpo_minutes)", scale=MINUTE, uom="s"),
    ("s3.multipart", "uploads"): Metric("erpops_s3_multipart_uploads", "Multipart uploads in progress under the "
                                        "backup prefix"),
    ("s3.multipart", "stale_uploads"): Metric("erpops_s3_multipart_uploads_stale", "Multipart uploads older than the "
                                              "warning threshold (storage paid until aborted)"),
}

# Results' `info` (strings) as `_info` series: check -> (family, HELP)
INFO: dict[str, tuple[str, str]] = {
    "odoo.version": ("erpops_odoo_version_info", "The Odoo version serving the stack, as labels (value 1)"),
    "pg.connect": ("erpops_pg_version_info", "The PostgreSQL server version, as labels (value 1)"),
}

# Unit words a check may use and what they become: (suffix, base suffix, scale)
_UNITS = (("_ms", "_seconds", MS), ("_milliseconds", "_seconds", MS), ("_minutes", "_seconds", MINUTE),
          ("_hours", "_seconds", 3600.0), ("_percent", "_ratio", 0.01))


def _tokens_deduped(name: str) -> str:
    out: list[str] = []
    for token in name.split("_"):
        if token and (not out or out[-1] != token):
            out.append(token)
    return "_".join(out)


def derived(check: str, key: str) -> Metric:
    """A catalog-less metric: base units by suffix, no repeated word (`backup_age` + `age_minutes`)."""
    name = re.sub(r"[^a-zA-Z0-9_]", "_", f"erpops_{check}_{key}")
    scale = 1.0
    for suffix, base, factor in _UNITS:
        if name.endswith(suffix):
            name, scale = name[: -len(suffix)] + base, factor
            break
    return Metric(_tokens_deduped(name), f"{key} reported by check {check} (not described in "
                  "healthchecks/metrics.py yet)", scale=scale)


def perf_label(check: str, key: str) -> str:
    """The Nagios perfdata label: `<check>.<key>` without a unit word (the value is in base units)."""
    base, _, detail = key.partition(":")
    m = CATALOG.get((check, base))
    short = m.perf_label if m and m.perf_label else base
    for suffix, _base, _factor in _UNITS:
        if short.endswith(suffix) and len(short) > len(suffix):
            short = short[: -len(suffix)]
            break
    return f"{check}.{short}" + (f"[{detail}]" if detail else "")


def describe(check: str, key: str) -> tuple[Metric, str | None]:
    """(the metric, the detail of a `key:detail` key)."""
    base, _, detail = key.partition(":")
    return CATALOG.get((check, base)) or derived(check, base), detail or None
