"""The environment spec: one `erpops:spec` object per Pulumi stack file, one typed model.

A spec is read from `Pulumi.<stack>.yaml`, laid over the defaults of its tier (dev, staging,
prod), validated structurally by pydantic (field types with bounds: erpops/spec_types.py) and then
by the rules registered with @rule (sizing, connection budget, high availability, naming, backups,
what the Pulumi program cannot build, and the sibling stack files for the cross-stack rules).
Every problem found is reported at once, each with its key path, the value, what is wrong and a
corrected example, as one `SpecError` (exit code 2), before anything runs. `validate` is the one
validator: the CLI, render, patch, health, loadtest, the inventory and the Pulumi program all call it.

Adding a field: give it a type from spec_types (or a plain one with ge/le) and a description, add a
@rule for what it must agree with, run `python -m erpops.specdocs` (tests fail on a stale docs/spec.md).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from erpops import sizing
from erpops.errors import SpecError
from erpops.spec_secrets import pasted_credentials, raw_at, strings
from erpops.spec_types import (
    Cidr,
    CpuOf,
    CpuRule,
    Cron,
    Endpoint,
    Host,
    Label,
    MemoryOf,
    MemoryRule,
    ModuleName,
    StorageOf,
    Subdomain,
    Word,
    cron_gaps,
    image_pin,
    suggest_label,
)
from erpops.units import mib, parse_cpu, parse_memory

SPEC_KEY = "erpops:spec"
TIERS = ("dev", "staging", "prod")
ODOO_VERSIONS = ("16.0", "17.0", "18.0")
# PGTune warns below 256MB; CloudNativePG cannot run a useful instance below that either
PG_MIN_MEMORY_MIB = 256
# Plain patterns, for a quick field; prefer the types of erpops/spec_types.py (Host, Cidr), which say the fix
_HOST = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_CIDR = r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$"
# PostgreSQL's MAX_BACKENDS (src/include/postmaster/postmaster.h): 2^18 - 1; the server refuses more
PG_MAX_CONNECTIONS = 262143
# Amazon RDS's default for PostgreSQL, max_connections = DBInstanceClassMemory / 9531392: the memory
# one connection is given (its backend, catalog caches, work_mem in use). More connections than the
# instance's memory carries at that rate end in the OOM killer, not in a refused connection.
PG_BYTES_PER_CONNECTION = 9531392
# CloudNativePG's default archive_timeout: a quiet primary still ships a WAL segment this often
WAL_ARCHIVE_TIMEOUT_MINUTES = 5
# PostgreSQL images with a pinned minor release (infra/derive.py builds ghcr.io/cloudnative-pg/postgresql:<minor>)
PG_MINOR = {15: "15.18", 16: "16.14", 17: "17.10"}
CNPG_NAMESPACE = "cnpg-system"

Tier = Literal["dev", "staging", "prod"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _check_memory(value: Any) -> str:
    """For a field_validator of a plain str field: the quantity's checks and messages."""
    return MemoryRule()(value)


def _check_cpu(value: Any) -> str:
    return CpuRule()(value)


def _version(value: Any) -> Any:
    # YAML reads `version: 17.0` as the number 17.0: say to quote it rather than "17.0 is not allowed"
    if isinstance(value, int | float) and not isinstance(value, bool):
        text = f"{value:.1f}"
        raise ValueError(f"{value!r} is a number in YAML, not the text {text!r}: quote it, "
                         f'version: "{text if text in ODOO_VERSIONS else ODOO_VERSIONS[-2]}"')
    return value


# Field types, bounds included (erpops/spec_types.py): `x: Memory`, or `x: MemoryOf("1Gi", "4Gi")` for
# a minimum and an example; a field typed with one gets its checks, messages and docs/spec.md row.
Cpu = PodCpu = CpuOf()
Memory = PodMemory = MemoryOf("64Mi")
Storage = StorageOf()
SecretKeyName = Word("Pulumi config key name", r"[A-Za-z][A-Za-z0-9_.-]{0,63}",
                     "a letter, then letters, digits, '_', '.' or '-', at most 64 characters", "smtpPassword")


class Resources(_Model):
    cpu: PodCpu = Field(description="CPU request and limit of each pod (cores or millicores), e.g. 2 or 500m")
    memory: PodMemory = Field(description="Memory request and limit of each pod, e.g. 4Gi")

    @property
    def cores(self) -> float:
        return parse_cpu(self.cpu)

    @property
    def memory_mib(self) -> int:
        return mib(self.memory)


class Kubernetes(_Model):
    context: str = Field(min_length=1, max_length=253, pattern=r"^\S+$", description=(
        "kubeconfig context of the cluster the stack deploys to"))
    storage_class: Subdomain("StorageClass name") = Field(description=(
        "StorageClass of the PostgreSQL (and Redis) volumes"))
    ingress_class: Subdomain("IngressClass name") = Field(default="nginx", description=(
        "IngressClass of the Odoo Ingress (ingress-nginx only)"))
    ingress_namespace: Label("namespace") = Field(default="ingress-nginx", description=(
        "Namespace of the ingress controller pods, the only one admitted to Odoo's ports"))
    host: Host("host name") = Field(description="Public host name of Odoo, e.g. erp.example.com")
    tls_secret: Subdomain("Secret name") | None = Field(default=None, description=(
        "Secret (kubernetes.io/tls) holding the certificate of the host; none serves plain HTTP"))
    install_cnpg_operator: bool = Field(default=False, description=(
        "Install the CloudNativePG operator chart into cnpg-system with this stack"))


class Autoscale(_Model):
    enabled: bool = Field(default=False, description="Scale web pods with a HorizontalPodAutoscaler")
    min_replicas: int = Field(default=2, ge=1, le=100, description="Fewest web pods the autoscaler keeps")
    max_replicas: int = Field(default=4, ge=1, le=100, description=(
        "Most web pods the autoscaler starts; the connection budget is sized for it"))
    target_cpu_percent: int = Field(default=70, ge=10, le=100, description=(
        "Average CPU utilisation (% of the request) the autoscaler aims at"))


class OdooWeb(Resources):
    cpu: CpuOf("250m", "2") = Field(description="CPU request and limit of each web pod, e.g. 2 (workers follow it)")
    replicas: int = Field(ge=1, le=100, description="Web pods (the autoscaler's start when autoscale.enabled)")
    workers: int | None = Field(default=None, ge=1, le=256, description=(
        "Odoo prefork workers per pod; none computes (2 x CPU) + 1 within the memory"))
    autoscale: Autoscale = Field(default=Autoscale(), description="HorizontalPodAutoscaler of the web pods")
    target_users: int | None = Field(default=None, ge=1, le=1_000_000, description=(
        "Concurrent users to serve: replicas and HPA bounds then come from erpops size --users "
        "(the stack's calibration when one is recorded, the deploy docs' rules otherwise)"))


class OdooCron(Resources):
    replicas: int = Field(default=1, ge=0, le=1, description=(
        "Cron pods: 0 or 1 (Odoo's cron workers must not run twice)"))
    threads: int = Field(default=2, ge=1, le=16, description="max_cron_threads of the cron pod")


class OdooLimits(_Model):
    time_cpu: int = Field(default=600, ge=10, le=86400, description=(
        "limit_time_cpu: CPU seconds a request may use; limit_time_real is derived from it"))
    request: int = Field(default=65536, ge=1024, le=10_000_000, description=(
        "limit_request: requests a worker serves before it is recycled"))


class Odoo(_Model):
    version: Annotated[Literal["16.0", "17.0", "18.0"], BeforeValidator(_version)] = Field(description=(
        'Odoo series, quoted: "17.0"'))
    image: str = Field(description=(
        "Odoo image with a pinned tag or digest, e.g. odoo:17.0-20241010 or odoo@sha256:<64 hex>"))
    database: str = Field(default="", max_length=63, pattern=r"^$|^[a-z_][a-z0-9_]{0,62}$", description=(
        "Database name; empty uses odoo_<stack>"))
    web: OdooWeb = Field(description="Web pods: resources, replicas, workers")
    cron: OdooCron = Field(description="The cron pod")
    db_maxconn: int = Field(default=8, ge=2, le=64, description="db_maxconn: connections each Odoo process pools")
    limits: OdooLimits = Field(default=OdooLimits(), description="Odoo's per-worker limits")
    modules: list[ModuleName] = Field(default=["base", "web"], max_length=500, description=(
        "Modules the module Job installs and updates"))
    dbfilter: str = Field(default="", max_length=500, description=(
        "Odoo's dbfilter (a regular expression; %h host, %d first label): must match the database"))
    proxy_mode: bool = Field(default=True, description="proxy_mode: trust X-Forwarded-* of the ingress")

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        # repository[:tag] or repository@sha256:<64 hex>; a tag is mandatory unless a digest is given
        pin = image_pin(v)
        if pin is None:
            raise ValueError(
                f"'{v}' is not an image with a tag or digest: write it as odoo:17.0-20241010 or "
                "odoo@sha256:<64 hex digits>"
            )
        if pin == "latest":
            raise ValueError("'latest' is not a pinned tag: use a dated tag (odoo:17.0-20241010) or a digest")
        return v


class Postgres(Resources):
    # PGTune warns below 256MB; CloudNativePG cannot run a useful instance below that either
    cpu: CpuOf("500m", "2") = Field(description="CPU request and limit of each PostgreSQL instance, e.g. 4")
    memory: MemoryOf(f"{PG_MIN_MEMORY_MIB}Mi", "16Gi") = Field(description=(
        "Memory request and limit of each PostgreSQL instance; PGTune sizes shared_buffers and the rest from it"))
    instances: int = Field(ge=1, le=9, description="PostgreSQL instances: one primary and instances - 1 standbys")
    storage: StorageOf("1Gi", "50Gi") = Field(description="Volume size of each instance, e.g. 50Gi")
    disk: Literal["ssd", "hdd", "san", "nvme"] = Field(default="ssd", description=(
        "Storage kind, for PGTune's random_page_cost and effective_io_concurrency"))
    profile: Literal["web", "oltp", "mixed"] = Field(default="oltp", description="PGTune workload profile")
    major_version: Literal[15, 16, 17] = Field(default=15, description="PostgreSQL major version")
    max_connections: int | None = Field(default=None, ge=20, le=PG_MAX_CONNECTIONS, description=(
        "max_connections; none computes it from the connection budget"))
    direct_connections: int = Field(default=10, ge=0, le=1000, description=(
        "Connections beside the pooler (monitoring, backups, runbooks) the budget keeps"))


