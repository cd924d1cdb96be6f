"""Sizing of Odoo and PostgreSQL from the resources an environment spec gives them.

Pure functions only: no I/O, no spec parsing. Every formula is written once, here, with its
source on the line above it, and every result carries the formula that produced it so that
`erpops size` can show its work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from erpops.units import KB_PER_GB, KB_PER_MB, format_kb

PGTUNE = "PGTune"
ODOO_DOC = "Odoo deploy docs"
ERPOPS = "erpops"


@dataclass(frozen=True)
class Setting:
    """One computed setting: its native value, the text a config file takes, and how it was made."""

    name: str
    value: int | float | str
    conf: str
    formula: str
    source: str


def _setting(name: str, value: int | float | str, formula: str, source: str, *, kb: bool = False) -> Setting:
    conf = format_kb(int(value)) if kb else str(value)
    return Setting(name, value, conf, formula, source)


# --------------------------------------------------------------------------------------------
# PostgreSQL: PGTune, exactly (Linux, PostgreSQL >= 10). Memory values are in kB.
# --------------------------------------------------------------------------------------------

PGTUNE_PROFILES = ("web", "oltp", "dw", "desktop", "mixed")
PGTUNE_DISKS = ("ssd", "hdd", "san", "nvme")


def pgtune(
    memory_kb: int,
    cpus: int | None,
    disk: str,
    profile: str,
    pg_major: int,
    max_connections: int | None = None,
) -> list[Setting]:
    """PGTune's postgresql.conf for a Linux server, in PGTune's own order and formatting."""
    if profile not in PGTUNE_PROFILES:
        raise ValueError(f"profile must be one of {PGTUNE_PROFILES}, got {profile!r}")
    if disk not in PGTUNE_DISKS:
        raise ValueError(f"disk must be one of {PGTUNE_DISKS}, got {disk!r}")
    ram = f"{format_kb(memory_kb)} RAM"
    out: list[Setting] = []

    # PGTune selectMaxConnections: the given count, else per profile (web 200, oltp 300, dw 40, ...)
    default_conns = {"web": 200, "oltp": 300, "dw": 40, "desktop": 20, "mixed": 100}[profile]
    conns = max_connections or default_conns
    out.append(_setting("max_connections", conns,
                        "connection budget" if max_connections else f"PGTune default for {profile}", PGTUNE))

    # PGTune selectSharedBuffers: RAM/4 (desktop RAM/16)
    divisor = 16 if profile == "desktop" else 4
    shared_buffers = memory_kb // divisor
    out.append(_setting("shared_buffers", shared_buffers, f"{ram} / {divisor}", PGTUNE, kb=True))

    # PGTune selectEffectiveCacheSize: RAM*3/4 (desktop RAM/4)
    ecs = memory_kb // 4 if profile == "desktop" else memory_kb * 3 // 4
    out.append(_setting("effective_cache_size", ecs,
                        f"{ram} / 4" if profile == "desktop" else f"{ram} * 3/4", PGTUNE, kb=True))

    # PGTune selectMaintenanceWorkMem: RAM/16 (dw RAM/8), capped at 8GB on Linux
    mwm_div = 8 if profile == "dw" else 16
    mwm = min(memory_kb // mwm_div, 8 * KB_PER_GB)
    out.append(_setting("maintenance_work_mem", mwm, f"min({ram} / {mwm_div}, 8GB)", PGTUNE, kb=True))

    # PGTune selectCheckpointCompletionTarget: 0.9 (PostgreSQL's own default since 14)
    out.append(_setting("checkpoint_completion_target", 0.9, "constant 0.9", PGTUNE))

    # PGTune selectWalBuffers: 3% of shared_buffers, max 16MB, rounded up to 16MB above 14MB, min 32kB
    wal_buffers = min(3 * shared_buffers // 100, 16 * KB_PER_MB)
    if 14 * KB_PER_MB < wal_buffers < 16 * KB_PER_MB:
        wal_buffers = 16 * KB_PER_MB
    wal_buffers = max(wal_buffers, 32)
    out.append(_setting("wal_buffers", wal_buffers, "3% of shared_buffers, 32kB..16MB", PGTUNE, kb=True))

    # PGTune selectDefaultStatisticsTarget: 100 (dw 500)
    out.append(_setting("default_statistics_target", 500 if profile == "dw" else 100,
                        f"PGTune value for {profile}", PGTUNE))

    # PGTune selectRandomPageCost: hdd 4, ssd/san/nvme 1.1
    rpc: int | float = 4 if disk == "hdd" else 1.1
    out.append(_setting("random_page_cost", rpc, f"PGTune value for {disk}", PGTUNE))

    # PGTune selectEffectiveIoConcurrency (Linux): hdd 2, ssd 200, san 300, nvme 1000
    eic = {"hdd": 2, "ssd": 200, "san": 300, "nvme": 1000}[disk]
    out.append(_setting("effective_io_concurrency", eic, f"PGTune value for {disk}", PGTUNE))

    parallel = _pgtune_parallel(cpus, profile, pg_major)
    # PGTune selectWorkMem: (RAM - shared_buffers) / ((max_connections + max_worker_processes) * 3),
    # then /2 for dw and mixed, /6 for desktop, floored at 4MB
    workers_for_mem = next((s.value for s in parallel if s.name == "max_worker_processes"), 8)
    base = (memory_kb - shared_buffers) / ((conns + int(workers_for_mem)) * 3)
    wm_div = {"web": 1, "oltp": 1, "dw": 2, "desktop": 6, "mixed": 2}[profile]
    work_mem = max(math.floor(base / wm_div), 4 * KB_PER_MB)
    out.append(_setting(
        "work_mem", work_mem,
        f"({ram} - shared_buffers) / (({conns} conns + {workers_for_mem} workers) * 3)"
        + (f" / {wm_div}" if wm_div > 1 else "") + ", min 4MB",
        PGTUNE, kb=True))

    # PGTune selectHugePages: 'try' once shared_buffers >= 2GB, else 'off'
    out.append(_setting("huge_pages", "try" if shared_buffers >= 2 * KB_PER_GB else "off",
                        "try when shared_buffers >= 2GB", PGTUNE))

    # PGTune selectJit: off for web/oltp/mixed on PostgreSQL >= 12 (short queries pay JIT's cost)
    if pg_major >= 12 and profile in ("web", "oltp", "mixed"):
        out.append(_setting("jit", "off", f"off for {profile} on PostgreSQL >= 12", PGTUNE))

    # PGTune selectWalCompression: lz4 on PostgreSQL >= 15, on for 10..14
    if pg_major >= 10:
        out.append(_setting("wal_compression", "lz4" if pg_major >= 15 else "on",
                            "lz4 on PostgreSQL >= 15, else on", PGTUNE))

    # PGTune selectAutovacuumMaxWorkers: 5 from 32 CPUs, 4 from 16 CPUs, else PostgreSQL's default
    if cpus and cpus >= 16:
        out.append(_setting("autovacuum_max_workers", 5 if cpus >= 32 else 4,
                            "4 from 16 CPUs, 5 from 32 CPUs", PGTUNE))

    # PGTune selectAutovacuumWorkMem: 2GB once maintenance_work_mem >= 2GB, else unset
    if mwm >= 2 * KB_PER_GB:
        out.append(_setting("autovacuum_work_mem", 2 * KB_PER_GB, "2GB cap per autovacuum worker",
                            PGTUNE, kb=True))

    # PGTune selectCheckpointSegments: min/max_wal_size per profile
    min_wal, max_wal = {"web": (1024, 4096), "oltp": (2048, 8192), "dw": (4096, 16384),
                        "desktop": (100, 2048), "mixed": (1024, 4096)}[profile]
    out.append(_setting("min_wal_size", min_wal * KB_PER_MB, f"PGTune value for {profile}", PGTUNE, kb=True))
    out.append(_setting("max_wal_size", max_wal * KB_PER_MB, f"PGTune value for {profile}", PGTUNE, kb=True))

    out.extend(parallel)

    # PGTune selectWalLevel: desktop only (minimal, no WAL senders)
    if profile == "desktop":
        out.append(_setting("wal_level", "minimal", "desktop profile", PGTUNE))
        out.append(_setting("max_wal_senders", "0", "desktop profile", PGTUNE))
    return out


def _pgtune_parallel(cpus: int | None, profile: str, pg_major: int) -> list[Setting]:
    # PGTune selectParallelSettings: only from 4 CPUs; per gather ceil(CPUs/2), max 4 except dw
    if not cpus or cpus < 4:
        return []
    per_gather = math.ceil(cpus / 2)
    if profile != "dw":
        per_gather = min(per_gather, 4)
    out = [
        _setting("max_worker_processes", cpus, f"{cpus} CPUs", PGTUNE),
        _setting("max_parallel_workers_per_gather", per_gather,
                 "ceil(CPUs/2)" + (", max 4" if profile != "dw" else ""), PGTUNE),
    ]
    if pg_major >= 10:
        out.append(_setting("max_parallel_workers", cpus, f"{cpus} CPUs", PGTUNE))
    if pg_major >= 11:
        out.append(_setting("max_parallel_maintenance_workers", min(math.ceil(cpus / 2), 4),
                            "ceil(CPUs/2), max 4", PGTUNE))
    return out


# --------------------------------------------------------------------------------------------
# Odoo
# --------------------------------------------------------------------------------------------

# Odoo deploy docs: ~80% light requests at ~150MB and ~20% heavy ones at ~1GB per worker
LIGHT_RATIO, LIGHT_MIB, HEAVY_RATIO, HEAVY_MIB = 0.8, 150, 0.2, 1024
WORKER_MIB = LIGHT_RATIO * LIGHT_MIB + HEAVY_RATIO * HEAVY_MIB  # 324.8 MiB
# Odoo deploy docs: one worker serves about 6 concurrent users
USERS_PER_WORKER = 6
# Odoo's own defaults (odoo/tools/config.py): limit_memory_soft 2048MiB, limit_memory_hard 2560MiB
ODOO_SOFT_MAX_MIB, ODOO_HARD_MAX_MIB = 2048, 2560
# Odoo's limits are on VIRTUAL memory, the pod's limit on resident memory:
# - limit_memory_soft: after each request a worker compares its virtual size (psutil memory_info().vms)
#   with it and, above it, finishes and is replaced (odoo/service/server.py, Worker.process_limit);
# - limit_memory_hard: set as RLIMIT_AS (resource.setrlimit), the address space a worker may map at all:
#   an allocation beyond it fails with MemoryError and the worker dies.
# A worker's virtual size exceeds its resident size by what it maps but does not touch (shared
# libraries, thread stacks, malloc arenas). Measured on a real Odoo 17 worker serving light traffic:
# about 255 MiB virtual for 145 MiB resident, so ~110 MiB of address space is not in the pod's budget.
WORKER_VMS_MIB, WORKER_RSS_MIB = 255, 145
VMS_OVER_RSS_MIB = WORKER_VMS_MIB - WORKER_RSS_MIB
# a soft limit near an idle worker's own virtual size would recycle it after every request
MIN_SOFT_OVER_VMS = 1.25


@dataclass(frozen=True)
class OdooSizing:
    workers: int
    workers_by_cpu: int
    workers_by_memory: int
    limit_memory_soft: int  # bytes
    limit_memory_hard: int  # bytes
    limit_time_cpu: int
    limit_time_real: int
    limit_request: int
    max_cron_threads: int  # of the web pods: 0, cron runs in its own pods
    cron_threads: int
    db_maxconn: int
    concurrent_users_per_pod: int
    settings: list[Setting] = field(default_factory=list)


def odoo_worker_limits(cpu: float, memory_mib: int) -> tuple[int, int]:
    """(workers by CPU, workers by memory) of one Odoo web pod."""
    # Odoo deploy docs: workers = (#CPU * 2) + 1
    by_cpu = math.floor(2 * cpu) + 1
    # Odoo deploy docs RAM estimate per worker, keeping one worker-sized slot for the gevent process
    by_memory = math.floor(memory_mib / WORKER_MIB) - 1
    return by_cpu, by_memory


def size_odoo(
    cpu: float,
    memory_mib: int,
    *,
    workers: int | None = None,
    cron_threads: int = 2,
    db_maxconn: int = 8,
    limit_time_cpu: int = 600,
    limit_request: int = 65536,
) -> OdooSizing:
    """Odoo's multiprocess settings for one web pod of `cpu` cores and `memory_mib` MiB."""
    by_cpu, by_memory = odoo_worker_limits(cpu, memory_mib)
    auto = max(1, min(by_cpu, by_memory))
    chosen = workers if workers is not None else auto
    s: list[Setting] = []
    if workers is not None:
        s.append(_setting("workers", chosen, "set in the spec (odoo.web.workers)", ERPOPS))
    else:
        s.append(_setting("workers", chosen,
                          f"min(2 x {cpu:g} CPU + 1 = {by_cpu}, {memory_mib}MiB / {WORKER_MIB:.1f}MiB - 1"
                          f" = {by_memory})", ODOO_DOC))
    # erpops: every worker's resident share at the soft limit, plus the gevent process, fits in 80% of the
    # pod limit; the soft limit itself is virtual memory, so it is that share plus the address space a
    # worker maps without using (VMS_OVER_RSS_MIB)
    rss_share = math.floor(0.8 * memory_mib / (chosen + 1))
    soft_mib = min(rss_share + VMS_OVER_RSS_MIB, ODOO_SOFT_MAX_MIB)
    s.append(_setting("limit_memory_soft", soft_mib * 1024 * 1024,
                      f"min(80% x {memory_mib}MiB / ({chosen} workers + 1 gevent) = {rss_share}MiB resident "
                      f"+ {VMS_OVER_RSS_MIB}MiB virtual-over-resident, 2048MiB) = {soft_mib}MiB virtual",
                      ERPOPS))
    # erpops: one process may grow to the hard limit (RLIMIT_AS) while all others sit at their resident
    # share, within the pod limit; plus the same virtual-over-resident margin
    spike = memory_mib - chosen * rss_share
    hard_mib = max(min(spike + VMS_OVER_RSS_MIB, ODOO_HARD_MAX_MIB), soft_mib)
    s.append(_setting("limit_memory_hard", hard_mib * 1024 * 1024,
                      f"min({memory_mib}MiB - {chosen} x {rss_share}MiB + {VMS_OVER_RSS_MIB}MiB, 2560MiB) = "
                      f"{hard_mib}MiB virtual (RLIMIT_AS)", ERPOPS))
    s.append(_setting("limit_time_cpu", limit_time_cpu, "spec odoo.limits.time_cpu", ODOO_DOC))
    # Odoo deploy docs sample: limit_time_real = 2 x limit_time_cpu
    time_real = 2 * limit_time_cpu
    s.append(_setting("limit_time_real", time_real, f"2 x limit_time_cpu {limit_time_cpu}", ODOO_DOC))
    s.append(_setting("limit_request", limit_request, "spec odoo.limits.request", ODOO_DOC))
    s.append(_setting("max_cron_threads", 0, "web pods run no cron; the cron Deployment does", ERPOPS))
    s.append(_setting("cron_threads", cron_threads, "spec odoo.cron.threads (max_cron_threads of cron pods)",
                      ERPOPS))
    s.append(_setting("db_maxconn", db_maxconn, "spec odoo.db_maxconn: pool size of each Odoo process",
                      ERPOPS))
    users = chosen * USERS_PER_WORKER
    s.append(_setting("concurrent_users_per_pod", users, f"{chosen} workers x {USERS_PER_WORKER} users",
                      ODOO_DOC))
    return OdooSizing(
        workers=chosen, workers_by_cpu=by_cpu, workers_by_memory=by_memory,
        limit_memory_soft=soft_mib * 1024 * 1024, limit_memory_hard=hard_mib * 1024 * 1024,
        limit_time_cpu=limit_time_cpu, limit_time_real=time_real, limit_request=limit_request,
        max_cron_threads=0, cron_threads=cron_threads, db_maxconn=db_maxconn,
        concurrent_users_per_pod=users, settings=s,
    )


