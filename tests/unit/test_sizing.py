"""Sizing: PGTune parity, Odoo's deployment rules, and the connection budget."""

from __future__ import annotations

import pytest

from erpops import sizing
from erpops.units import KB_PER_GB, KB_PER_MB

# Outputs of PGTune's own code (le0pard/pgtune configurationSlice.js @01bb644, Linux, PostgreSQL 15),
# printed by its formatValue exactly as pgtune.leopard.in.ua shows them. Not computed by erpops.
PGTUNE_OUTPUTS = {
    "2GB-1cpu-ssd-web-100": (
        (2 * KB_PER_GB, 1, "ssd", "web", 100),
        {"max_connections": "100", "shared_buffers": "512MB", "effective_cache_size": "1536MB",
         "maintenance_work_mem": "128MB", "checkpoint_completion_target": "0.9", "wal_buffers": "16MB",
         "default_statistics_target": "100", "random_page_cost": "1.1", "effective_io_concurrency": "200",
         "work_mem": "4854kB", "huge_pages": "off", "jit": "off", "wal_compression": "lz4",
         "min_wal_size": "1GB", "max_wal_size": "4GB"}),
    "4GB-2cpu-hdd-oltp-200": (
        (4 * KB_PER_GB, 2, "hdd", "oltp", 200),
        {"max_connections": "200", "shared_buffers": "1GB", "effective_cache_size": "3GB",
         "maintenance_work_mem": "256MB", "checkpoint_completion_target": "0.9", "wal_buffers": "16MB",
         "default_statistics_target": "100", "random_page_cost": "4", "effective_io_concurrency": "2",
         "work_mem": "5041kB", "huge_pages": "off", "jit": "off", "wal_compression": "lz4",
         "min_wal_size": "2GB", "max_wal_size": "8GB"}),
    "8GB-4cpu-ssd-mixed-150": (
        (8 * KB_PER_GB, 4, "ssd", "mixed", 150),
        {"max_connections": "150", "shared_buffers": "2GB", "effective_cache_size": "6GB",
         "maintenance_work_mem": "512MB", "checkpoint_completion_target": "0.9", "wal_buffers": "16MB",
         "default_statistics_target": "100", "random_page_cost": "1.1", "effective_io_concurrency": "200",
         "work_mem": "6808kB", "huge_pages": "try", "jit": "off", "wal_compression": "lz4",
         "min_wal_size": "1GB", "max_wal_size": "4GB", "max_worker_processes": "4",
         "max_parallel_workers_per_gather": "2", "max_parallel_workers": "4",
         "max_parallel_maintenance_workers": "2"}),
    "16GB-8cpu-ssd-web-300": (
        (16 * KB_PER_GB, 8, "ssd", "web", 300),
        {"max_connections": "300", "shared_buffers": "4GB", "effective_cache_size": "12GB",
         "maintenance_work_mem": "1GB", "checkpoint_completion_target": "0.9", "wal_buffers": "16MB",
         "default_statistics_target": "100", "random_page_cost": "1.1", "effective_io_concurrency": "200",
         "work_mem": "13617kB", "huge_pages": "try", "jit": "off", "wal_compression": "lz4",
         "min_wal_size": "1GB", "max_wal_size": "4GB", "max_worker_processes": "8",
         "max_parallel_workers_per_gather": "4", "max_parallel_workers": "8",
         "max_parallel_maintenance_workers": "4"}),
    "32GB-8cpu-hdd-mixed-250": (
        (32 * KB_PER_GB, 8, "hdd", "mixed", 250),
        {"max_connections": "250", "shared_buffers": "8GB", "effective_cache_size": "24GB",
         "maintenance_work_mem": "2GB", "checkpoint_completion_target": "0.9", "wal_buffers": "16MB",
         "default_statistics_target": "100", "random_page_cost": "4", "effective_io_concurrency": "2",
         "work_mem": "16256kB", "huge_pages": "try", "jit": "off", "wal_compression": "lz4",
         "autovacuum_work_mem": "2GB", "min_wal_size": "1GB", "max_wal_size": "4GB",
         "max_worker_processes": "8", "max_parallel_workers_per_gather": "4", "max_parallel_workers": "8",
         "max_parallel_maintenance_workers": "4"}),
    "64GB-16cpu-ssd-oltp-400": (
        (64 * KB_PER_GB, 16, "ssd", "oltp", 400),
        {"max_connections": "400", "shared_buffers": "16GB", "effective_cache_size": "48GB",
         "maintenance_work_mem": "4GB", "checkpoint_completion_target": "0.9", "wal_buffers": "16MB",
         "default_statistics_target": "100", "random_page_cost": "1.1", "effective_io_concurrency": "200",
         "work_mem": "40329kB", "huge_pages": "try", "jit": "off", "wal_compression": "lz4",
         "autovacuum_max_workers": "4", "autovacuum_work_mem": "2GB", "min_wal_size": "2GB",
         "max_wal_size": "8GB", "max_worker_processes": "16", "max_parallel_workers_per_gather": "4",
         "max_parallel_workers": "16", "max_parallel_maintenance_workers": "4"}),
    "64GB-16cpu-san-web-120": (
        (64 * KB_PER_GB, 16, "san", "web", 120),
        {"max_connections": "120", "shared_buffers": "16GB", "effective_cache_size": "48GB",
         "maintenance_work_mem": "4GB", "checkpoint_completion_target": "0.9", "wal_buffers": "16MB",
         "default_statistics_target": "100", "random_page_cost": "1.1", "effective_io_concurrency": "300",
         "work_mem": "123361kB", "huge_pages": "try", "jit": "off", "wal_compression": "lz4",
         "autovacuum_max_workers": "4", "autovacuum_work_mem": "2GB", "min_wal_size": "1GB",
         "max_wal_size": "4GB", "max_worker_processes": "16", "max_parallel_workers_per_gather": "4",
         "max_parallel_workers": "16", "max_parallel_maintenance_workers": "4"}),
    "6GB-3cpu-nvme-oltp-60": (
        (6 * KB_PER_GB, 3, "nvme", "oltp", 60),
        {"max_connections": "60", "shared_buffers": "1536MB", "effective_cache_size": "4608MB",
         "maintenance_work_mem": "384MB", "checkpoint_completion_target": "0.9", "wal_buffers": "16MB",
         "default_statistics_target": "100", "random_page_cost": "1.1", "effective_io_concurrency": "1000",
         "work_mem": "23130kB", "huge_pages": "off", "jit": "off", "wal_compression": "lz4",
         "min_wal_size": "2GB", "max_wal_size": "8GB"}),
    "1GB-2cpu-ssd-web-9999": (
        (1024 * KB_PER_MB, 2, "ssd", "web", 9999),
        {"max_connections": "9999", "shared_buffers": "256MB", "effective_cache_size": "768MB",
         "maintenance_work_mem": "64MB", "checkpoint_completion_target": "0.9", "wal_buffers": "7864kB",
         "default_statistics_target": "100", "random_page_cost": "1.1", "effective_io_concurrency": "200",
         "work_mem": "4MB", "huge_pages": "off", "jit": "off", "wal_compression": "lz4",
         "min_wal_size": "1GB", "max_wal_size": "4GB"}),
}