class Pooler(_Model):
    instances: int = Field(default=1, ge=1, le=16, description="PgBouncer pods of the CloudNativePG Pooler")
    mode: Literal["session"] = Field(default="session", description=(
        "PgBouncer pool mode; Odoo needs session (it uses session features)"))
    max_client_conn: int = Field(default=1000, ge=10, le=100_000, description=(
        "max_client_conn of each PgBouncer: must take every Odoo process while the other restarts"))
    default_pool_size: int | None = Field(default=None, ge=1, le=PG_MAX_CONNECTIONS, description=(
        "Server connections per pooler; none computes it from the budget"))
    headroom_processes: int = Field(default=4, ge=0, le=1000, description=(
        "Extra Odoo processes the budget allows for (module Job, shells, rolling updates)"))


class Redis(_Model):
    enabled: bool = Field(default=True, description="Run or use Redis for HTTP sessions (filestore.sessions redis)")
    memory: MemoryOf("32Mi", "256Mi") = Field(default="256Mi", description=(
        "Memory of the in-cluster Redis pod; maxmemory is 90% of it"))
    persistence: bool = Field(default=False, description="Keep Redis' data on a volume (appendonly)")
    storage: StorageOf("100Mi", "1Gi") = Field(default="1Gi", description="Volume size with persistence")
    session_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=300, le=366 * 24 * 3600, description=(
        "Lifetime of an idle HTTP session in Redis"))
    mode: Literal["in-cluster", "managed"] = Field(default="in-cluster", description=(
        "in-cluster: one Redis pod (a single point of failure, refused in prod); managed: a replicated "
        "endpoint run elsewhere (ElastiCache Multi-AZ, Memorystore HA, Azure Cache)"))
    endpoint: Endpoint | None = Field(default=None, max_length=260, description=(
        "managed: host:port of the primary endpoint"))
    cidrs: list[Cidr] = Field(default=[], max_length=16, description=(
        "managed: addresses of the endpoint, the egress policy opens its port to these only"))


BucketName = Word("S3 bucket name", r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]",
                  "3 to 63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit",
                  "acme-erpops-prod-backups")


class ObjectStorage(_Model):
    mode: Literal["aws", "s3-compatible"] = Field(default="aws", description=(
        "aws: buckets and IAM users are created; s3-compatible: existing buckets at endpoint (MinIO, Ceph)"))
    endpoint: str | None = Field(default=None, max_length=500, description=(
        "s3-compatible: URL of the S3 API, e.g. https://minio.example.com"))
    region: str = Field(default="eu-west-1", pattern=r"^[a-z]{2}(-[a-z0-9]+){1,3}$|^[a-z0-9-]{1,40}$",
                        description="Bucket region, e.g. eu-west-1")
    filestore_bucket: BucketName = Field(description="Bucket of Odoo's attachments (object-storage filestore)")
    backup_bucket: BucketName = Field(description=(
        "Bucket of the PostgreSQL base backups and WAL, apart from the filestore"))


class Retention(_Model):
    daily: int = Field(default=7, ge=1, le=3650, description=(
        "Days of point-in-time recovery (CloudNativePG retentionPolicy) and daily sets kept"))
    weekly: int = Field(default=4, ge=0, le=520, description="Weekly sets kept")
    monthly: int = Field(default=0, ge=0, le=120, description="Monthly sets kept")


class Backup(_Model):
    schedule: Cron = Field(default="0 2 * * *", description=(
        "When base backups run (5-field cron, UTC); WAL is archived continuously in between"))
    retention: Retention = Field(default=Retention(), description="How long backups are kept")
    rpo_minutes: int = Field(default=1440, ge=1, le=525_600, description=(
        "Recovery point objective: most minutes of work a recovery may lose"))
    rto_minutes: int = Field(default=240, ge=1, le=525_600, description=(
        "Recovery time objective: most minutes a recovery may take (erpops rehearse measures it)"))
    max_age_for_patch_hours: int = Field(default=24, ge=1, le=8784, description=(
        "erpops patch refuses to run when the newest backup is older than this"))


class RequestSlo(_Model):
    """Limits of one request name (`model:method`). The absolute limits are optional; `tolerance` and
    `detect` override the stack-wide ones of the load-test gate for this name."""

    p50_ms: float | None = Field(default=None, gt=0, le=3_600_000, description="Median response time, ms")
    p95_ms: float | None = Field(default=None, gt=0, le=3_600_000, description="95th percentile response time, ms")
    p99_ms: float | None = Field(default=None, gt=0, le=3_600_000, description="99th percentile response time, ms")
    tolerance: float | None = Field(default=None, ge=0, le=10, description=(
        "This request's slow-down tolerated by the load-test gate (0.10 = 10%); the stack's slo.tolerance when unset"))
    detect: float | None = Field(default=None, gt=1, le=20, description=(
        "Slow-down factor the gate must be able to catch for this request; the stack's slo.detect when unset"))

    @model_validator(mode="after")
    def _ordered(self) -> RequestSlo:
        given = [(n, v) for n, v in (("p50_ms", self.p50_ms), ("p95_ms", self.p95_ms), ("p99_ms", self.p99_ms))
                 if v is not None]
        values = [v for _, v in given]
        if values != sorted(values):
            names = ", ".join(f"{n} {v:g}" for n, v in given)
            fixed = ", ".join(f"{n}: {v:g}" for (n, _), v in zip(given, sorted(values), strict=True))
            raise ValueError(f"{names} are not in order: a higher percentile cannot be faster; write them so "
                             f"p50 <= p95 <= p99, e.g. {{{fixed}}}")
        return self


Persona = Literal["planner", "shop_floor", "buyer", "sales", "warehouse"]


class Slo(_Model):
    requests: dict[Annotated[str, Field(min_length=1, max_length=200)], RequestSlo] = Field(default={}, description=(
        "Response time objectives per request, keyed model:method (e.g. sale.order:create)"))
    error_ratio: float = Field(default=0.01, ge=0, le=1, description="Largest share of failed requests, 0 to 1")
    min_rps: float = Field(default=1.0, ge=0, le=1_000_000, description="Fewest requests per second the gate accepts")
    think_time_seconds: tuple[Annotated[float, Field(ge=0, le=3600)], Annotated[float, Field(ge=0, le=3600)]] = Field(
        default=(1.0, 5.0), description="[min, max] seconds a simulated user waits between requests")
    persona_weights: dict[Persona, Annotated[int, Field(ge=0, le=1000)]] = Field(default={
        "planner": 2, "shop_floor": 4, "buyer": 1, "sales": 2, "warehouse": 3}, description=(
        "Relative share of each load-test persona"))
    # The load-test gate: a p95 slower than 1 + tolerance (beyond noise) fails; a run that could not
    # have caught a p95 `detect` times the baseline (90% power) is INCONCLUSIVE rather than a pass.
    tolerance: float = Field(default=0.10, ge=0, le=10, description=(
        "Slow-down of a request's p95 over the baseline that the load-test gate tolerates (0.10 = 10%)"))
    detect: float = Field(default=1.30, gt=1, le=20, description=(
        "Slow-down factor a gate run must be able to catch (90% power); a run that cannot is INCONCLUSIVE"))

    @model_validator(mode="after")
    def _think_time(self) -> Slo:
        low, high = self.think_time_seconds
        if low > high:
            raise ValueError(f"think_time_seconds [{low:g}, {high:g}] is [min, max]: write [{high:g}, {low:g}]")
        if self.persona_weights and not any(self.persona_weights.values()):
            raise ValueError("persona_weights are all 0: give at least one persona a weight, e.g. planner: 1")
        return self

    @model_validator(mode="after")
    def _detect_above_tolerance(self) -> Slo:
        problems = []
        if self.detect <= 1 + self.tolerance:
            problems.append(f"slo.detect {self.detect:g} must be above 1 + slo.tolerance ({1 + self.tolerance:g}): "
                            "a gate cannot catch a slow-down it tolerates")
        for name, r in self.requests.items():
            tol = self.tolerance if r.tolerance is None else r.tolerance
            det = self.detect if r.detect is None else r.detect
            if det <= 1 + tol:
                problems.append(f"slo.requests.{name}: detect {det:g} must be above 1 + tolerance ({1 + tol:g})")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def thresholds(self, name: str) -> tuple[float, float]:
        """(tolerance, detect) of one request name: its own where set, else the stack's."""
        r = self.requests.get(name)
        tol = self.tolerance if r is None or r.tolerance is None else r.tolerance
        det = self.detect if r is None or r.detect is None else r.detect
        return tol, det


class Threshold(_Model):
    warn: float = Field(allow_inf_nan=True, description="Level from which the check warns")
    crit: float = Field(allow_inf_nan=True, description="Level from which the check is critical")


def _level(warn: float, crit: float, what: str) -> Any:
    return Field(default=Threshold(warn=warn, crit=crit), description=what)


