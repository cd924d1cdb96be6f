"""The environment spec: one `erpops:spec` object per Pulumi stack file, one typed model.

A spec is read from `Pulumi.<stack>.yaml`, laid over the defaults of its tier (dev, staging,
prod), validated structurally by pydantic and then semantically (sizing, connection budget,
high availability, naming). Every problem found is reported at once, each with its key path
and the fix, as one `SpecError` (exit code 2), before anything runs.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from erpops import sizing
from erpops.errors import SpecError
from erpops.units import mib, parse_cpu, parse_memory

SPEC_KEY = "erpops:spec"
TIERS = ("dev", "staging", "prod")
ODOO_VERSIONS = ("16.0", "17.0", "18.0")
# PGTune warns below 256MB; CloudNativePG cannot run a useful instance below that either
PG_MIN_MEMORY_MIB = 256
_HOST = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_CIDR = r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$"

Tier = Literal["dev", "staging", "prod"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _check_memory(value: str) -> str:
    parse_memory(value)
    return value


def _check_cpu(value: str | int | float) -> str:
    parse_cpu(value)
    return str(value)


Memory = Annotated[str, Field(description="Kubernetes memory quantity, e.g. 512Mi or 4Gi")]
Cpu = Annotated[str | int | float, Field(description="Kubernetes CPU quantity, e.g. 500m or 2")]


class Resources(_Model):
    cpu: Cpu
    memory: Memory

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, v: str | int | float) -> str:
        return _check_cpu(v)

    @field_validator("memory")
    @classmethod
    def _mem(cls, v: str) -> str:
        return _check_memory(v)

    @property
    def cores(self) -> float:
        return parse_cpu(self.cpu)

    @property
    def memory_mib(self) -> int:
        return mib(self.memory)


class Kubernetes(_Model):
    context: str = Field(min_length=1)
    storage_class: str = Field(min_length=1)
    ingress_class: str = "nginx"
    ingress_namespace: str = "ingress-nginx"
    host: str = Field(max_length=253, pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,63}$")
    tls_secret: str | None = None
    install_cnpg_operator: bool = False


class Autoscale(_Model):
    enabled: bool = False
    min_replicas: int = Field(default=2, ge=1)
    max_replicas: int = Field(default=4, ge=1)
    target_cpu_percent: int = Field(default=70, ge=10, le=100)


class OdooWeb(Resources):
    replicas: int = Field(ge=1)
    workers: int | None = Field(default=None, ge=1)
    autoscale: Autoscale = Autoscale()
    # concurrent users to serve: replicas and HPA bounds then come from erpops.capacity (calibrated if recorded)
    target_users: int | None = Field(default=None, ge=1)


class OdooCron(Resources):
    replicas: int = Field(default=1, ge=0, le=1)
    threads: int = Field(default=2, ge=1, le=16)


class OdooLimits(_Model):
    time_cpu: int = Field(default=600, ge=10)
    request: int = Field(default=65536, ge=1024)


class Odoo(_Model):
    version: Literal["16.0", "17.0", "18.0"]
    image: str
    database: str = Field(default="", pattern=r"^$|^[a-z_][a-z0-9_]{0,62}$")
    web: OdooWeb
    cron: OdooCron
    db_maxconn: int = Field(default=8, ge=2, le=64)
    limits: OdooLimits = OdooLimits()
    modules: list[Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]] = ["base", "web"]
    dbfilter: str = ""
    proxy_mode: bool = True

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        # repository[:tag] or repository@sha256:<64 hex>; a tag is mandatory unless a digest is given
        if re.fullmatch(r"[a-z0-9][a-z0-9._/:-]*@sha256:[a-f0-9]{64}", v):
            return v
        m = re.fullmatch(r"(?P<repo>[a-z0-9][a-z0-9._/-]*(?::\d+/[a-z0-9._/-]+)?):(?P<tag>[A-Za-z0-9_.-]{1,128})", v)
        if not m:
            raise ValueError(
                f"'{v}' is not an image with a tag or digest: write it as odoo:17.0-20241010 or "
                "odoo@sha256:<64 hex digits>"
            )
        if m["tag"] == "latest":
            raise ValueError("'latest' is not a pinned tag: use a dated tag (odoo:17.0-20241010) or a digest")
        return v


class Postgres(Resources):
    instances: int = Field(ge=1, le=9)
    storage: Memory
    disk: Literal["ssd", "hdd", "san", "nvme"] = "ssd"
    profile: Literal["web", "oltp", "mixed"] = "oltp"
    major_version: Literal[15, 16, 17] = 15
    max_connections: int | None = Field(default=None, ge=20)
    direct_connections: int = Field(default=10, ge=0)

    @field_validator("storage")
    @classmethod
    def _storage(cls, v: str) -> str:
        return _check_memory(v)


class Pooler(_Model):
    instances: int = Field(default=1, ge=1)
    mode: Literal["session"] = "session"
    max_client_conn: int = Field(default=1000, ge=10)
    default_pool_size: int | None = Field(default=None, ge=1)
    headroom_processes: int = Field(default=4, ge=0)


class Redis(_Model):
    enabled: bool = True
    memory: Memory = "256Mi"
    persistence: bool = False
    storage: Memory = "1Gi"
    session_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=300)
    mode: Literal["in-cluster", "managed"] = Field(default="in-cluster", description=(
        "in-cluster: one Redis pod (a single point of failure, refused in prod); managed: a replicated "
        "endpoint run elsewhere (ElastiCache Multi-AZ, Memorystore HA, Azure Cache)"))
    endpoint: str | None = Field(default=None, max_length=260, pattern=r"^[a-z0-9.-]+:\d{1,5}$", description=(
        "managed: host:port of the primary endpoint"))
    cidrs: list[Annotated[str, Field(pattern=_CIDR)]] = Field(default=[], max_length=16, description=(
        "managed: addresses of the endpoint, the egress policy opens its port to these only"))

    @field_validator("memory", "storage")
    @classmethod
    def _memory(cls, v: str) -> str:
        return _check_memory(v)


class ObjectStorage(_Model):
    mode: Literal["aws", "s3-compatible"] = "aws"
    endpoint: str | None = None
    region: str = "eu-west-1"
    filestore_bucket: str
    backup_bucket: str


class Retention(_Model):
    daily: int = Field(default=7, ge=1)
    weekly: int = Field(default=4, ge=0)
    monthly: int = Field(default=0, ge=0)


class Backup(_Model):
    schedule: str = "0 2 * * *"
    retention: Retention = Retention()
    rpo_minutes: int = Field(default=1440, ge=1)
    rto_minutes: int = Field(default=240, ge=1)
    max_age_for_patch_hours: int = Field(default=24, ge=1)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        fields = v.split()
        if len(fields) != 5 or not all(re.fullmatch(r"[0-9*/,-]+", f) for f in fields):
            raise ValueError(f"'{v}' is not a 5-field cron expression: write it like '0 2 * * *'")
        return v


class RequestSlo(_Model):
    p50_ms: float = Field(gt=0)
    p95_ms: float = Field(gt=0)
    p99_ms: float = Field(gt=0)


class Slo(_Model):
    requests: dict[str, RequestSlo] = {}
    error_ratio: float = Field(default=0.01, ge=0, le=1)
    min_rps: float = Field(default=1.0, ge=0)
    think_time_seconds: tuple[float, float] = (1.0, 5.0)
    persona_weights: dict[Literal["planner", "shop_floor", "buyer", "sales", "warehouse"], int] = {
        "planner": 2, "shop_floor": 4, "buyer": 1, "sales": 2, "warehouse": 3}


class Threshold(_Model):
    warn: float
    crit: float


class Health(_Model):
    """warn/crit levels of `erpops health`. For the *_min keys lower is worse, for all others higher."""

    timeout_seconds: float = Field(default=5.0, gt=0)
    odoo_latency_ms: Threshold = Threshold(warn=500, crit=2000)
    pg_connect_ms: Threshold = Threshold(warn=250, crit=1000)
    pg_connections_ratio: Threshold = Threshold(warn=0.8, crit=0.9)
    pg_longest_transaction_seconds: Threshold = Threshold(warn=300, crit=1800)
    pg_idle_in_transaction_seconds: Threshold = Threshold(warn=60, crit=600)
    pg_lock_wait_seconds: Threshold = Threshold(warn=10, crit=60)
    pg_replica_lag_bytes: Threshold = Threshold(warn=16 * 1024**2, crit=256 * 1024**2)
    pg_replica_lag_seconds: Threshold = Threshold(warn=30, crit=300)
    pg_cache_hit_ratio_min: Threshold = Threshold(warn=0.95, crit=0.90)
    pg_xid_age: Threshold = Threshold(warn=500_000_000, crit=1_000_000_000)
    pg_database_size_ratio: Threshold = Threshold(warn=0.7, crit=0.85)
    pg_dead_tuple_ratio: Threshold = Threshold(warn=0.2, crit=0.4)
    cron_overdue_minutes: Threshold = Threshold(warn=30, crit=120)
    mail_exception_count: Threshold = Threshold(warn=1, crit=100)
    redis_latency_ms: Threshold = Threshold(warn=50, crit=250)
    redis_memory_ratio: Threshold = Threshold(warn=0.8, crit=0.95)
    redis_evicted_keys: Threshold = Threshold(warn=1, crit=10_000)
    redis_connected_clients: Threshold = Threshold(warn=2000, crit=5000)
    s3_multipart_age_hours: Threshold = Threshold(warn=1, crit=float("inf"))
    host_cpu_percent: Threshold = Threshold(warn=85, crit=95)
    host_memory_ratio: Threshold = Threshold(warn=0.85, crit=0.95)
    host_load_per_core: Threshold = Threshold(warn=1.5, crit=3.0)
    disk_free_ratio_min: Threshold = Threshold(warn=0.2, crit=0.1)

    @model_validator(mode="after")
    def _ordered(self) -> Health:
        for name in type(self).model_fields:
            level = getattr(self, name)
            if not isinstance(level, Threshold):
                continue
            lower_is_worse = name.endswith("_min")
            if (level.warn < level.crit) if lower_is_worse else (level.warn > level.crit):
                word = "above" if lower_is_worse else "below"
                raise ValueError(f"{name}: warn {level.warn:g} must be {word} crit {level.crit:g} "
                                 f"({'lower' if lower_is_worse else 'higher'} is worse): swap or fix them")
        return self


class Secrets(_Model):
    """Names of Pulumi secret config keys (`pulumi config set --secret <name> ...`), never values."""

    odoo_admin_password: str = "odooAdminPassword"  # noqa: S105 (a key name)
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
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
    storage_class: str = Field(min_length=1, max_length=253, description=(
        "StorageClass of the ReadWriteMany claim mounted at /var/lib/odoo in every web, cron and module "
        "Job pod (NFS, CephFS, EFS, Azure Files, Filestore...)"))
    size: Memory = Field(default="50Gi", description="Size of the ReadWriteMany claim")

    @field_validator("size")
    @classmethod
    def _size(cls, v: str) -> str:
        return _check_memory(v)


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
    addons: list[Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]] = Field(default=[], max_length=64, description=(
        "Modules a prebuilt odoo.image carries besides Odoo's own (e.g. fs_storage, fs_attachment, session_db); "
        "only these may be server-wide or installed by the module Job"))


class IngressSettings(_Model):
    body_size_mib: int = Field(default=100, ge=1, le=10240, description=(
        "Largest request body (upload, import) the ingress controller accepts, in MiB"))
    websocket_timeout_seconds: int = Field(default=3600, ge=60, le=86400, description=(
        "Idle read/send timeout of /websocket connections at the ingress controller"))


class OutgoingMail(_Model):
    host: str = Field(max_length=253, pattern=_HOST, description="SMTP server (odoo.conf smtp_server)")
    port: int = Field(default=587, ge=1, le=65535, description="SMTP port (smtp_port)")
    tls: Literal["starttls", "none"] = Field(default="starttls", description=(
        "starttls sets smtp_ssl = True (Odoo's config option means STARTTLS); SMTPS on 465 needs an "
        "ir.mail_server record instead"))
    user: str | None = Field(default=None, max_length=254, description="SMTP user (smtp_user)")
    password_key: str | None = Field(default=None, description=(
        "Pulumi secret config key holding the SMTP password (smtp_password, never in a ConfigMap)"))
    cidrs: list[Annotated[str, Field(pattern=_CIDR)]] = Field(min_length=1, max_length=16, description=(
        "Addresses of the SMTP server: the egress policy opens the port to these only"))
    sink: bool = Field(default=False, description=(
        "The host is a mail catcher (Mailpit, MailHog) that delivers nothing: required outside prod"))


class IncomingMail(_Model):
    protocol: Literal["imap", "pop"] = Field(default="imap", description="Fetchmail protocol")
    host: str = Field(max_length=253, pattern=_HOST, description="Mail server Odoo fetches from")
    port: int = Field(default=993, ge=1, le=65535, description="Port (993 IMAPS, 995 POP3S)")
    cidrs: list[Annotated[str, Field(pattern=_CIDR)]] = Field(min_length=1, max_length=16, description=(
        "Addresses of the mail server: the egress policy opens the port to these only"))


class Mail(_Model):
    outgoing: OutgoingMail | None = Field(default=None, description=(
        "Outgoing SMTP; none leaves Odoo unable to send (the egress policy blocks SMTP)"))
    incoming: list[IncomingMail] = Field(default=[], max_length=8, description=(
        "Mailboxes Odoo fetches (fetchmail.server records); prod only"))


class Monitoring(_Model):
    namespace: str | None = Field(default=None, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                                  description="Namespace of the Prometheus that scrapes CNPG (9187) and "
                                              "PgBouncer (9127); none admits no scrape")
    pod_monitors: bool = Field(default=False, description=(
        "The Prometheus Operator CRDs are installed: create PodMonitor objects for the exporters"))
    scrape_odoo_health: bool = Field(default=False, description=(
        "Also admit the monitoring namespace to Odoo's /web/health on 8069 (a blackbox probe)"))


class CloudNativePG(_Model):
    image: str | None = Field(default=None, max_length=255, pattern=r"^[a-z0-9][a-z0-9._/:@-]*$", description=(
        "PostgreSQL image of the Cluster; none uses erpops' pinned ghcr.io/cloudnative-pg/postgresql tag"))
    operator_chart_version: str | None = Field(default=None, pattern=r"^\d+\.\d+\.\d+$", description=(
        "cloudnative-pg Helm chart version when kubernetes.install_cnpg_operator; none uses the pinned one"))


class Spec(_Model):
    tier: Tier
    kubernetes: Kubernetes
    odoo: Odoo
    postgres: Postgres
    pooler: Pooler = Pooler()
    redis: Redis = Redis()
    object_storage: ObjectStorage
    backup: Backup = Backup()
    slo: Slo = Slo()
    health: Health = Health()
    secrets: Secrets = Secrets()
    filestore: Filestore = Field(default=Filestore(), description="Shared filestore and session store")
    image: Image = Field(default=Image(), description="The Odoo image: built from odoo.image or prebuilt")
    ingress: IngressSettings = Field(default=IngressSettings(), description="Ingress controller settings")
    mail: Mail = Field(default=Mail(), description="Outgoing SMTP and incoming mailboxes")
    monitoring: Monitoring = Field(default=Monitoring(), description="Scrapes of the exporters")
    cnpg: CloudNativePG = Field(default=CloudNativePG(), description="CloudNativePG image and operator chart")

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
        elif item in ("function-after", "function-before") or str(item).startswith("function-"):
            continue
        else:
            parts.append(str(item))
    return ".".join(parts)


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    current: Any = model
    for item in loc[:-1]:
        if isinstance(item, int) or current is None:
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or item not in fields:
            return None
        annotation = fields[item].annotation
        current = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields else None


def _pydantic_problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        path = _path(loc)
        kind = err["type"]
        got = err.get("input")
        if kind == "extra_forbidden":
            allowed = _allowed_keys(Spec, loc)
            hint = f" (allowed here: {', '.join(allowed)})" if allowed else ""
            msg = f"unknown key: remove it or fix its spelling{hint}"
        elif kind == "missing":
            msg = "required: add this key to the spec"
        elif kind == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            msg = f"{got!r} is not allowed: use one of {expected}"
        elif kind in ("int_parsing", "int_type", "int_from_float"):
            msg = f"{got!r} is not an integer: write a whole number"
        elif kind in ("float_parsing", "float_type"):
            msg = f"{got!r} is not a number: write a number"
        elif kind in ("bool_parsing", "bool_type"):
            msg = f"{got!r} is not a boolean: write true or false"
        elif kind in ("string_type",):
            msg = f"{got!r} is not a string: quote it"
        elif kind in ("dict_type", "model_type", "model_attributes_type"):
            msg = f"expected a mapping of keys, got {type(got).__name__}: indent the keys under it"
        elif kind in ("list_type",):
            msg = f"expected a list, got {type(got).__name__}: write it as [a, b]"
        elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
            ctx = err.get("ctx", {})
            bound = next(iter(ctx.values()), "")
            word = {"greater_than_equal": "at least", "greater_than": "more than",
                    "less_than_equal": "at most", "less_than": "less than"}[kind]
            msg = f"{got!r} is out of range: set it to {word} {bound}"
        elif kind == "string_pattern_mismatch":
            msg = f"{got!r} has the wrong form: it must match {err['ctx']['pattern']}"
        elif kind == "string_too_short":
            msg = "is empty: give it a value"
        elif kind == "value_error":
            msg = str(err["ctx"]["error"]) if "ctx" in err else err["msg"]
        else:
            msg = f"{err['msg']} (got {got!r})"
        problems.append((path, msg))
    return problems


# --------------------------------------------------------------------------------------------
# Secrets: the spec holds names of Pulumi config keys, never values
# --------------------------------------------------------------------------------------------

_SECRET_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_CREDENTIAL_SHAPES = (
    re.compile(r"^(AKIA|ASIA)[0-9A-Z]{16}$"),  # AWS access key id
    re.compile(r"^[A-Za-z0-9/+=]{40}$"),  # AWS secret access key
    re.compile(r"^(gh[pousr]_|glpat-|xox[abp]-|sk_live_|-----BEGIN)"),
)


def _looks_like_secret(value: str) -> bool:
    if any(p.search(value) for p in _CREDENTIAL_SHAPES):
        return True
    if not _SECRET_NAME.match(value):
        return True
    classes = sum(bool(re.search(p, value)) for p in (r"[a-z]", r"[A-Z]", r"\d"))
    digits = sum(c.isdigit() for c in value)
    # key names are words; a long mixed-case string heavy with digits is a pasted token
    return len(value) >= 20 and classes == 3 and digits >= 4


def _secret_problems(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """Checked on the raw spec, so a pasted credential is reported even beside other errors."""
    problems = []
    secrets = raw.get("secrets") if isinstance(raw.get("secrets"), dict) else {}
    for name, value in secrets.items():
        if isinstance(value, str) and _looks_like_secret(value):
            problems.append((
                f"secrets.{name}",
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
    return problems


def _default_key(field_name: str) -> str:
    head, *rest = field_name.split("_")
    return head + "".join(p.title() for p in rest)


# --------------------------------------------------------------------------------------------
# Semantic checks: sizing, budget, HA, naming
# --------------------------------------------------------------------------------------------

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


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


def _semantic_problems(stack: str, spec: Spec) -> tuple[list[tuple[str, str]], Sized | None]:
    problems: list[tuple[str, str]] = []
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
    problems += shape_problems(spec)
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
    problems += _budget_problems(spec, odoo_sizing, budget)

    if problems:
        return problems, None
    memory_kb = pg.memory_mib * 1024
    pg_settings = sizing.pgtune(memory_kb, max(1, math.floor(pg.cores)), pg.disk, pg.profile,
                                pg.major_version, max_connections=budget.max_connections)
    return [], Sized(stack, spec, odoo_sizing, budget, pg_settings)


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


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

def infer_tier(stack: str) -> str | None:
    for tier in TIERS:
        if stack == tier or stack.startswith(f"{tier}-"):
            return tier
    return None


def validate(raw: Any, stack: str, source: str | None = None, *, root: Path | None = None,
             _resized: bool = False) -> Sized:
    """A raw `erpops:spec` mapping -> a validated, sized spec, or one SpecError with every problem."""
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,40}", stack):
        raise SpecError([("stack", f"{stack!r} is not a valid stack name: use lowercase letters, digits "
                                   "and hyphens, e.g. prod or staging-eu")], source)
    if not isinstance(raw, dict):
        raise SpecError([(SPEC_KEY, "missing or not a mapping: add an `erpops:spec:` mapping under "
                                    "`config:`")], source)
    tier = raw.get("tier") or infer_tier(stack)
    if tier not in TIERS:
        raise SpecError([("tier", f"{tier!r} is not a tier and the stack name {stack!r} names none: "
                                  "set tier to dev, staging or prod")], source)
    merged = _merge(tier_defaults(tier), {**raw, "tier": tier})
    secret_problems = _secret_problems(raw)
    try:
        spec = Spec.model_validate(merged)
    except ValidationError as exc:
        raise SpecError(secret_problems + _pydantic_problems(exc), source) from None
    problems, sized = _semantic_problems(stack, spec)
    if secret_problems or problems or sized is None:
        raise SpecError(secret_problems + problems, source)
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
        return validate(capacity.target_raw(sized, raw, root), stack, source, root=root, _resized=True)
    except UsageError as exc:
        raise SpecError([("odoo.web.target_users", str(exc))], source) from None


def stack_file(root: Path, stack: str) -> Path:
    return root / f"Pulumi.{stack}.yaml"


def list_stacks(root: Path) -> list[str]:
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def read_raw(path: Path) -> Any:
    try:
        doc = yaml.safe_load(path.read_text()) or {}
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


def cross_stack_problems(sized: list[Sized]) -> list[tuple[str, str]]:
    """Segregation across stacks: no two stacks share a bucket, a host or a database+cluster."""
    problems = []
    seen: dict[tuple[str, str], str] = {}
    for s in sized:
        keys = [
            ("object_storage.filestore_bucket", s.spec.object_storage.filestore_bucket),
            ("object_storage.backup_bucket", s.spec.object_storage.backup_bucket),
            ("kubernetes.host", s.spec.kubernetes.host),
        ]
        for path, value in keys:
            kind = "bucket" if "bucket" in path else path
            owner = seen.get((kind, value))
            if owner and owner != s.stack:
                problems.append((f"{s.stack}: {path}",
                                 f"{value!r} is also used by stack {owner}: give each stack its own"))
            seen[(kind, value)] = s.stack
    return problems