@pytest.mark.parametrize("case", PGTUNE_OUTPUTS)
def test_pgtune_parity(case: str) -> None:
    (memory_kb, cpus, disk, profile, conns), expected = PGTUNE_OUTPUTS[case]
    got = {s.name: s.conf for s in sizing.pgtune(memory_kb, cpus, disk, profile, 15, max_connections=conns)}
    assert got == expected
    # the same settings, in PGTune's order
    assert list(got) == list(expected)


@pytest.mark.parametrize(("memory_gb", "expected_kb"), [(256, 8 * KB_PER_GB), (16, KB_PER_GB)])
def test_pgtune_maintenance_work_mem_cap(memory_gb: int, expected_kb: int) -> None:
    settings = {s.name: s.value for s in sizing.pgtune(memory_gb * KB_PER_GB, 4, "ssd", "web", 17)}
    assert settings["maintenance_work_mem"] == expected_kb


def test_pgtune_defaults_and_older_versions() -> None:
    web = {s.name: s.conf for s in sizing.pgtune(4 * KB_PER_GB, 2, "ssd", "web", 14)}
    assert web["max_connections"] == "200"  # PGTune's web default when no count is given
    assert web["wal_compression"] == "on"
    dw = {s.name: s.conf for s in sizing.pgtune(64 * KB_PER_GB, 31, "ssd", "dw", 12)}
    assert dw["max_parallel_workers_per_gather"] == "16" and "jit" not in dw
    assert dw["default_statistics_target"] == "500"