class Health(_Model):
    """warn/crit levels of `erpops health`. For the *_min keys lower is worse, for all others higher."""

    timeout_seconds: float = Field(default=5.0, gt=0, le=300, description="Timeout of each health check")
    odoo_latency_ms: Threshold = _level(500, 2000, "Odoo /web/health response time, ms")
    pg_connect_ms: Threshold = _level(250, 1000, "Time to connect to PostgreSQL through the pooler, ms")
    pg_connections_ratio: Threshold = _level(0.8, 0.9, "Connections in use / max_connections, 0 to 1")
    pg_longest_transaction_seconds: Threshold = _level(300, 1800, "Age of the oldest open transaction, s")
    pg_idle_in_transaction_seconds: Threshold = _level(60, 600, "Longest idle-in-transaction session, s")
    pg_lock_wait_seconds: Threshold = _level(10, 60, "Longest wait for a lock, s")
    pg_replica_lag_bytes: Threshold = _level(16 * 1024**2, 256 * 1024**2, "Standby replay lag, bytes")
    pg_replica_lag_seconds: Threshold = _level(30, 300, "Standby replay lag, s")
    pg_cache_hit_ratio_min: Threshold = _level(0.95, 0.90, "Buffer cache hit ratio, 0 to 1 (lower is worse)")
    pg_xid_age: Threshold = _level(500_000_000, 1_000_000_000, "Age of the oldest transaction id (wraparound)")
    pg_database_size_ratio: Threshold = _level(0.7, 0.85, "Database size / volume size, 0 to 1")
    pg_dead_tuple_ratio: Threshold = _level(0.2, 0.4, "Dead tuples / live tuples of the worst table, 0 to 1")
    cron_overdue_minutes: Threshold = _level(30, 120, "Minutes the most overdue Odoo cron job is late")
    mail_exception_count: Threshold = _level(1, 100, "Outgoing mails in exception")
    redis_latency_ms: Threshold = _level(50, 250, "Redis PING time, ms")
    redis_memory_ratio: Threshold = _level(0.8, 0.95, "Redis used memory / maxmemory, 0 to 1")
    redis_evicted_keys: Threshold = _level(1, 10_000, "Keys Redis evicted (sessions lost)")
    redis_connected_clients: Threshold = _level(2000, 5000, "Redis client connections")
    s3_multipart_age_hours: Threshold = _level(1, float("inf"), "Age of the oldest unfinished multipart upload, h")
    host_cpu_percent: Threshold = _level(85, 95, "Host CPU use, percent 0 to 100")
    host_memory_ratio: Threshold = _level(0.85, 0.95, "Host memory in use, 0 to 1")
    host_load_per_core: Threshold = _level(1.5, 3.0, "Load average per core")
    disk_free_ratio_min: Threshold = _level(0.2, 0.1, "Free disk share, 0 to 1 (lower is worse)")

    @model_validator(mode="after")
    def _ordered(self) -> Health:
        problems = []
        for name in type(self).model_fields:
            level = getattr(self, name)
            if not isinstance(level, Threshold):
                continue
            for which in ("warn", "crit"):
                value = getattr(level, which)
                top = 1 if "_ratio" in name else 100 if name.endswith("_percent") else math.inf
                if math.isnan(value) or value < 0 or value > top:
                    bound = f"0 to {top:g}" if top != math.inf else "0 or more"
                    default = getattr(type(self).model_fields[name].default, which)
                    fix = "a ratio, e.g. 0.8 for 80%" if top == 1 else f"e.g. {default:g}"
                    problems.append(f"{name}.{which}: {value:g} is out of range: write {bound}, {fix}")
            lower_is_worse = name.endswith("_min")
            if (level.warn < level.crit) if lower_is_worse else (level.warn > level.crit):
                word = "above" if lower_is_worse else "below"
                problems.append(f"{name}: warn {level.warn:g} must be {word} crit {level.crit:g} "
                                f"({'lower' if lower_is_worse else 'higher'} is worse): swap or fix them")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Secrets(_Model):
    """Names of Pulumi secret config keys (`pulumi config set --secret <name> ...`), never values."""

    odoo_admin_password: str = Field(default="odooAdminPassword", description=(
        "Pulumi secret config key holding Odoo's admin (master) password"))
    s3_access_key_id: str | None = Field(default=None, description=(
        "s3-compatible: Pulumi secret config key of Odoo's S3 access key id"))
    s3_secret_access_key: str | None = Field(default=None, description=(
        "s3-compatible: Pulumi secret config key of Odoo's S3 secret access key"))
    backup_s3_access_key_id: str | None = Field(default=None, description=(
        "s3-compatible: Pulumi secret config key of CloudNativePG's own access key (backup bucket only)"))
    backup_s3_secret_access_key: str | None = Field(default=None, description=(
        "s3-compatible: Pulumi secret config key of CloudNativePG's own secret key (backup bucket only)"))
    redis_password: str | None = Field(default=None, description=(
        "redis.mode managed: Pulumi secret config key holding the managed Redis password"))


# --------------------------------------------------------------------------------------------
# The production shape: shared filestore and sessions, image, ingress, mail, metrics, CNPG
# --------------------------------------------------------------------------------------------

# Addons the images/odoo build installs (images/odoo/requirements-<series>.txt pins them)
OBJECT_STORAGE_ADDONS = ("fs_storage", "fs_attachment")
SESSION_DB_ADDON = "session_db"
SESSION_REDIS_ADDON = "session_redis"


class SharedVolume(_Model):
    storage_class: Subdomain("StorageClass name") = Field(description=(
        "StorageClass of the ReadWriteMany claim mounted at /var/lib/odoo in every web, cron and module "
        "Job pod (NFS, CephFS, EFS, Azure Files, Filestore...)"))
    size: StorageOf("1Gi", "50Gi") = Field(default="50Gi", description="Size of the ReadWriteMany claim")


class Filestore(_Model):
    """Where Odoo keeps attachments and HTTP sessions, shared by every pod that serves the database."""

    mode: Literal["pod-local", "shared-volume", "object-storage"] = Field(default="pod-local", description=(
        "pod-local: /var/lib/odoo on each pod (one web pod, no cron Deployment); shared-volume: one "
        "ReadWriteMany claim for filestore and sessions (works with the official image); object-storage: "
        "attachments in the filestore bucket (OCA fs_attachment) and sessions in PostgreSQL (OCA "
        "session_db) or Redis (session_redis), which the image must carry"))
    volume: SharedVolume | None = Field(default=None, description="The claim of mode shared-volume")
    sessions: Literal["filesystem", "database", "redis"] | None = Field(default=None, description=(
        "HTTP session store; default: filesystem (on the shared volume) for pod-local and shared-volume, "
        "database (session_db, in the HA PostgreSQL) for object-storage"))

    @property
    def session_store(self) -> str:
        if self.sessions:
            return self.sessions
        return "database" if self.mode == "object-storage" else "filesystem"


class ImageBuild(_Model):
    enabled: bool = Field(default=False, description=(
        "Build images/odoo FROM odoo.image (adds the pinned object-storage and session addons) and push it"))
    repository: str = Field(default="", max_length=255, pattern=r"^$|^[a-z0-9][a-z0-9._/:-]*[a-z0-9]$",
                            description="Registry repository the built image is pushed to, e.g. "
                                        "registry.example.com/acme/odoo")
    registry_username_key: str | None = Field(default=None, description=(
        "Pulumi secret config key holding the registry user; none uses the builder's own docker login"))
    registry_password_key: str | None = Field(default=None, description=(
        "Pulumi secret config key holding the registry password or token"))


class Image(_Model):
    """The Odoo image that runs: odoo.image as is, or built from it (build.enabled)."""

    build: ImageBuild = Field(default=ImageBuild(), description="Build and push images/odoo from odoo.image")
    addons: list[ModuleName] = Field(default=[], max_length=64, description=(
        "Modules a prebuilt odoo.image carries besides Odoo's own (e.g. fs_storage, fs_attachment, session_db); "
        "only these may be server-wide or installed by the module Job"))


class IngressSettings(_Model):
    body_size_mib: int = Field(default=100, ge=1, le=10240, description=(
        "Largest request body (upload, import) the ingress controller accepts, in MiB"))
    websocket_timeout_seconds: int = Field(default=3600, ge=60, le=86400, description=(
        "Idle read/send timeout of /websocket connections at the ingress controller"))


class OutgoingMail(_Model):
    host: Host("SMTP host", fqdn=False) = Field(description="SMTP server (odoo.conf smtp_server)")
    port: int = Field(default=587, ge=1, le=65535, description="SMTP port (smtp_port)")
    tls: Literal["starttls", "none"] = Field(default="starttls", description=(
        "starttls sets smtp_ssl = True (Odoo's config option means STARTTLS); SMTPS on 465 needs an "
        "ir.mail_server record instead"))
    user: str | None = Field(default=None, max_length=254, pattern=r"^\S+$", description="SMTP user (smtp_user)")
    password_key: str | None = Field(default=None, description=(
        "Pulumi secret config key holding the SMTP password (smtp_password, never in a ConfigMap)"))
    cidrs: list[Cidr] = Field(min_length=1, max_length=16, description=(
        "Addresses of the SMTP server: the egress policy opens the port to these only"))
    sink: bool = Field(default=False, description=(
        "The host is a mail catcher (Mailpit, MailHog) that delivers nothing: required outside prod"))


class IncomingMail(_Model):
    protocol: Literal["imap", "pop"] = Field(default="imap", description="Fetchmail protocol")
    host: Host("mail host", fqdn=False) = Field(description="Mail server Odoo fetches from")
    port: int = Field(default=993, ge=1, le=65535, description="Port (993 IMAPS, 995 POP3S)")
    cidrs: list[Cidr] = Field(min_length=1, max_length=16, description=(
        "Addresses of the mail server: the egress policy opens the port to these only"))


class Mail(_Model):
    outgoing: OutgoingMail | None = Field(default=None, description=(
        "Outgoing SMTP; none leaves Odoo unable to send (the egress policy blocks SMTP)"))
    incoming: list[IncomingMail] = Field(default=[], max_length=8, description=(
        "Mailboxes Odoo fetches (fetchmail.server records); prod only"))


class Monitoring(_Model):
    namespace: Label("namespace") | None = Field(default=None, description=(
        "Namespace of the Prometheus that scrapes CNPG (9187) and PgBouncer (9127); none admits no scrape"))
    pod_monitors: bool = Field(default=False, description=(
        "The Prometheus Operator CRDs are installed: create PodMonitor objects for the exporters"))
    scrape_odoo_health: bool = Field(default=False, description=(
        "Also admit the monitoring namespace to Odoo's /web/health on 8069 (a blackbox probe)"))


class CloudNativePG(_Model):
    image: str | None = Field(default=None, max_length=255, pattern=r"^[a-z0-9][a-z0-9._/:@-]*$", description=(
        "PostgreSQL image of the Cluster; none uses erpops' pinned ghcr.io/cloudnative-pg/postgresql tag"))
    operator_chart_version: str | None = Field(default=None, pattern=r"^\d+\.\d+\.\d+$", description=(
        "cloudnative-pg Helm chart version when kubernetes.install_cnpg_operator; none uses the pinned one"))