# --------------------------------------------------------------------------------------------
# Connection budget: Odoo -> PgBouncer (session mode) -> PostgreSQL
# --------------------------------------------------------------------------------------------

# PostgreSQL's default superuser_reserved_connections, kept by CloudNativePG
SUPERUSER_RESERVED = 3


@dataclass(frozen=True)
class ConnectionBudget:
    web_processes: int
    cron_processes: int
    headroom_processes: int
    db_maxconn: int
    client_connections: int
    pooler_instances: int
    pool_size: int
    server_connections: int
    direct_connections: int
    reserved: int
    max_connections: int
    settings: list[Setting] = field(default_factory=list)


def connection_budget(
    *,
    web_replicas_max: int,
    workers: int,
    cron_replicas: int,
    cron_threads: int,
    headroom_processes: int,
    db_maxconn: int,
    pooler_instances: int,
    pool_size: int | None = None,
    direct_connections: int = 10,
    max_connections: int | None = None,
) -> ConnectionBudget:
    """Worst case connections at full scale, and the pool and max_connections that carry them."""
    # Odoo prefork: each worker and the gevent (websocket) process has its own pool of db_maxconn
    web = web_replicas_max * (workers + 1)
    # Odoo cron: one pool per cron thread at worst
    cron = cron_replicas * cron_threads
    # Issue formula: (web + cron + headroom processes) x db_maxconn client connections to the pooler
    clients = (web + cron + headroom_processes) * db_maxconn
    # PgBouncer session mode pins one server connection per client: spread over pooler instances
    needed_pool = math.ceil(clients / pooler_instances)
    pool = pool_size if pool_size is not None else needed_pool
    server = pool * pooler_instances
    # max_connections = pooled server connections + direct (monitoring, backup, runbooks) + reserved
    needed_max = server + direct_connections + SUPERUSER_RESERVED
    max_conns = max_connections if max_connections is not None else needed_max
    s = [
        _setting("client_connections", clients,
                 f"({web_replicas_max} web x ({workers} workers + 1 gevent) + {cron_replicas} cron x "
                 f"{cron_threads} threads + {headroom_processes} headroom) x db_maxconn {db_maxconn}", ERPOPS),
        _setting("default_pool_size", pool,
                 f"ceil({clients} clients / {pooler_instances} poolers) (session mode)"
                 if pool_size is None else "set in the spec (pooler.default_pool_size)", ERPOPS),
        _setting("max_connections", max_conns,
                 f"{pool} x {pooler_instances} poolers + {direct_connections} direct + "
                 f"{SUPERUSER_RESERVED} reserved" if max_connections is None
                 else "set in the spec (postgres.max_connections)", ERPOPS),
    ]
    return ConnectionBudget(
        web_processes=web, cron_processes=cron, headroom_processes=headroom_processes,
        db_maxconn=db_maxconn, client_connections=clients, pooler_instances=pooler_instances,
        pool_size=pool, server_connections=server, direct_connections=direct_connections,
        reserved=SUPERUSER_RESERVED, max_connections=max_conns, settings=s,
    )


def required_max_connections(budget: ConnectionBudget) -> int:
    return budget.server_connections + budget.direct_connections + budget.reserved