@pytest.mark.parametrize(
    ("cpu", "memory_mib", "workers"),
    [
        (4, 8192, 9),  # Odoo deploy docs example: 4 CPU -> (4 * 2) + 1 = 9 workers
        (2, 4096, 5),  # CPU-bound
        (8, 2048, 5),  # memory-bound: 2048 / 324.8 - 1 = 5
        (0.5, 1024, 2),  # half a core: floor(1) + 1
    ],
)
def test_odoo_workers_follow_the_deploy_docs(cpu: float, memory_mib: int, workers: int) -> None:
    assert sizing.size_odoo(cpu, memory_mib).workers == workers


def test_odoo_memory_limits_fit_the_pod() -> None:
    sized = sizing.size_odoo(2, 4096)
    soft, hard = sized.limit_memory_soft, sized.limit_memory_hard
    pod = 4096 * 1024 * 1024
    over = sizing.VMS_OVER_RSS_MIB * 1024 * 1024  # the limits are virtual memory, the pod's is resident
    # every worker and the gevent process at the soft limit fit, resident, in 80% of the pod limit
    assert (sized.workers + 1) * (soft - over) <= 0.8 * pod
    # one process at the hard limit while the others sit at soft still fits the pod limit, resident
    assert (hard - over) + sized.workers * (soft - over) <= pod
    assert soft < hard <= 2560 * 1024 * 1024
    assert sized.limit_time_real == 2 * sized.limit_time_cpu
    assert sized.concurrent_users_per_pod == 6 * sized.workers


def test_odoo_limits_never_exceed_odoo_defaults_on_big_pods() -> None:
    sized = sizing.size_odoo(4, 65536)
    assert sized.limit_memory_soft == 2048 * 1024 * 1024
    assert sized.limit_memory_hard == 2560 * 1024 * 1024


def test_connection_budget_adds_up() -> None:
    b = sizing.connection_budget(web_replicas_max=6, workers=5, cron_replicas=1, cron_threads=2,
                                 headroom_processes=4, db_maxconn=8, pooler_instances=2)
    assert b.client_connections == (6 * (5 + 1) + 1 * 2 + 4) * 8 == 336
    assert b.pool_size == 168 and b.server_connections == 336
    assert b.max_connections == 336 + 10 + 3
    settings = {s.name: s for s in b.settings}
    assert "6 web x (5 workers + 1 gevent)" in settings["client_connections"].formula


@pytest.mark.parametrize("cpu,memory_mib", [(1, 2048), (2, 4096), (0.5, 1024), (8, 2048), (1, 700)])
def test_odoo_soft_limit_leaves_room_above_a_real_workers_virtual_size(cpu: float, memory_mib: int) -> None:
    """A real Odoo 17 worker under light traffic maps ~255 MiB (145 MiB resident): limit_memory_soft is
    compared with the virtual size after every request, so a soft limit near 255 MiB recycles workers
    all the time, and limit_memory_hard (RLIMIT_AS) must let such a worker still allocate."""
    sized = sizing.size_odoo(cpu, memory_mib)
    soft_mib = sized.limit_memory_soft / 1024 / 1024
    hard_mib = sized.limit_memory_hard / 1024 / 1024
    assert soft_mib >= sizing.WORKER_VMS_MIB * sizing.MIN_SOFT_OVER_VMS
    assert hard_mib > soft_mib


def test_odoo_memory_formula_names_virtual_memory() -> None:
    settings = {s.name: s.formula for s in sizing.size_odoo(2, 4096).settings}
    assert "virtual" in settings["limit_memory_soft"] and "RLIMIT_AS" in settings["limit_memory_hard"]