class DrillCluster(_Model):
    """The drill's own small CloudNativePG cluster (drill.target: cluster): one instance, no backups of its own."""

    cpu: CpuOf("250m", "1") = Field(default="1", description="CPU request and limit of its one instance")
    memory: PodMemory = Field(default="2Gi", description="Memory request and limit of its one instance")
    storage: StorageOf("1Gi", "50Gi") = Field(default="50Gi", description=(
        "Its volume: room for one restored copy of the live database (and its WAL) at a time"))


class Drill(_Model):
    """`erpops drill` as a CronJob of the stack: its newest backup restored, checked and dropped on a schedule."""

    enabled: bool = Field(default=False, description="Render the drill CronJob (on by default in prod)")
    image: str | None = Field(default=None, description=(
        "The erpops image (images/erpops) by dated tag or digest, e.g. "
        "registry.example.com/acme/erpops:0.1.0-20261203"))
    schedule: Cron = Field(default="30 5 * * *", description="5-field cron, after backup.schedule has finished")
    deadline_minutes: int = Field(default=180, ge=10, le=1440, description=(
        "activeDeadlineSeconds of the Job; a marked scratch database older than this is dropped by the next run"))
    resources: Resources = Field(default=Resources(cpu="1", memory="1Gi"), description="Requests = limits")
    scratch_size: StorageOf("1Gi", "20Gi") = Field(default="20Gi", description=(
        "emptyDir for the dump and the filestore copy"))
    pushgateway: str | None = Field(default=None, max_length=255, description=(
        "Pushgateway URL the metrics are pushed to (required when enabled), e.g. http://pushgateway.monitoring.svc:9091"))
    no_success_hours: int = Field(default=26, ge=1, description="Alert when no drill passed for this long")
    s3_access_key_id_key: str | None = Field(default=None, description=(
        "s3-compatible: Pulumi secret config key of the drill's own key (read-only on the backup bucket)"))
    s3_secret_access_key_key: str | None = Field(default=None, description=(
        "s3-compatible: Pulumi secret config key of the drill's own secret key"))
    target: Literal["server", "cluster"] = Field(default="server", description=(
        "Where the set is restored: server, a scratch database on the stack's own PostgreSQL; cluster, the "
        "drill's own small CloudNativePG cluster (drill.cluster), so a drill never loads the live server"))
    cluster: DrillCluster = Field(default=DrillCluster(), description="The scratch cluster of drill.target: cluster")
    odoo_login: bool = Field(default=True, description=(
        "Log in to the restored copy as a drill user through the stack's own Odoo image, run as a sidecar of the "
        "drill on 127.0.0.1 (no workers, no cron, dbfilter on the scratch database only)"))
    odoo_resources: Resources = Field(default=Resources(cpu="1", memory="1536Mi"), description=(
        "Requests = limits of the Odoo sidecar (drill.odoo_login); Odoo loads the copy's registry on the login"))

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        return None if v is None else Odoo._image(v)

    @field_validator("pushgateway")
    @classmethod
    def _pushgateway(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"https?://[a-z0-9.-]+(:\d{1,5})?/?", v):
            raise ValueError(f"{v!r} is not a Pushgateway base URL: write it as http(s)://host[:port], e.g. "
                             "http://pushgateway.monitoring.svc:9091 (no path)")
        return v


class Spec(_Model):
    tier: Tier = Field(description=(
        "dev, staging or prod: picks the defaults and the checks; a stack named after a tier must declare it"))
    kubernetes: Kubernetes = Field(description="Cluster, storage and ingress")
    odoo: Odoo = Field(description="Odoo: version, image, web and cron pods")
    postgres: Postgres = Field(description="The CloudNativePG cluster")
    pooler: Pooler = Field(default=Pooler(), description="PgBouncer in front of PostgreSQL")
    redis: Redis = Field(default=Redis(), description="Redis for HTTP sessions")
    object_storage: ObjectStorage = Field(description="Filestore and backup buckets")
    backup: Backup = Field(default=Backup(), description="Base backup schedule, retention and objectives")
    slo: Slo = Field(default=Slo(), description="Service level objectives the load-test gate enforces")
    health: Health = Field(default=Health(), description="warn/crit levels of erpops health")
    secrets: Secrets = Field(default=Secrets(), description="Names of Pulumi secret config keys, never values")
    filestore: Filestore = Field(default=Filestore(), description="Shared filestore and session store")
    image: Image = Field(default=Image(), description="The Odoo image: built from odoo.image or prebuilt")
    ingress: IngressSettings = Field(default=IngressSettings(), description="Ingress controller settings")
    mail: Mail = Field(default=Mail(), description="Outgoing SMTP and incoming mailboxes")
    monitoring: Monitoring = Field(default=Monitoring(), description="Scrapes of the exporters")
    cnpg: CloudNativePG = Field(default=CloudNativePG(), description="CloudNativePG image and operator chart")
    drill: Drill = Field(default=Drill(), description="The scheduled restore drill (erpops drill)")

    @property
    def web_replicas_max(self) -> int:
        a = self.odoo.web.autoscale
        return max(self.odoo.web.replicas, a.max_replicas) if a.enabled else self.odoo.web.replicas


# --------------------------------------------------------------------------------------------
# Tier defaults: dev small, staging like prod but smaller, prod highly available
# --------------------------------------------------------------------------------------------

_DEFAULTS: dict[str, dict[str, Any]] = {
    "dev": {
        "odoo": {"web": {"replicas": 1, "cpu": "1", "memory": "2Gi"},
                 "cron": {"replicas": 1, "threads": 1, "cpu": "500m", "memory": "1Gi"}},
        "postgres": {"instances": 1, "cpu": "1", "memory": "1Gi", "storage": "10Gi"},
        "pooler": {"instances": 1},
        "redis": {"enabled": False, "memory": "128Mi", "persistence": False},
        "backup": {"retention": {"daily": 3, "weekly": 0, "monthly": 0}, "rpo_minutes": 1440,
                   "rto_minutes": 480},
    },
    "staging": {
        "odoo": {"web": {"replicas": 2, "cpu": "2", "memory": "4Gi"},
                 "cron": {"replicas": 1, "threads": 2, "cpu": "1", "memory": "2Gi"}},
        "postgres": {"instances": 2, "cpu": "2", "memory": "4Gi", "storage": "50Gi"},
        "pooler": {"instances": 2},
        "redis": {"enabled": False, "memory": "256Mi", "persistence": True},
        "backup": {"retention": {"daily": 7, "weekly": 4, "monthly": 0}, "rpo_minutes": 1440,
                   "rto_minutes": 240},
    },
    "prod": {
        "odoo": {"web": {"replicas": 3, "cpu": "2", "memory": "4Gi",
                         "autoscale": {"enabled": True, "min_replicas": 3, "max_replicas": 6}},
                 "cron": {"replicas": 1, "threads": 2, "cpu": "1", "memory": "2Gi"}},
        "postgres": {"instances": 3, "cpu": "4", "memory": "16Gi", "storage": "200Gi"},
        "pooler": {"instances": 2},
        "redis": {"enabled": False, "memory": "1Gi", "persistence": True},
        "backup": {"retention": {"daily": 14, "weekly": 8, "monthly": 12}, "rpo_minutes": 60,
                   "rto_minutes": 120},
        "drill": {"enabled": True},
    },
}


def tier_defaults(tier: str) -> dict[str, Any]:
    return copy.deepcopy(_DEFAULTS[tier])


def _merge(base: Any, over: Any) -> Any:
    """`over` laid on `base`: dicts merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = _merge(base.get(key), value) if key in base else value
        return out
    return over


# --------------------------------------------------------------------------------------------
# Errors: pydantic's to ours, each with key path and fix
# --------------------------------------------------------------------------------------------

def _path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif item in ("function-after", "function-before") or str(item).startswith(("function-", "literal[")):
            continue
        elif item == "[key]":
            parts[-1:] = [f"{parts[-1]} (key)"] if parts else ["(key)"]
        else:
            parts.append(str(item))
    return ".".join(parts)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):  # X | None
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    current: Any = model
    for item in loc[:-1]:
        if isinstance(item, int) or current is None:
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or item not in fields:
            return None
        current = _model_of(fields[item].annotation)
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields else None


def _field_info(model: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    """The FieldInfo at `loc` (list indexes and dict keys skipped), or None."""
    current: Any = model
    info = None
    for item in loc:
        fields = getattr(current, "model_fields", None)
        if isinstance(item, int) or not fields:
            continue
        if item not in fields:
            return None
        info = fields[item]
        current = _model_of(info.annotation) or _model_of(next(iter(getattr(info.annotation, "__args__", ())), None))
    return info


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# Field patterns in words, with an example: no regular expression is ever the whole fix
_PATTERN_WORDS: dict[str, tuple[str, str]] = {
    _HOST: ("a host name: lowercase letters, digits and '-' between dots", "smtp.example.com"),
    _CIDR: ("an IPv4 network in CIDR form", "203.0.113.25/32"),
    r"^\S+$": ("a value without spaces", "prod-cluster"),
    r"^$|^[a-z_][a-z0-9_]{0,62}$": ("a PostgreSQL name: lowercase letters, digits and '_', not starting with a "
                                    "digit, at most 63 characters", "odoo_prod"),
    r"^$|^[a-z0-9][a-z0-9._/:-]*[a-z0-9]$": ("a registry repository: lowercase host/path, e.g. "
                                             "registry.example.com/acme/odoo", "registry.example.com/acme/odoo"),
    r"^[a-z]{2}(-[a-z0-9]+){1,3}$|^[a-z0-9-]{1,40}$": ("a region name of lowercase letters, digits and '-'",
                                                       "eu-west-1"),
    r"^[a-z0-9][a-z0-9._/:@-]*$": ("an image reference in lowercase, repository:tag or repository@sha256:...",
                                   "ghcr.io/cloudnative-pg/postgresql:15.18"),
    r"^\d+\.\d+\.\d+$": ("a chart version MAJOR.MINOR.PATCH", "0.29.0"),
    r"^https?://[a-z0-9.-]+(:\d{1,5})?/?$": ("an http(s) URL of a host and an optional port, no path",
                                           "http://pushgateway.monitoring.svc:9091"),
}
PATTERN_WORDS = _PATTERN_WORDS  # public: the spec docs generator (erpops.specdocs) words patterns the same way


def _pydantic_problems(exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        path = _path(loc)
        kind = err["type"]
        got = err.get("input")
        shown = _show(got)
        ctx = err.get("ctx", {})
        if kind == "extra_forbidden":
            allowed = _allowed_keys(Spec, loc)
            hint = f" (allowed here: {', '.join(allowed)})" if allowed else ""
            msg = f"unknown key: remove it or fix its spelling{hint}"
        elif kind == "missing":
            info = _field_info(Spec, loc)
            msg = "required: add this key to the spec" + (f" ({info.description})" if info and info.description
                                                           else "")
        elif kind == "literal_error":
            expected = ctx.get("expected", "")
            msg = f"{shown} is not allowed: use one of {expected}"
            if isinstance(got, int | float) and not isinstance(got, bool) and f"'{got}'" in expected:
                msg += f" (quoted: YAML reads {got} as a number)"
        elif kind in ("int_parsing", "int_type", "int_from_float"):
            msg = f"{shown} is not an integer: write a whole number, e.g. 2"
        elif kind in ("float_parsing", "float_type", "finite_number"):
            msg = f"{shown} is not a number: write a finite number, e.g. 0.5"
        elif kind in ("bool_parsing", "bool_type"):
            msg = f"{shown} is not a boolean: write true or false"
        elif kind in ("string_type",):
            msg = f"{shown} is not a string: quote it, e.g. \"{got}\""
        elif kind in ("dict_type", "model_type", "model_attributes_type"):
            msg = f"expected a mapping of keys, got {type(got).__name__}: indent the keys under it"
        elif kind in ("list_type", "tuple_type"):
            msg = f"expected a list, got {type(got).__name__}: write it as [a, b]"
        elif kind in ("too_short", "too_long"):
            bound = ctx.get("max_length") if kind == "too_long" else ctx.get("min_length")
            word = "at most" if kind == "too_long" else "at least"
            msg = f"has {ctx.get('actual_length', '?')} items: give {word} {bound}"
        elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
            bound = next(iter(ctx.values()), "")
            word = {"greater_than_equal": "at least", "greater_than": "more than",
                    "less_than_equal": "at most", "less_than": "less than"}[kind]
            msg = f"{shown} is out of range: set it to {word} {bound}"
        elif kind == "string_pattern_mismatch":
            words, example = _PATTERN_WORDS.get(ctx.get("pattern", ""), ("the documented form", ""))
            msg = f"{shown} has the wrong form: write {words}" + (f", e.g. {example}" if example else "")
        elif kind == "string_too_short":
            msg = "is empty: give it a value"
        elif kind == "string_too_long":
            msg = f"{shown} is too long: at most {ctx.get('max_length')} characters"
        elif kind == "value_error":
            msg = str(ctx["error"]) if "error" in ctx else err["msg"]
        else:
            msg = f"{err['msg']} (got {shown})"
        problems.append((path, msg))
    return problems


# --------------------------------------------------------------------------------------------
# Secrets: the spec holds names of Pulumi config keys, never values; no field holds a credential
# --------------------------------------------------------------------------------------------

_SECRET_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


def _looks_like_secret(value: str) -> bool:
    if not _SECRET_NAME.match(value):
        return True
    classes = sum(bool(re.search(p, value)) for p in (r"[a-z]", r"[A-Z]", r"\d"))
    digits = sum(c.isdigit() for c in value)
    # key names are words; a long mixed-case string heavy with digits is a pasted token
    return len(value) >= 20 and classes == 3 and digits >= 4


def _secret_problems(raw: dict[str, Any]) -> list[Problem]:
    """Checked on the raw spec, so a pasted credential is reported even beside other errors."""
    problems: list[Problem] = []
    secrets = raw.get("secrets") if isinstance(raw.get("secrets"), dict) else {}
    pasted = dict(pasted_credentials(raw))
    # every field that names a Pulumi secret config key: secrets.*, and elsewhere the *_key fields
    # (mail.outgoing.password_key, image.build.registry_*_key, drill.s3_*_key)
    key_fields = [(f"secrets.{name}", str(name), value) for name, value in secrets.items()]
    key_fields += [(path, path.rsplit(".", 1)[-1].removesuffix("_key"), value) for path, value in strings(raw)
                   if path.endswith("_key") and not path.startswith("secrets.") and raw_at(raw, path) == value]
    for path, name, value in key_fields:
        if isinstance(value, str) and (_looks_like_secret(value) or path in pasted):
            problems.append((
                path,
                "holds what looks like a secret value, not the name of a Pulumi config key: remove it "
                f"from the file, run `pulumi config set --secret {_default_key(name)} <value>` and write "
                f"{_default_key(name)} here",
            ))
    storage = raw.get("object_storage") if isinstance(raw.get("object_storage"), dict) else {}
    endpoint = str(storage.get("endpoint") or "")
    if re.match(r"^[a-z]+://[^/]*:[^/]*@", endpoint):
        problems.append(("object_storage.endpoint",
                         "contains credentials in the URL: remove user:password@ and name the keys in "
                         "secrets.s3_access_key_id and secrets.s3_secret_access_key"))
        pasted.pop("object_storage.endpoint", None)
    named = {path for path, _, _ in key_fields}
    for path, what in pasted.items():
        if path in named:
            continue
        problems.append((path, f"holds what looks like {what}: a credential in the spec would be written to "
                               "ConfigMaps, Helm values, inventories and the render; remove it, store it with "
                               "`pulumi config set --secret <name> <value>` and name <name> under secrets"))
    return problems


def _default_key(field_name: str) -> str:
    head, *rest = field_name.split("_")
    return head + "".join(p.title() for p in rest)


# --------------------------------------------------------------------------------------------
# Semantic checks: one list of rules, run by every entry point (validate, render, size, patch,
# health, loadtest, the inventory and the Pulumi program). A new rule is a function taking the
# Context and returning (key path, message) pairs, registered with @rule.
# --------------------------------------------------------------------------------------------

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
Problem = tuple[str, str]


@dataclass(frozen=True)
class Context:
    """What a rule sees: this stack's spec, and the other stacks' raw specs (tier defaults laid under)."""

    stack: str
    spec: Spec
    siblings: dict[str, dict[str, Any]]

    @property
    def database(self) -> str:
        return self.spec.odoo.database or f"odoo_{self.stack.replace('-', '_')}"


RULES: list[Callable[[Context], list[Problem]]] = []


def rule(check: Callable[[Context], list[Problem]]) -> Callable[[Context], list[Problem]]:
    RULES.append(check)
    return check


@dataclass(frozen=True)
class Sized:
    """A validated spec with everything derived from it."""

    stack: str
    spec: Spec
    odoo: sizing.OdooSizing
    budget: sizing.ConnectionBudget
    postgres: list[sizing.Setting]

    @property
    def namespace(self) -> str:
        return f"erpops-{self.stack}"

    @property
    def database(self) -> str:
        return self.spec.odoo.database or f"odoo_{self.stack.replace('-', '_')}"

    def pg_parameters(self) -> dict[str, str]:
        return {s.name: s.conf for s in self.postgres}


@rule
def _sizing_ha_and_storage(ctx: Context) -> list[Problem]:
    spec = ctx.spec
    problems: list[Problem] = []
    web, pg, pooler = spec.odoo.web, spec.postgres, spec.pooler

    if pg.memory_mib < PG_MIN_MEMORY_MIB:
        problems.append(("postgres.memory",
                         f"{pg.memory} is below PostgreSQL's {PG_MIN_MEMORY_MIB} MB minimum: set postgres.memory "
                         f"to at least {PG_MIN_MEMORY_MIB}Mi"))
    if pg.cores < 0.5:
        problems.append(("postgres.cpu", f"{pg.cpu} is too little for PostgreSQL: set postgres.cpu to at least 500m"))

    _, by_memory = sizing.odoo_worker_limits(web.cores, web.memory_mib)
    if by_memory < 1:
        need = math.ceil(2 * sizing.WORKER_MIB)
        problems.append(("odoo.web.memory",
                         f"{web.memory} cannot hold one Odoo worker and the gevent process "
                         f"({need}MiB at Odoo's 80% light / 20% heavy mix): raise odoo.web.memory to "
                         f"at least {math.ceil(need / 256) * 256}Mi"))
    elif web.workers is not None and web.workers > by_memory:
        need_mib = math.ceil((web.workers + 1) * sizing.WORKER_MIB)
        problems.append(("odoo.web.workers",
                         f"{web.workers} workers need about {need_mib}MiB with the gevent process, but "
                         f"odoo.web.memory is {web.memory}: raise odoo.web.memory to "
                         f"{math.ceil(need_mib / 1024)}Gi or lower odoo.web.workers to {by_memory}"))

    if spec.tier == "prod":
        if pg.instances < 3:
            problems.append(("postgres.instances",
                             f"{pg.instances} is not highly available for prod: set postgres.instances to 3 "
                             "(one primary, two standbys)"))
        if web.replicas < 2:
            problems.append(("odoo.web.replicas",
                             f"{web.replicas} is a single point of failure in prod: set odoo.web.replicas to "
                             "at least 2"))
        if pooler.instances < 2:
            problems.append(("pooler.instances", f"{pooler.instances} is a single point of failure in prod: "
                                                 "set pooler.instances to at least 2"))
    tag = re.search(r":(\d+\.\d)(?:[-.]|$)", spec.odoo.image.split("@")[0].rsplit("/", 1)[-1])
    if tag and tag.group(1) != spec.odoo.version:
        problems.append(("odoo.image",
                         f"tag {tag.group(1)} does not match odoo.version {spec.odoo.version}: use an "
                         f"odoo:{spec.odoo.version}-... image or set odoo.version to {tag.group(1)}"))
    a = web.autoscale
    if a.enabled and a.min_replicas > a.max_replicas:
        problems.append(("odoo.web.autoscale.min_replicas",
                         f"{a.min_replicas} is above max_replicas {a.max_replicas}: lower min_replicas or "
                         "raise max_replicas"))

    storage = spec.object_storage
    if storage.mode == "s3-compatible":
        if not storage.endpoint:
            problems.append(("object_storage.endpoint",
                             "required when mode is s3-compatible: set it to the S3 URL, e.g. "
                             "https://minio.example.com"))
        for key in ("s3_access_key_id", "s3_secret_access_key"):
            if getattr(spec.secrets, key) is None:
                problems.append((f"secrets.{key}",
                                 "required when object_storage.mode is s3-compatible: name the Pulumi secret "
                                 f"config key, e.g. {_default_key(key)}"))
    elif storage.endpoint:
        problems.append(("object_storage.endpoint",
                         "is only for mode s3-compatible: remove it, or set object_storage.mode to "
                         "s3-compatible"))
    if storage.endpoint and not re.match(r"^https?://[^\s/]+(/\S*)?$", storage.endpoint):
        problems.append(("object_storage.endpoint", f"{storage.endpoint!r} is not a URL: write it as "
                                                    "https://host[:port]"))
    for key in ("filestore_bucket", "backup_bucket"):
        name = getattr(storage, key)
        if not _BUCKET.match(name):
            problems.append((f"object_storage.{key}",
                             f"{name!r} is not a valid S3 bucket name: use 3-63 lowercase letters, digits, "
                             "dots or hyphens"))
    if storage.filestore_bucket == storage.backup_bucket:
        problems.append(("object_storage.backup_bucket",
                         "is the same bucket as the filestore: backups must live apart from what they "
                         "protect; name another bucket"))

    return problems


# Modules the images/odoo build adds, per Odoo series (images/odoo/requirements-<series>.txt pins them;
# a test keeps the two equal). A series without a pinned set cannot be built. 16.0 has none: every OCA
# 16.0 release of fs_storage/fs_attachment on PyPI declares Requires-Python >=3.10, and the official
# odoo:16.0 image runs Debian bullseye's Python 3.9, so pip would refuse them there.
UNBUILDABLE_SERIES = {"16.0": "OCA's 16.0 fs_storage/fs_attachment wheels require Python >= 3.10 and the "
                              "official odoo:16.0 image runs Python 3.9 (Debian bullseye)"}
BUILT_ADDONS: dict[str, tuple[str, ...]] = {
    series: (*OBJECT_STORAGE_ADDONS, SESSION_DB_ADDON) for series in ("17.0", "18.0")}


def image_addons(spec: Spec) -> tuple[str, ...]:
    """The non-core modules the image that runs is known to carry."""
    if spec.image.build.enabled:
        return BUILT_ADDONS.get(spec.odoo.version, ())
    return tuple(spec.image.addons)


def shape_problems(spec: Spec) -> list[tuple[str, str]]:
    """The production shape: every pod shares filestore and sessions, with addons the image carries."""
    problems: list[tuple[str, str]] = []
    fs, build, redis = spec.filestore, spec.image.build, spec.redis
    addons = set(image_addons(spec))
    pods = spec.web_replicas_max
    if fs.mode == "pod-local" and (pods > 1 or spec.odoo.cron.replicas > 0):
        what = f"up to {pods} web pods" if pods > 1 else "a cron Deployment beside the web pod"
        problems.append(("filestore.mode",
                         f"pod-local, but Odoo runs {what}: each pod would keep its own attachments and "
                         "sessions; set filestore.mode to shared-volume (with filestore.volume.storage_class "
                         "of a ReadWriteMany class) or object-storage"))
    if fs.mode == "shared-volume" and fs.volume is None:
        problems.append(("filestore.volume",
                         "required when filestore.mode is shared-volume: set filestore.volume.storage_class to "
                         "a ReadWriteMany StorageClass (NFS, CephFS, EFS, Azure Files)"))
    if fs.mode != "shared-volume" and fs.volume is not None:
        problems.append(("filestore.volume", f"is only for mode shared-volume, not {fs.mode}: remove it"))
    if fs.mode == "object-storage":
        missing = [a for a in OBJECT_STORAGE_ADDONS if a not in addons]
        if missing:
            problems.append(("filestore.mode",
                             f"object-storage needs {', '.join(missing)} in the image, but {spec.odoo.image} is "
                             "not known to carry them: set image.build.enabled to true (images/odoo adds them) or "
                             "list the addons a prebuilt odoo.image carries in image.addons"))
        if fs.session_store == "filesystem" and (pods > 1 or spec.odoo.cron.replicas > 0):
            problems.append(("filestore.sessions",
                             "filesystem sessions would stay on each pod: set filestore.sessions to database "
                             "(session_db) or redis (session_redis)"))
    store = fs.session_store
    if store == "database" and SESSION_DB_ADDON not in addons:
        problems.append(("filestore.sessions",
                         f"database needs the {SESSION_DB_ADDON} addon in the image: set image.build.enabled to "
                         f"true or add {SESSION_DB_ADDON} to image.addons of a prebuilt image"))
    if store == "redis":
        if SESSION_REDIS_ADDON not in addons:
            problems.append(("filestore.sessions",
                             f"redis needs the {SESSION_REDIS_ADDON} addon in the image: add it to image.addons "
                             "of a prebuilt image, or use filestore.sessions database"))
        if not redis.enabled:
            problems.append(("redis.enabled", "false, but filestore.sessions is redis: set redis.enabled to true"))
    elif redis.enabled:
        problems.append(("redis.enabled",
                         f"true, but sessions are stored in the {store}: nothing would use Redis; set "
                         "redis.enabled to false or filestore.sessions to redis"))
    if redis.enabled and spec.tier == "prod" and redis.mode == "in-cluster":
        problems.append(("redis.mode",
                         "in-cluster runs one Redis pod, a single point of failure for every prod session: set "
                         "redis.mode to managed (with redis.endpoint and redis.cidrs of a replicated service) "
                         "or filestore.sessions to database"))
    if redis.mode == "managed":
        for key, value in (("redis.endpoint", redis.endpoint), ("redis.cidrs", redis.cidrs),
                           ("secrets.redis_password", spec.secrets.redis_password)):
            if not value:
                problems.append((key, "required when redis.mode is managed: name the managed endpoint, its "
                                      "addresses and the Pulumi secret config key of its password"))
    elif redis.endpoint or redis.cidrs:
        problems.append(("redis.endpoint", "is only for redis.mode managed: remove redis.endpoint and redis.cidrs"))
    if build.enabled:
        if spec.odoo.version not in BUILT_ADDONS:
            problems.append(("image.build.enabled",
                             f"images/odoo has no pinned addon set for Odoo {spec.odoo.version} (only "
                             f"{', '.join(BUILT_ADDONS)}"
                             + (f"; {UNBUILDABLE_SERIES[spec.odoo.version]}" if spec.odoo.version in
                                UNBUILDABLE_SERIES else "")
                             + f"): add images/odoo/requirements-{spec.odoo.version}.txt for a base image that "
                             "can run them, or use a prebuilt image with image.addons, or filestore.mode "
                             "shared-volume with the official image"))
        if not build.repository:
            problems.append(("image.build.repository",
                             "required when image.build.enabled: name the registry repository to push to, e.g. "
                             "registry.example.com/acme/odoo"))
        if spec.image.addons:
            problems.append(("image.addons", "the built image carries images/odoo's addons: remove image.addons "
                                             "or set image.build.enabled to false"))
        if bool(build.registry_username_key) != bool(build.registry_password_key):
            problems.append(("image.build.registry_password_key",
                             "name both registry_username_key and registry_password_key, or neither"))
    not_in_image = [m for m in spec.odoo.modules if m in (*OBJECT_STORAGE_ADDONS, SESSION_DB_ADDON,
                                                          SESSION_REDIS_ADDON) and m not in addons]
    if not_in_image:
        problems.append(("odoo.modules", f"{', '.join(not_in_image)} not in the image: remove them or declare "
                                         "them in image.addons"))
    if spec.kubernetes.ingress_class != "nginx":
        problems.append(("kubernetes.ingress_class",
                         f"{spec.kubernetes.ingress_class!r}: erpops sets Odoo's body size and timeouts for "
                         "ingress-nginx only; use nginx (other controllers would cut uploads and long requests)"))
    mail = spec.mail
    if spec.tier != "prod":
        if mail.outgoing and not mail.outgoing.sink:
            problems.append(("mail.outgoing.sink",
                             f"{spec.tier} keeps mail neutralized: point mail.outgoing at a mail catcher and set "
                             "sink to true, or remove mail.outgoing"))
        if mail.incoming:
            problems.append(("mail.incoming", f"{spec.tier} must not fetch real mailboxes (it would take prod's "
                                              "mail): remove mail.incoming"))
    if mail.outgoing and mail.outgoing.password_key and not mail.outgoing.user:
        problems.append(("mail.outgoing.user", "required with mail.outgoing.password_key: name the SMTP user"))
    if spec.monitoring.pod_monitors and not spec.monitoring.namespace:
        problems.append(("monitoring.namespace", "required with monitoring.pod_monitors: name Prometheus' namespace"))
    drill_keys = ("s3_access_key_id_key", "s3_secret_access_key_key") \
        if spec.drill.enabled and spec.object_storage.mode == "s3-compatible" else ()
    for key in (("image", "pushgateway", *drill_keys) if spec.drill.enabled else ()):
        if not getattr(spec.drill, key):
            problems.append((f"drill.{key}", "required when drill.enabled (on by default in prod): " + (
                "name the erpops image (images/erpops) by dated tag or digest" if key == "image" else
                "give the Pushgateway URL of the drill metrics, e.g. http://pushgateway.monitoring.svc:9091"
                if key == "pushgateway" else "name the Pulumi secret config key of the drill's own S3 key, "
                "read-only on the backup bucket")
                + ", or set drill.enabled to false"))
    storage, secrets = spec.object_storage, spec.secrets
    backup_keys = (secrets.backup_s3_access_key_id, secrets.backup_s3_secret_access_key)
    if storage.mode == "s3-compatible" and fs.mode == "object-storage":
        if not all(backup_keys):
            problems.append(("secrets.backup_s3_access_key_id",
                             "required when Odoo keeps attachments in s3-compatible storage: CloudNativePG needs "
                             "its own key limited to the backup bucket; name both backup_s3_* config keys"))
        elif set(backup_keys) & {secrets.s3_access_key_id, secrets.s3_secret_access_key}:
            problems.append(("secrets.backup_s3_access_key_id",
                             "names the same config key as Odoo's: give CloudNativePG a key of its own"))
    if storage.mode == "aws" and any(backup_keys):
        problems.append(("secrets.backup_s3_access_key_id", "is only for s3-compatible: mode aws creates both "
                                                            "IAM users; remove it"))
    return problems


def _budget_problems(spec: Spec, odoo: sizing.OdooSizing,
                     b: sizing.ConnectionBudget) -> list[tuple[str, str]]:
    problems = []
    web_conns = b.web_processes * b.db_maxconn
    if b.client_connections > spec.pooler.max_client_conn:
        n = spec.web_replicas_max
        workers = f"{n} replica{'s' if n != 1 else ''} x ({odoo.workers} workers + 1 gevent)"
        problems.append((
            "odoo.web.workers",
            f"{workers} x db_maxconn {b.db_maxconn} = {web_conns} connections from web "
            f"({b.client_connections} with cron and headroom), but pooler.max_client_conn is "
            f"{spec.pooler.max_client_conn}: raise pooler.max_client_conn to {b.client_connections} or "
            "lower odoo.web.workers or odoo.db_maxconn",
        ))
    if b.server_connections < b.client_connections:
        need = math.ceil(b.client_connections / b.pooler_instances)
        problems.append((
            "pooler.default_pool_size",
            f"{b.pool_size} x {b.pooler_instances} poolers = {b.server_connections} server connections, "
            f"but in session mode Odoo may hold {b.client_connections}: raise pooler.default_pool_size "
            f"to {need} or lower odoo.db_maxconn",
        ))
    needed = sizing.required_max_connections(b)
    if b.max_connections < needed:
        problems.append((
            "postgres.max_connections",
            f"{b.max_connections} is below the {needed} the pooler and direct clients need "
            f"({b.server_connections} pooled + {b.direct_connections} direct + {b.reserved} reserved): "
            f"raise postgres.max_connections to {needed} or remove it to have it computed",
        ))
    return problems


@rule
def _shape(ctx: Context) -> list[Problem]:
    return shape_problems(ctx.spec)


@rule
def _pods(ctx: Context) -> list[Problem]:
    """Workers within what the pod's CPU can run, and pods that can start at all."""
    problems: list[Problem] = []
    web, cron = ctx.spec.odoo.web, ctx.spec.odoo.cron
    by_cpu, _ = sizing.odoo_worker_limits(web.cores, web.memory_mib)
    if web.workers is not None and web.workers > 2 * by_cpu:
        problems.append(("odoo.web.workers",
                         f"{web.workers} workers on {web.cpu} CPU: Odoo's deploy guide sizes (2 x CPU) + 1 = "
                         f"{by_cpu}, and more than twice that leaves each request too little CPU (they hit "
                         f"limit_time_cpu); lower odoo.web.workers to {by_cpu} or raise odoo.web.cpu to "
                         f"{math.ceil((web.workers - 1) / 2)}"))
    if cron.replicas and cron.memory_mib < 512:
        problems.append(("odoo.cron.memory", f"{cron.memory} cannot run Odoo's cron process (about "
                                              f"{math.ceil(sizing.WORKER_MIB)}MiB plus its threads): set "
                                              "odoo.cron.memory to at least 512Mi, e.g. 1Gi"))
    if cron.replicas and cron.cores < 0.1:
        problems.append(("odoo.cron.cpu", f"{cron.cpu} is too little for the cron pod: set at least 100m, "
                                          "e.g. 500m"))
    if web.cores < 0.25:
        problems.append(("odoo.web.cpu", f"{web.cpu} is too little for an Odoo web pod: set at least 250m, "
                                         "e.g. 1"))
    return problems


@rule
def _program_constraints(ctx: Context) -> list[Problem]:
    """What the Pulumi program cannot build safely (these ran only inside it before)."""
    problems: list[Problem] = []
    spec = ctx.spec
    ingress_ns = spec.kubernetes.ingress_namespace
    if ingress_ns.startswith("erpops-") or ingress_ns in ("", CNPG_NAMESPACE, "kube-system"):
        problems.append(("kubernetes.ingress_namespace",
                         f"{ingress_ns!r} is not an ingress controller namespace: a NetworkPolicy admitting it "
                         "would open this environment to another one; set it to the namespace of your ingress "
                         "controller, e.g. ingress-nginx"))
    monitoring_ns = spec.monitoring.namespace
    if monitoring_ns and (monitoring_ns.startswith("erpops-") or monitoring_ns in (CNPG_NAMESPACE, "kube-system")):
        problems.append(("monitoring.namespace",
                         f"{monitoring_ns!r} is not a monitoring namespace: a policy admitting it would open this "
                         "environment to another workload; name Prometheus' namespace, e.g. monitoring"))
    if spec.postgres.major_version not in PG_MINOR and not spec.cnpg.image:
        problems.append(("postgres.major_version",
                         f"{spec.postgres.major_version} has no pinned image: use one of "
                         f"{', '.join(map(str, PG_MINOR))}, or name the image in cnpg.image"))
    if spec.kubernetes.tls_secret and spec.kubernetes.tls_secret.startswith("erpops-"):
        problems.append(("kubernetes.tls_secret", f"{spec.kubernetes.tls_secret!r} collides with the names "
                                                  "erpops gives its own Secrets: name it after the host, e.g. "
                                                  f"{suggest_label(spec.kubernetes.host)}-tls"))
    return problems


@rule
def _dbfilter(ctx: Context) -> list[Problem]:
    """Odoo's http.db_filter: %h is the host without www., %d its first label, then re.match per database."""
    dbfilter = ctx.spec.odoo.dbfilter
    if not dbfilter:
        return []
    host = ctx.spec.kubernetes.host.removeprefix("www.")
    domain = host.partition(".")[0]
    expr = dbfilter.replace("%h", re.escape(host)).replace("%d", re.escape(domain))
    db = ctx.database
    try:
        matches = re.compile(expr).match(db)
    except (re.error, RecursionError, OverflowError) as exc:
        return [("odoo.dbfilter", f"{dbfilter!r} is not a valid regular expression ({exc}): Odoo would fail "
                                  f"on every request; write e.g. ^{db}$")]
    if not matches:
        return [("odoo.dbfilter", f"{dbfilter!r} does not match the stack's database {db!r} (with %h = {host}, "
                                  f"%d = {domain}): Odoo would offer no database; write ^{db}$ or remove it")]
    return []


@rule
def _backups(ctx: Context) -> list[Problem]:
    """RPO against WAL archiving, and the base backup schedule against what runs on it."""
    problems: list[Problem] = []
    backup = ctx.spec.backup
    if backup.rpo_minutes < WAL_ARCHIVE_TIMEOUT_MINUTES:
        problems.append(("backup.rpo_minutes",
                         f"{backup.rpo_minutes} cannot be met: WAL is archived at least every "
                         f"{WAL_ARCHIVE_TIMEOUT_MINUTES} minutes (CloudNativePG's archive_timeout), so up to that "
                         f"much work can be lost; set backup.rpo_minutes to {WAL_ARCHIVE_TIMEOUT_MINUTES} or more"))
    gaps = cron_gaps(backup.schedule)
    if gaps is None:
        problems.append(("backup.schedule", f"{backup.schedule!r} never fires (no such date): write one that "
                                            "does, e.g. '0 2 * * *'"))
        return problems
    shortest, longest = gaps
    if shortest < timedelta(hours=1):
        problems.append(("backup.schedule", f"{backup.schedule!r} starts a base backup more than once an hour: a "
                                            "backup of the whole database would overlap the next (WAL archiving "
                                            "covers the time between); e.g. '0 2 * * *' or '0 */6 * * *'"))
    hours = longest.total_seconds() / 3600
    if hours > backup.max_age_for_patch_hours:
        problems.append(("backup.max_age_for_patch_hours",
                         f"{backup.max_age_for_patch_hours} h, but {backup.schedule!r} leaves up to {hours:g} h "
                         "between base backups: erpops patch would refuse for part of every cycle; raise it to "
                         f"{math.ceil(hours)} or schedule backups more often"))
    if longest > timedelta(days=ctx.spec.backup.retention.daily):
        problems.append(("backup.schedule",
                         f"{backup.schedule!r} leaves up to {longest.days} days between base backups, more than the "
                         f"{backup.retention.daily}-day recovery window (backup.retention.daily): a recovery would "
                         "replay more WAL than is kept; back up at least once per window, e.g. '0 2 * * *'"))
    return problems


def _sibling_value(raw: dict[str, Any], path: str) -> Any:
    node: Any = raw
    for key in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


_SHARED_KEYS = (("object_storage.filestore_bucket", "bucket"), ("object_storage.backup_bucket", "bucket"),
                ("kubernetes.host", "host"))


def _shared(values: dict[str, dict[str, Any]], stack: str) -> list[Problem]:
    """Keys of `stack` whose value another stack of `values` (stack -> path -> value) also uses."""
    problems = []
    mine = values[stack]
    for path, kind in _SHARED_KEYS:
        value = mine.get(path)
        if not value:
            continue
        for other, theirs in sorted(values.items()):
            if other == stack:
                continue
            hit = next((p for p, k in _SHARED_KEYS if k == kind and theirs.get(p) == value), None)
            if hit:
                fix = f"{value}-{stack}" if kind == "bucket" else f"{stack}.{value}"
                problems.append((path, f"{value!r} is also used by stack {other} (Pulumi.{other}.yaml, {hit}): "
                                       f"stacks must never share a {kind}; give this stack its own, e.g. {fix}"))
                break
    return problems


@rule
def _cross_stack(ctx: Context) -> list[Problem]:
    """Segregation: no bucket or host shared with a sibling stack file of the same project."""
    values = {name: {p: _sibling_value(raw, p) for p, _ in _SHARED_KEYS} for name, raw in ctx.siblings.items()}
    values[ctx.stack] = {p: _sibling_value(ctx.spec.model_dump(), p) for p, _ in _SHARED_KEYS}
    return _shared(values, ctx.stack)


def _sized(ctx: Context) -> tuple[list[Problem], Sized | None]:
    spec = ctx.spec
    web, pg, pooler = spec.odoo.web, spec.postgres, spec.pooler
    odoo_sizing = sizing.size_odoo(
        web.cores, web.memory_mib, workers=web.workers, cron_threads=spec.odoo.cron.threads,
        db_maxconn=spec.odoo.db_maxconn, limit_time_cpu=spec.odoo.limits.time_cpu,
        limit_request=spec.odoo.limits.request)
    budget = sizing.connection_budget(
        web_replicas_max=spec.web_replicas_max, workers=odoo_sizing.workers,
        cron_replicas=spec.odoo.cron.replicas, cron_threads=spec.odoo.cron.threads,
        headroom_processes=pooler.headroom_processes, db_maxconn=spec.odoo.db_maxconn,
        pooler_instances=pooler.instances, pool_size=pooler.default_pool_size,
        direct_connections=pg.direct_connections, max_connections=pg.max_connections)
    problems = _budget_problems(spec, odoo_sizing, budget)
    where = "postgres.max_connections" if pg.max_connections is not None else "odoo.web.workers"
    cause = ("lower postgres.max_connections" if pg.max_connections is not None else
             "lower odoo.web.workers, odoo.web.autoscale.max_replicas, odoo.cron.threads or odoo.db_maxconn")
    carried = parse_memory(pg.memory) // PG_BYTES_PER_CONNECTION
    if budget.max_connections > PG_MAX_CONNECTIONS:
        problems.append((where, f"max_connections would be {budget.max_connections}, above PostgreSQL's limit of "
                                f"{PG_MAX_CONNECTIONS} (the server would not start): {cause}"))
    elif budget.max_connections > carried:
        need_gib = math.ceil(budget.max_connections * PG_BYTES_PER_CONNECTION / 1024**3)
        problems.append((where, f"max_connections {budget.max_connections} needs about {need_gib}Gi of PostgreSQL "
                                f"memory ({PG_BYTES_PER_CONNECTION / 1024**2:.1f}MiB per connection, Amazon RDS's "
                                f"allotment), but postgres.memory {pg.memory} carries {carried}: raise "
                                f"postgres.memory to {need_gib}Gi or {cause}"))
    if problems:
        return problems, None
    memory_kb = pg.memory_mib * 1024
    pg_settings = sizing.pgtune(memory_kb, max(1, math.floor(pg.cores)), pg.disk, pg.profile,
                                pg.major_version, max_connections=budget.max_connections)
    return [], Sized(ctx.stack, spec, odoo_sizing, budget, pg_settings)


def _semantic_problems(stack: str, spec: Spec, siblings: dict[str, dict[str, Any]] | None = None
                       ) -> tuple[list[Problem], Sized | None]:
    ctx = Context(stack, spec, siblings or {})
    problems = [p for check in RULES for p in check(ctx)]
    if problems:
        return problems, None
    return _sized(ctx)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

_STACK = re.compile(r"[a-z]([a-z0-9-]{0,38}[a-z0-9])?")


def infer_tier(stack: str) -> str | None:
    for tier in TIERS:
        if stack == tier or stack.startswith(f"{tier}-"):
            return tier
    return None


def _stack_problems(stack: str) -> list[Problem]:
    if _STACK.fullmatch(stack):
        return []
    fix = suggest_label(stack, 40)
    fix = fix if _STACK.fullmatch(fix) else "staging-eu"
    return [("stack", f"{stack!r} is not a valid stack name: its namespace erpops-{stack} must be a Kubernetes "
                      "name, so use lowercase letters, digits and '-', starting with a letter, ending with a letter "
                      f"or digit, at most 40 characters; e.g. {fix}")]


def _tier_of(raw: dict[str, Any], stack: str) -> tuple[str | None, list[Problem]]:
    """The tier the spec is checked as, and the problems of its declaration (fatal when no tier results)."""
    named = infer_tier(stack)
    declared = raw.get("tier")
    if declared is None:
        if named is None:
            return None, [("tier", f"missing, and the stack name {stack!r} names none: set tier to dev, staging or "
                                   "prod")]
        return named, []
    if not isinstance(declared, str) or declared not in TIERS:
        fix = f"set tier to {named} (as the stack's name says) or remove it" if named else (
            "set tier to dev, staging or prod")
        return None, [("tier", f"{_show(declared)} is not a tier and the stack name {stack!r} names "
                               f"{'the ' + named + ' tier' if named else 'none'}: {fix}")]
    if named is not None and declared != named:
        return declared, [("tier", f"{declared!r}, but the stack is named {stack!r}: a {named} stack gets the {named} "
                                   f"checks (high availability, mail) only if it declares tier {named} or none; "
                                   f"set tier: {named} or remove it, or rename the stack")]
    return declared, []


def siblings_of(root: Path | None, stack: str) -> dict[str, dict[str, Any]]:
    """The other stack files of the project, raw, with their tier's defaults laid under; unreadable ones skipped."""
    if root is None:
        return {}
    out = {}
    for name in list_stacks(root):
        if name == stack:
            continue
        try:
            raw = read_raw(stack_file(root, name))
        except SpecError:
            continue
        if not isinstance(raw, dict):
            continue
        tier = raw.get("tier") or infer_tier(name)
        out[name] = _merge(tier_defaults(tier), raw) if tier in TIERS else raw
    return out


def validate(raw: Any, stack: str, source: str | None = None, *, root: Path | None = None,
             _resized: bool = False) -> Sized:
    """A raw `erpops:spec` mapping -> a validated, sized spec, or one SpecError with every problem.

    `root`, when given, is the project directory: the other Pulumi.<stack>.yaml files there are read for
    the cross-stack rules. Every entry point (the CLI, render, the Pulumi program) calls this.
    """
    problems = _stack_problems(stack)
    if problems:
        raise SpecError(problems, source)
    if not isinstance(raw, dict):
        raise SpecError([(SPEC_KEY, "missing or not a mapping: add an `erpops:spec:` mapping under "
                                    "`config:`")], source)
    tier, problems = _tier_of(raw, stack)
    if tier is None:
        raise SpecError(problems, source)
    merged = _merge(tier_defaults(tier), {**raw, "tier": tier})
    secret_problems = _secret_problems(raw)
    flagged = {p for p, _ in secret_problems}
    problems += secret_problems
    try:
        spec = Spec.model_validate(merged)
    except ValidationError as exc:
        # a field flagged as holding a credential is not echoed back by pydantic's message
        raise SpecError(problems + [p for p in _pydantic_problems(exc) if p[0] not in flagged], source) from None
    semantic, sized = _semantic_problems(stack, spec, siblings_of(root, stack))
    if problems or semantic or sized is None:
        raise SpecError(problems + [p for p in semantic if p[0] not in flagged], source)
    if sized.spec.odoo.web.target_users and not _resized:
        return _validate_for_target_users(sized, raw, stack, source, root)
    return sized


def _validate_for_target_users(sized: Sized, raw: dict[str, Any], stack: str, source: str | None,
                               root: Path | None) -> Sized:
    from erpops import capacity  # odoo.web.target_users: replicas and HPA bounds sized for that many users
    from erpops.errors import UsageError

    if root is None:  # `pulumi up` runs in the project root
        try:
            root = find_root()
        except SpecError:
            root = None
    try:
        resized = capacity.target_raw(sized, raw, root)
    except UsageError as exc:
        raise SpecError([("odoo.web.target_users", str(exc))], source) from None
    try:
        return validate(resized, stack, source, root=root, _resized=True)
    except SpecError as exc:
        users, replicas = sized.spec.odoo.web.target_users, resized["odoo"]["web"]["replicas"]
        why = (f"{users} users need {replicas} web replicas (erpops size --stack {stack} --users {users}), which the "
               "problems above follow from: lower target_users, or give PostgreSQL and the pooler what they ask")
        raise SpecError([*exc.problems, ("odoo.web.target_users", why)], source) from None


def stack_file(root: Path, stack: str) -> Path:
    return root / f"Pulumi.{stack}.yaml"


def list_stacks(root: Path) -> list[str]:
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


# libyaml's safe loader when PyYAML was built with it: the same documents, several times faster
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_raw(path: Path) -> Any:
    try:
        doc = yaml.load(path.read_text(), Loader=_YAML_LOADER) or {}  # noqa: S506 (a safe loader)
    except FileNotFoundError:
        raise SpecError([("stack", f"{path} does not exist: create it or pick one of the existing "
                                   "Pulumi.<stack>.yaml files")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([("yaml", f"{path} is not valid YAML ({exc}): fix the syntax")]) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("config", {}), dict):
        raise SpecError([("config", "the stack file has no `config:` mapping: add one holding erpops:spec")],
                        str(path))
    return doc.get("config", {}).get(SPEC_KEY)


def load(stack: str, root: Path | None = None) -> Sized:
    root = root or find_root()
    path = stack_file(root, stack)
    return validate(read_raw(path), stack, str(path), root=root)


def find_root(start: Path | None = None) -> Path:
    """The nearest directory upwards holding Pulumi.yaml (the erpops project root)."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "Pulumi.yaml").is_file():
            return candidate
    raise SpecError([("Pulumi.yaml", f"no Pulumi.yaml in {here} or above: run erpops from the project root "
                                     "or pass --root")])


def cross_stack_problems(sized: list[Sized]) -> list[Problem]:
    """Segregation across already validated stacks: no two share a bucket or a host."""
    values = {s.stack: {p: _sibling_value(s.spec.model_dump(), p) for p, _ in _SHARED_KEYS} for s in sized}
    return [(f"{s.stack}: {path}", msg) for s in sized for path, msg in _shared(values, s.stack)]
