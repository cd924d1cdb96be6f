"""Pure derivations from a validated spec for the Pulumi components: no Pulumi import here.

Pinned versions, CloudNativePG's fixed parameters, the namespace quota, the NetworkPolicy rules,
the Redis command line and the backup retention arithmetic, each written once and unit-testable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from erpops.helm_values import odoo_resources
from erpops.naming import ODOO_HTTP_PORT, ODOO_WEBSOCKET_PORT, POSTGRES_PORT, REDIS_PORT, Refs, stack_labels
from erpops.spec import CNPG_NAMESPACE, PG_MINOR, Retention, Sized
from erpops.units import format_mib_quantity, mib, parse_cpu, parse_memory

# --------------------------------------------------------------------------------------------
# Pinned versions (bump deliberately, never float)
# --------------------------------------------------------------------------------------------

# CloudNativePG's PostgreSQL images: ghcr.io/cloudnative-pg/postgresql:<major>.<minor>
PG_IMAGE_REPOSITORY = "ghcr.io/cloudnative-pg/postgresql"
# PG_MINOR (erpops/spec.py, the spec refuses a major without one): the minor releases of PostgreSQL's
# May 2026 update (18.4 et al.); spec cnpg.image overrides.
# Official Redis image, 7.2 line, Alpine; 7.2.11 carries the October 2025 Lua CVE fixes (CVE-2025-49844)
REDIS_IMAGE = "redis:7.2.11-alpine"
REDIS_UID, REDIS_GID = 999, 1000  # the `redis` user and group of the official Alpine image
# CloudNativePG operator chart 0.29.0 = operator 1.30.0, the release of the CRDs the renders are checked
# against (../shared/crds: v1.30.0 + 86 commits). The in-tree barmanObjectStore this program uses is
# deprecated from 1.26 and removed in 1.32: do not move past operator 1.31 before migrating to the
# Barman Cloud plugin. Spec cnpg.operator_chart_version overrides.
CNPG_OPERATOR_VERSION = "1.30.0"  # appVersion of chart 0.29.0 (cloudnative-pg/charts, 2026-06-29)
CNPG_CHART = {"chart": "cloudnative-pg", "version": "0.29.0", "repo": "https://cloudnative-pg.github.io/charts"}
# Exporter ports: CloudNativePG's instance manager (metrics) and PgBouncer's (metrics) in the Pooler pods
CNPG_METRICS_PORT, PGBOUNCER_METRICS_PORT = 9187, 9127

# --------------------------------------------------------------------------------------------
# Fixed sizes of the small workloads the spec does not size
# --------------------------------------------------------------------------------------------

POOLER_CPU, POOLER_MEMORY_MIB = "500m", 256  # PgBouncer is one thread and a few MB per 1000 clients
REDIS_CPU = "500m"
# redis --maxmemory as a share of the container's memory: the rest holds buffers and fragmentation
REDIS_MAXMEMORY_RATIO = 0.9
QUOTA_HEADROOM = 1.2
# Deployment rolling updates surge by 25% (the chart's and PgBouncer's default)
SURGE_RATIO = 0.25

# --------------------------------------------------------------------------------------------
# CloudNativePG: parameters the operator manages itself and refuses under postgresql.parameters.
# From FixedConfigurationParameters in pkg/postgres/configuration.go (cloudnative-pg, 1.2x). Note that
# max_connections, huge_pages, wal_compression and the parallel worker settings are NOT in it.
# --------------------------------------------------------------------------------------------

CNPG_FIXED_PARAMETERS = frozenset({
    # need a restart
    "allow_system_table_mods", "archive_mode", "bonjour", "bonjour_name", "cluster_name", "config_file",
    "data_directory", "data_sync_retry", "event_source", "external_pid_file", "hba_file", "hot_standby",
    "ident_file", "jit_provider", "listen_addresses", "logging_collector", "port", "primary_conninfo",
    "primary_slot_name", "recovery_target", "recovery_target_action", "recovery_target_inclusive",
    "recovery_target_lsn", "recovery_target_name", "recovery_target_time", "recovery_target_timeline",
    "recovery_target_xid", "restore_command", "shared_preload_libraries", "temp_tablespaces",
    "unix_socket_directories", "unix_socket_group", "unix_socket_permissions",
    # need a reload
    "archive_cleanup_command", "archive_command", "log_destination", "log_directory", "log_file_mode",
    "log_filename", "log_rotation_age", "log_rotation_size", "log_truncate_on_rotation",
    "pg_failover_slots.primary_dsn", "pg_failover_slots.standby_slot_names", "promote_trigger_file",
    "recovery_end_command", "recovery_min_apply_delay", "restart_after_crash", "ssl", "ssl_ca_file",
    "ssl_cert_file", "ssl_crl_file", "ssl_dh_params_file", "ssl_ecdh_curve", "ssl_key_file",
    "ssl_passphrase_command", "ssl_passphrase_command_supports_reload", "ssl_prefer_server_ciphers",
    "stats_temp_directory", "synchronous_standby_names", "synchronized_standby_slots", "syslog_facility",
    "syslog_ident", "syslog_sequence_numbers", "syslog_split_messages",
    # older operators also fixed these; the operator sets them correctly for replication anyway
    "wal_level", "wal_log_hints", "full_page_writes", "archive_timeout",
})


def pg_image(major: int, override: str | None = None) -> str:
    return override or f"{PG_IMAGE_REPOSITORY}:{PG_MINOR[major]}"


def cnpg_chart(sized: Sized) -> dict[str, str]:
    return {**CNPG_CHART, "version": sized.spec.cnpg.operator_chart_version or CNPG_CHART["version"]}


def cnpg_parameters(sized: Sized) -> dict[str, str]:
    """The PGTune settings CloudNativePG accepts under spec.postgresql.parameters (all values strings)."""
    return {k: v for k, v in sized.pg_parameters().items() if k not in CNPG_FIXED_PARAMETERS}


def cnpg_schedule(cron5: str) -> str:
    """A 5-field cron ('0 2 * * *') as CloudNativePG's 6-field one with seconds first ('0 0 2 * * *')."""
    return f"0 {cron5}"


def gfs_days(retention: Retention) -> int:
    """Days the oldest kept backup of a daily/weekly/monthly (GFS) rotation can reach."""
    return max(retention.daily, retention.weekly * 7, retention.monthly * 31)


def backup_expiry_days(retention: Retention) -> int:
    """Bucket lifecycle expiry of backups: the GFS horizon, and never less than CloudNativePG needs.

    A recovery window of N days needs the base backup taken before the window opened, up to one schedule
    interval (a day) older than N: expiring objects at exactly N days would cut the window's start.
    """
    return max(gfs_days(retention), retention.daily + 2)


def cnpg_retention_policy(retention: Retention) -> str:
    """CloudNativePG keeps what recovers to any point of the last `daily` days."""
    return f"{retention.daily}d"


# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------

def redis_maxmemory_bytes(memory: str) -> int:
    return int(parse_memory(memory) * REDIS_MAXMEMORY_RATIO)


def redis_args(sized: Sized) -> list[str]:
    """redis-server's command line; the password is $(REDIS_PASSWORD), expanded by the kubelet from env."""
    redis = sized.spec.redis
    args = [
        "--port", str(REDIS_PORT),
        "--requirepass", "$(REDIS_PASSWORD)",
        "--maxmemory", str(redis_maxmemory_bytes(redis.memory)),
        # sessions carry a TTL: evict the least recently used of those first, never keys without one
        "--maxmemory-policy", "volatile-lru",
        "--dir", "/data",
    ]
    if redis.persistence:
        args += ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
    else:
        args += ["--appendonly", "no", "--save", ""]
    return args


# --------------------------------------------------------------------------------------------
# Namespace ResourceQuota and LimitRange: every pod at full scale, plus headroom
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PodGroup:
    name: str
    count: int
    cpu_request_m: int
    memory_request_mib: int
    cpu_limit_m: int
    memory_limit_mib: int
    # False: containers of another group's pods (a native sidecar): their resources count, not their pods
    own_pods: bool = True


def _millicores(cpu: str | int | float) -> int:
    return math.ceil(parse_cpu(cpu) * 1000)


def _group(name: str, count: int, resources: dict[str, Any], own_pods: bool = True) -> PodGroup:
    req, lim = resources["requests"], resources["limits"]
    return PodGroup(name, count, _millicores(req["cpu"]), mib(req["memory"]), _millicores(lim["cpu"]),
                    mib(lim["memory"]), own_pods)


def _surge(replicas: int) -> int:
    return math.ceil(replicas * SURGE_RATIO)


def pod_groups(sized: Sized) -> list[PodGroup]:
    """Every pod the namespace may run at once, at maximum scale and mid-rollout (from the spec itself)."""
    spec = sized.spec
    pg = spec.postgres
    pg_res = {"requests": {"cpu": pg.cpu, "memory": pg.memory}, "limits": {"cpu": pg.cpu, "memory": pg.memory}}
    pooler_res = {"requests": {"cpu": POOLER_CPU, "memory": f"{POOLER_MEMORY_MIB}Mi"},
                  "limits": {"cpu": POOLER_CPU, "memory": f"{POOLER_MEMORY_MIB}Mi"}}
    odoo = odoo_resources(sized)
    web_max = spec.web_replicas_max
    groups = [
        _group("odoo-web", web_max + _surge(web_max), odoo["web"]),
        # CloudNativePG runs one initdb/join Job pod, sized like an instance, while it adds an instance
        _group("postgres", pg.instances + 1, pg_res),
        _group("pooler", spec.pooler.instances + _surge(spec.pooler.instances), pooler_res),
    ]
    cron_replicas = spec.odoo.cron.replicas
    if cron_replicas > 0:
        groups.append(_group("odoo-cron", cron_replicas + _surge(cron_replicas), odoo["cron"]))
    # the program applies the module Job on every stack (infra/components/odoo.py)
    groups.append(_group("odoo-modules-job", 1, odoo["module_job"]))
    if spec.redis.enabled and spec.redis.mode == "in-cluster":
        groups.append(_group("redis", 1, redis_resources(sized)))
    if spec.drill.enabled:  # concurrencyPolicy Forbid: one drill pod at a time
        groups.append(_group("drill", 1, drill_resources(sized)))
        if spec.drill.odoo_login:  # its Odoo sidecar: a container of the same pod, counted on its own
            groups.append(_group("drill-odoo", 1, drill_odoo_resources(sized), own_pods=False))
        if spec.drill.target == "cluster":  # the scratch cluster's instance, and its initdb Job's pod
            groups.append(_group("drill-postgres", 2, drill_cluster_resources(sized)))
    return groups


def redis_resources(sized: Sized) -> dict[str, Any]:
    q = {"cpu": REDIS_CPU, "memory": sized.spec.redis.memory}
    return {"requests": dict(q), "limits": dict(q)}


def pooler_resources() -> dict[str, Any]:
    q = {"cpu": POOLER_CPU, "memory": format_mib_quantity(POOLER_MEMORY_MIB)}
    return {"requests": dict(q), "limits": dict(q)}


def pg_resources(sized: Sized) -> dict[str, Any]:
    pg = sized.spec.postgres
    q = {"cpu": pg.cpu, "memory": pg.memory}
    return {"requests": dict(q), "limits": dict(q)}


def _cpu_quantity(millicores: int) -> str:
    return f"{millicores // 1000}" if millicores % 1000 == 0 else f"{millicores}m"


def _headroom(value: int) -> int:
    return math.ceil(value * QUOTA_HEADROOM)


def pvc_plan(sized: Sized) -> tuple[int, int]:
    """(PVC count, total GiB requested) at full scale: one per PostgreSQL instance (+1 while one is
    replaced), Redis' when it persists; Odoo keeps attachments in S3 and has none."""
    spec = sized.spec
    count = spec.postgres.instances + 1
    total_mib = (spec.postgres.instances + 1) * mib(spec.postgres.storage)
    if spec.redis.enabled and spec.redis.mode == "in-cluster" and spec.redis.persistence:
        count += 1
        total_mib += mib(spec.redis.storage)
    volume = spec.filestore.volume
    if spec.filestore.mode == "shared-volume" and volume is not None:
        count += 1
        total_mib += mib(volume.size)
    if spec.drill.enabled and spec.drill.target == "cluster":  # the scratch cluster's one instance
        count += 1
        total_mib += mib(spec.drill.cluster.storage)
    return count, total_mib


def resource_quota(sized: Sized) -> dict[str, str]:
    groups = pod_groups(sized)
    pods = sum(g.count for g in groups if g.own_pods)
    cpu_req = sum(g.count * g.cpu_request_m for g in groups)
    mem_req = sum(g.count * g.memory_request_mib for g in groups)
    cpu_lim = sum(g.count * g.cpu_limit_m for g in groups)
    mem_lim = sum(g.count * g.memory_limit_mib for g in groups)
    pvcs, storage_mib = pvc_plan(sized)
    return {
        "pods": str(_headroom(pods)),
        "requests.cpu": _cpu_quantity(_headroom(cpu_req)),
        "requests.memory": format_mib_quantity(_headroom(mem_req)),
        "limits.cpu": _cpu_quantity(_headroom(cpu_lim)),
        "limits.memory": format_mib_quantity(_headroom(mem_lim)),
        "persistentvolumeclaims": str(_headroom(pvcs)),
        "requests.storage": format_mib_quantity(_headroom(storage_mib)),
        # a segregated environment is reached through the ingress controller only
        "services.loadbalancers": "0",
        "services.nodeports": "0",
    }


def limit_range(sized: Sized) -> list[dict[str, Any]]:
    """Defaults for containers that set no resources, and a ceiling at the largest container we run."""
    groups = pod_groups(sized)
    max_cpu = max(g.cpu_limit_m for g in groups)
    max_mem = max(g.memory_limit_mib for g in groups)
    drill = sized.spec.drill
    pvc_max = max(mib(sized.spec.postgres.storage), mib(sized.spec.redis.storage),
                  mib(drill.cluster.storage) if drill.enabled and drill.target == "cluster" else 0)
    return [
        {
            "type": "Container",
            "default": {"cpu": "500m", "memory": "512Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
            "max": {"cpu": _cpu_quantity(max_cpu), "memory": format_mib_quantity(max_mem)},
        },
        {"type": "PersistentVolumeClaim", "max": {"storage": format_mib_quantity(pvc_max)}},
    ]


# --------------------------------------------------------------------------------------------
# NetworkPolicies: deny everything, then allow each flow by name
# --------------------------------------------------------------------------------------------

RFC1918 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
# Link-local (cloud metadata endpoints such as 169.254.169.254) is never a legitimate S3 destination
LINK_LOCAL = "169.254.0.0/16"


def odoo_pod_labels(refs: Refs) -> dict[str, str]:
    """Every pod of the Odoo release (web, cron, module Job): helm/odoo's selector labels."""
    return {"app.kubernetes.io/name": "odoo", "app.kubernetes.io/instance": refs.odoo_release}


def odoo_web_labels(refs: Refs) -> dict[str, str]:
    return {**odoo_pod_labels(refs), "app.kubernetes.io/component": "web"}


def postgres_labels(refs: Refs) -> dict[str, str]:
    # CloudNativePG labels instance pods cnpg.io/cluster=<name> and cnpg.io/podRole=instance
    return {"cnpg.io/cluster": refs.pg_cluster, "cnpg.io/podRole": "instance"}


def pooler_labels(refs: Refs) -> dict[str, str]:
    return {"cnpg.io/poolerName": refs.pooler}


def redis_labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": "redis", "app.kubernetes.io/instance": "redis"}


def _ns(name: str) -> dict[str, Any]:
    # kubernetes.io/metadata.name is set by the API server and cannot be forged: it matches one namespace
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def _ports(*ports: int, protocol: str = "TCP") -> list[dict[str, Any]]:
    return [{"protocol": protocol, "port": p} for p in ports]


def s3_port(sized: Sized) -> int:
    storage = sized.spec.object_storage
    if storage.mode == "aws" or not storage.endpoint:
        return 443
    parts = urlsplit(storage.endpoint)
    return parts.port or (80 if parts.scheme == "http" else 443)


def s3_peer(sized: Sized) -> dict[str, Any]:
    if sized.spec.object_storage.mode == "aws":
        # AWS S3 is on public addresses: nothing private, nothing link-local
        return {"ipBlock": {"cidr": "0.0.0.0/0", "except": [*RFC1918, LINK_LOCAL]}}
    # an S3-compatible store (MinIO, Ceph RGW) often lives on a private network: its address is not known
    # here, so only the port narrows the rule (see runbooks/provisioning.md to pin its CIDR)
    return {"ipBlock": {"cidr": "0.0.0.0/0", "except": [LINK_LOCAL]}}


def network_policies(sized: Sized, refs: Refs) -> list[tuple[str, dict[str, Any]]]:
    """(name, NetworkPolicy spec) pairs. Every namespaceSelector names one namespace by its exact name:
    the ingress controller's, kube-system (DNS) or the CloudNativePG operator's — never another erpops one."""
    k8s = sized.spec.kubernetes
    odoo, web = odoo_pod_labels(refs), odoo_web_labels(refs)
    pg, pooler, redis = postgres_labels(refs), pooler_labels(refs), redis_labels()
    dns_peer = {**_ns("kube-system"), "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
    # CloudNativePG's instance manager (in instance and PgBouncer pods) watches its objects through the
    # Kubernetes API; the API server's address differs per cluster, so the rule is by port only.
    api_peer = {"ipBlock": {"cidr": "0.0.0.0/0", "except": [LINK_LOCAL]}}
    policies: list[tuple[str, dict[str, Any]]] = [
        ("default-deny-all", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        ("allow-dns-egress", {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [dns_peer], "ports": _ports(53, protocol="UDP") + _ports(53)}],
        }),
        ("odoo-web-from-ingress", {
            "podSelector": {"matchLabels": web},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [_ns(k8s.ingress_namespace)], "ports": _ports(ODOO_HTTP_PORT, ODOO_WEBSOCKET_PORT)}],
        }),
        ("odoo-egress", {
            "podSelector": {"matchLabels": odoo},
            "policyTypes": ["Egress"],
            "egress": odoo_egress(sized, refs),
        }),
        ("pooler-from-odoo", {
            "podSelector": {"matchLabels": pooler},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": odoo}}], "ports": _ports(POSTGRES_PORT)},
                        *_scrape(sized, PGBOUNCER_METRICS_PORT)],
            "egress": [
                {"to": [{"podSelector": {"matchLabels": pg}}], "ports": _ports(POSTGRES_PORT)},
                {"to": [api_peer], "ports": _ports(443, 6443)},
            ],
        }),
        ("postgres", {
            "podSelector": {"matchLabels": {"cnpg.io/cluster": refs.pg_cluster}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": pooler}}], "ports": _ports(POSTGRES_PORT)},
                # replication between instances, and the instance manager's status endpoint
                {"from": [{"podSelector": {"matchLabels": {"cnpg.io/cluster": refs.pg_cluster}}}],
                 "ports": _ports(POSTGRES_PORT, 8000)},
                {"from": [_ns(CNPG_NAMESPACE)], "ports": _ports(8000, POSTGRES_PORT)},
                *_scrape(sized, CNPG_METRICS_PORT),
            ],
            "egress": [
                {"to": [{"podSelector": {"matchLabels": {"cnpg.io/cluster": refs.pg_cluster}}}],
                 "ports": _ports(POSTGRES_PORT, 8000)},
                # barman-cloud: WAL archive and base backups
                {"to": [s3_peer(sized)], "ports": _ports(s3_port(sized))},
                {"to": [api_peer], "ports": _ports(443, 6443)},
            ],
        }),
    ]
    if sized.spec.monitoring.namespace and sized.spec.monitoring.scrape_odoo_health:
        policies.append(("odoo-web-from-monitoring", {
            "podSelector": {"matchLabels": web},
            "policyTypes": ["Ingress"],
            "ingress": _scrape(sized, ODOO_HTTP_PORT),
        }))
    if sized.spec.redis.enabled and sized.spec.redis.mode == "in-cluster":
        policies.append(("redis-from-odoo", {
            "podSelector": {"matchLabels": redis},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": odoo}}], "ports": _ports(REDIS_PORT)}],
        }))
    return policies


def _scrape(sized: Sized, port: int) -> list[dict[str, Any]]:
    """Ingress rules admitting the monitoring namespace (Prometheus) to an exporter port, if one is named."""
    namespace = sized.spec.monitoring.namespace
    return [{"from": [_ns(namespace)], "ports": _ports(port)}] if namespace else []


def _cidrs(cidrs: list[str]) -> list[dict[str, Any]]:
    return [{"ipBlock": {"cidr": c}} for c in cidrs]


def odoo_egress(sized: Sized, refs: Refs) -> list[dict[str, Any]]:
    """Where Odoo's pods may connect: the pooler; S3 only when attachments live there; the session Redis;
    the spec's SMTP and mailbox servers, each on its port to its addresses only."""
    spec = sized.spec
    rules: list[dict[str, Any]] = [
        {"to": [{"podSelector": {"matchLabels": pooler_labels(refs)}}], "ports": _ports(POSTGRES_PORT)}]
    if spec.redis.enabled:
        if spec.redis.mode == "managed" and spec.redis.endpoint:
            rules.append({"to": _cidrs(spec.redis.cidrs), "ports": _ports(int(spec.redis.endpoint.rsplit(":", 1)[1]))})
        else:
            rules.append({"to": [{"podSelector": {"matchLabels": redis_labels()}}], "ports": _ports(REDIS_PORT)})
    if spec.filestore.mode == "object-storage":
        rules.append({"to": [s3_peer(sized)], "ports": _ports(s3_port(sized))})
    if spec.mail.outgoing:
        rules.append({"to": _cidrs(spec.mail.outgoing.cidrs), "ports": _ports(spec.mail.outgoing.port)})
    for box in spec.mail.incoming:
        rules.append({"to": _cidrs(box.cidrs), "ports": _ports(box.port)})
    return rules


def pod_monitor_specs(sized: Sized, refs: Refs) -> list[tuple[str, dict[str, Any]]]:
    """Prometheus Operator PodMonitors of the two exporters (when the spec says its CRDs are installed)."""
    if not sized.spec.monitoring.pod_monitors:
        return []
    return [
        (f"{refs.pg_cluster}-metrics", {"selector": {"matchLabels": {"cnpg.io/cluster": refs.pg_cluster}},
                                         "podMetricsEndpoints": [{"port": "metrics"}]}),
        (f"{refs.pooler}-metrics", {"selector": {"matchLabels": pooler_labels(refs)},
                                     "podMetricsEndpoints": [{"port": "metrics"}]}),
    ]


def allowed_namespaces(sized: Sized) -> set[str]:
    """The only namespaces any policy admits, each by exact name."""
    extra = {sized.spec.monitoring.namespace} if sized.spec.monitoring.namespace else set()
    return {sized.spec.kubernetes.ingress_namespace, "kube-system", CNPG_NAMESPACE, *extra}


# --------------------------------------------------------------------------------------------
# Pod security: PSS "restricted"
# --------------------------------------------------------------------------------------------

def restricted_container_security(read_only_root: bool = True) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_pod_security(uid: int | None = None, gid: int | None = None) -> dict[str, Any]:
    ctx: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    if uid is not None:
        ctx["runAsUser"] = uid
    if gid is not None:
        ctx.update(runAsGroup=gid, fsGroup=gid)
    return ctx


# --------------------------------------------------------------------------------------------
# Object specs: CloudNativePG Cluster, ScheduledBackup, Pooler; the Redis StatefulSet
# --------------------------------------------------------------------------------------------

ROTATION_ANNOTATION = "erpops.io/redis-password-rotation"


def cluster_spec(sized: Sized, refs: Refs) -> dict[str, Any]:
    spec = sized.spec
    pg = spec.postgres
    storage = spec.object_storage
    barman: dict[str, Any] = {
        "destinationPath": f"s3://{storage.backup_bucket}/postgres/",
        "s3Credentials": {
            "accessKeyId": {"name": refs.s3_secret, "key": refs.s3_access_key_id_key},
            "secretAccessKey": {"name": refs.s3_secret, "key": refs.s3_secret_access_key_key},
            "region": {"name": refs.s3_secret, "key": "region"},
        },
        # zstd for WAL (many small files). Base backups accept only bzip2/gzip/snappy (lz4 on newer
        # operators): snappy is the fastest to take (barman-cloud's benchmark: 8 s vs gzip 116 s for
        # 395 MB) and restores about as fast as uncompressed, at a 2.4:1 ratio
        "wal": {"compression": "zstd", "maxParallel": 2},
        "data": {"compression": "snappy", "jobs": 2},
    }
    if storage.mode == "s3-compatible":
        barman["endpointURL"] = storage.endpoint
    out: dict[str, Any] = {
        "instances": pg.instances,
        "imageName": pg_image(pg.major_version, spec.cnpg.image),
        "primaryUpdateStrategy": "unsupervised",
        "primaryUpdateMethod": "switchover",
        "enableSuperuserAccess": False,
        "seccompProfile": {"type": "RuntimeDefault"},
        "inheritedMetadata": {"labels": stack_labels(refs)},
        "resources": pg_resources(sized),
        "storage": {"size": pg.storage, "storageClass": spec.kubernetes.storage_class},
        "postgresql": {"parameters": cnpg_parameters(sized)},
        "bootstrap": {"initdb": {
            "database": sized.database,
            "owner": refs.pg_owner,
            "dataChecksums": True,
            # Odoo creates its databases UTF8 with LC_COLLATE 'C': match it
            "encoding": "UTF8",
            "localeCollate": "C",
            "localeCType": "C",
        }},
        "backup": {
            "barmanObjectStore": barman,
            "retentionPolicy": cnpg_retention_policy(spec.backup.retention),
        },
    }
    if spec.drill.enabled and spec.drill.target == "server":
        out["managed"] = {"roles": [drill_role(sized)]}
    if pg.instances > 1:
        out["affinity"] = {
            "enablePodAntiAffinity": True,
            "topologyKey": "kubernetes.io/hostname",
            # prod refuses to stack two instances on one node; smaller tiers prefer not to
            "podAntiAffinityType": "required" if spec.tier == "prod" else "preferred",
        }
    return out


def pooler_spec(sized: Sized, refs: Refs) -> dict[str, Any]:
    budget = sized.budget
    return {
        "cluster": {"name": refs.pg_cluster},
        "instances": sized.spec.pooler.instances,
        "type": "rw",
        "pgbouncer": {
            # Odoo holds its connection for a whole request and uses session features: session mode
            "poolMode": sized.spec.pooler.mode,
            "parameters": {
                # per PgBouncer: one pooler must take every client while the other restarts
                "max_client_conn": str(sized.spec.pooler.max_client_conn),
                "default_pool_size": str(budget.pool_size),
            },
        },
        "template": {
            "metadata": {"labels": stack_labels(refs)},
            "spec": {
                "securityContext": restricted_pod_security(),
                "containers": [{
                    "name": "pgbouncer",
                    "resources": pooler_resources(),
                    "securityContext": restricted_container_security(),
                }],
            },
        },
    }


def scheduled_backup_spec(sized: Sized, refs: Refs) -> dict[str, Any]:
    return {
        "schedule": cnpg_schedule(sized.spec.backup.schedule),
        "cluster": {"name": refs.pg_cluster},
        "method": "barmanObjectStore",
        "backupOwnerReference": "self",
        # a fresh cluster gets its first base backup now, not at the next schedule
        "immediate": True,
    }


def _probe(initial_delay: int, period: int) -> dict[str, Any]:
    # redis-cli reads the password from REDISCLI_AUTH; grep, because an error reply still exits 0
    return {
        "exec": {"command": ["sh", "-c", f"redis-cli -p {REDIS_PORT} ping | grep -q PONG"]},
        "initialDelaySeconds": initial_delay,
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
    }


def redis_statefulset_spec(sized: Sized, refs: Refs, rotation: str) -> dict[str, Any]:
    redis = sized.spec.redis
    pod_labels = redis_labels()
    password_ref = {"secretKeyRef": {"name": refs.redis_secret, "key": refs.redis_password_key}}
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    claims: list[dict[str, Any]] = []
    if redis.persistence:
        claims.append({
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": sized.spec.kubernetes.storage_class,
                "resources": {"requests": {"storage": redis.storage}},
            },
        })
    else:
        volumes.append({"name": "data", "emptyDir": {"sizeLimit": "64Mi"}})
    spec: dict[str, Any] = {
        "serviceName": refs.redis_service,
        "replicas": 1,
        "selector": {"matchLabels": pod_labels},
        "template": {
            "metadata": {
                "labels": pod_labels,
                # the password is read at start: a rotation must restart the pod
                "annotations": {ROTATION_ANNOTATION: rotation},
            },
            "spec": {
                "serviceAccountName": refs.redis_sa,
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": restricted_pod_security(REDIS_UID, REDIS_GID),
                "terminationGracePeriodSeconds": 30,
                "containers": [{
                    "name": "redis",
                    "image": REDIS_IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["redis-server"],
                    "args": redis_args(sized),
                    "env": [
                        {"name": "REDIS_PASSWORD", "valueFrom": password_ref},
                        {"name": "REDISCLI_AUTH", "valueFrom": password_ref},
                    ],
                    "ports": [{"name": "redis", "containerPort": REDIS_PORT, "protocol": "TCP"}],
                    "resources": redis_resources(sized),
                    "securityContext": restricted_container_security(),
                    "readinessProbe": _probe(5, 10),
                    "livenessProbe": _probe(30, 20),
                    "volumeMounts": [
                        {"name": "data", "mountPath": "/data"},
                        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (an emptyDir in the pod)
                    ],
                }],
                "volumes": volumes,
            },
        },
    }
    if claims:
        spec["volumeClaimTemplates"] = claims
    return spec


# --------------------------------------------------------------------------------------------
# The restore drill (spec drill): a CronJob running `erpops drill` in the stack's namespace
# --------------------------------------------------------------------------------------------

DRILL_NAME = "erpops-drill"
DRILL_DB_ROLE = "erpops_drill"
DRILL_DB_SECRET = "erpops-drill-db"  # noqa: S105 (a Secret's name)
DRILL_S3_SECRET = "erpops-drill-s3"  # noqa: S105 (a Secret's name)
DRILL_SPEC_CONFIGMAP = "erpops-drill-spec"
DRILL_UID = 10001  # the erpops user of images/erpops
DRILL_PG_JOBS = 2
DRILL_JOB_TTL_SECONDS = 7 * 24 * 3600
# drill.target: cluster: the drill's own CloudNativePG cluster
DRILL_CLUSTER = "erpops-drill-pg"
# drill.odoo_login: the stack's Odoo image as a native sidecar of the drill pod, on loopback only
DRILL_ODOO_PORT = 8069
DRILL_ODOO_URL = f"http://127.0.0.1:{DRILL_ODOO_PORT}"
DRILL_ODOO_DB_MAXCONN = 4  # threaded Odoo, one login: the registry load's cursors and one spare
DRILL_ODOO_CONF_DIR = "/run/odoo"
# Odoo starts in seconds (no database is loaded at start); the login loads the copy's registry later. The drill
# itself waits again for Odoo to answer (erpops drill --odoo-wait, 600 s by default) before the check fails.
DRILL_ODOO_STARTUP_PERIOD_SECONDS, DRILL_ODOO_STARTUP_FAILURES = 5, 60


def drill_connection_limit(sized: Sized) -> int:
    """pg_restore -j 2, psql and the health check at once, one spare; plus the Odoo sidecar's pool."""
    return DRILL_PG_JOBS + 3 + (DRILL_ODOO_DB_MAXCONN if sized.spec.drill.odoo_login else 0)


def drill_labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": DRILL_NAME, "app.kubernetes.io/component": "restore-drill"}


def drill_resources(sized: Sized) -> dict[str, Any]:
    r = sized.spec.drill.resources
    q = {"cpu": r.cpu, "memory": r.memory}
    return {"requests": dict(q), "limits": dict(q)}


def drill_role(sized: Sized) -> dict[str, Any]:
    """CloudNativePG managed role of the drill: logs in, creates (and so owns and may drop) its scratch
    databases, nothing else. Not a superuser, not a member of the Odoo owner: it cannot touch the live
    database's objects, and DROP DATABASE of the live one is refused by PostgreSQL itself (not the owner)."""
    return {
        "name": DRILL_DB_ROLE, "ensure": "present", "login": True, "createdb": True, "superuser": False,
        # INHERIT: as owner of its scratch databases the role is pg_database_owner there, which owns schema
        # public (PostgreSQL 15+); NOINHERIT would deny pg_restore that schema. It is granted no other role.
        "createrole": False, "replication": False, "bypassrls": False, "inherit": True, "inRoles": [],
        "connectionLimit": drill_connection_limit(sized), "passwordSecret": {"name": DRILL_DB_SECRET},
        "comment": "erpops restore drill: scratch databases only",
    }


def drill_s3_policy(bucket_arn: str, stack: str) -> dict[str, Any]:
    """Read-only on the stack's backup sets; write only its own reports under <stack>/drills/."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ListTheBackups", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
             "Resource": [bucket_arn], "Condition": {"StringLike": {"s3:prefix": [f"{stack}/*", stack]}}},
            {"Sid": "ReadTheBackups", "Effect": "Allow", "Action": ["s3:GetObject"],
             "Resource": [f"{bucket_arn}/{stack}/*"]},
            {"Sid": "WriteDrillReports", "Effect": "Allow", "Action": ["s3:PutObject"],
             "Resource": [f"{bucket_arn}/{stack}/drills/*"]},
        ],
    }


def drill_odoo_resources(sized: Sized) -> dict[str, Any]:
    r = sized.spec.drill.odoo_resources
    q = {"cpu": r.cpu, "memory": r.memory}
    return {"requests": dict(q), "limits": dict(q)}


def drill_cluster_resources(sized: Sized) -> dict[str, Any]:
    c = sized.spec.drill.cluster
    q = {"cpu": c.cpu, "memory": c.memory}
    return {"requests": dict(q), "limits": dict(q)}


def drill_cluster_labels() -> dict[str, str]:
    # not the drill pod's labels: the drill's NetworkPolicies must not select the scratch cluster's pods
    return {"cnpg.io/cluster": DRILL_CLUSTER, "cnpg.io/podRole": "instance"}


def drill_pg_host(sized: Sized, refs: Refs) -> str:
    return f"{DRILL_CLUSTER}-rw" if sized.spec.drill.target == "cluster" else refs.pg_rw_service


def drill_cluster_parameters(sized: Sized) -> dict[str, str]:
    """A small server for one restore at a time: PGTune's ratios on drill.cluster.memory, few connections."""
    memory = mib(sized.spec.drill.cluster.memory)
    return {
        "max_connections": str(drill_connection_limit(sized) + 10),
        "shared_buffers": f"{memory // 4}MB",
        "effective_cache_size": f"{memory * 3 // 4}MB",
        "maintenance_work_mem": f"{min(memory // 8, 2048)}MB",
        "work_mem": "16MB",
        "max_wal_size": "4GB",
        "checkpoint_timeout": "15min",
    }


def drill_cluster_spec(sized: Sized, refs: Refs) -> dict[str, Any]:
    """drill.target: cluster: one instance, its own small volume, no backups (no barmanObjectStore, no
    ScheduledBackup: what it holds is a copy for minutes); the drill's managed role is created here."""
    spec = sized.spec
    return {
        "instances": 1,
        "imageName": pg_image(spec.postgres.major_version, spec.cnpg.image),
        "primaryUpdateStrategy": "unsupervised",
        "enableSuperuserAccess": False,
        "seccompProfile": {"type": "RuntimeDefault"},
        "inheritedMetadata": {"labels": {**stack_labels(refs), "app.kubernetes.io/component": "restore-drill-db"}},
        "resources": drill_cluster_resources(sized),
        "storage": {"size": spec.drill.cluster.storage, "storageClass": spec.kubernetes.storage_class},
        "postgresql": {"parameters": drill_cluster_parameters(sized)},
        "bootstrap": {"initdb": {"database": "app", "owner": "app", "dataChecksums": True, "encoding": "UTF8",
                                 "localeCollate": "C", "localeCType": "C"}},
        "managed": {"roles": [drill_role(sized)]},
    }


def drill_pushgateway(sized: Sized) -> tuple[str, int]:
    parts = urlsplit(sized.spec.drill.pushgateway or "")
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def drill_cronjob_spec(sized: Sized, refs: Refs) -> dict[str, Any]:
    d, storage = sized.spec.drill, sized.spec.object_storage
    secret = {"name": DRILL_S3_SECRET}
    env: list[dict[str, Any]] = [
        *drill_pg_env(sized, refs),
        {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {**secret, "key": refs.s3_access_key_id_key}}},
        {"name": "AWS_SECRET_ACCESS_KEY",
         "valueFrom": {"secretKeyRef": {**secret, "key": refs.s3_secret_access_key_key}}},
        {"name": "AWS_DEFAULT_REGION", "value": storage.region},
        {"name": "AWS_EC2_METADATA_DISABLED", "value": "true"},
        {"name": "TMPDIR", "value": "/scratch"},
        {"name": "HOME", "value": "/scratch"},
    ]
    if storage.mode == "s3-compatible" and storage.endpoint:
        env.append({"name": "ERPOPS_S3_ENDPOINT_URL", "value": storage.endpoint})
    args = ["--root", "/etc/erpops", "drill", "--stack", refs.stack, "--work-dir", "/scratch",
            "--report-dir", "/scratch/reports", "--jobs", str(DRILL_PG_JOBS)]
    args += ["--odoo-url", DRILL_ODOO_URL] if d.odoo_login else ["--no-odoo-login"]
    volumes: list[dict[str, Any]] = [
        {"name": "scratch", "emptyDir": {"sizeLimit": d.scratch_size}},
        {"name": "spec", "configMap": {"name": DRILL_SPEC_CONFIGMAP}},
    ]
    if d.odoo_login:
        volumes += [{"name": "odoo-data", "emptyDir": {"sizeLimit": "1Gi"}},
                    {"name": "odoo-run", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                    {"name": "odoo-tmp", "emptyDir": {"sizeLimit": "512Mi"}}]
    pod = {
        "metadata": {"labels": {**stack_labels(refs), **drill_labels()}},
        "spec": {
            "serviceAccountName": DRILL_NAME,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "restartPolicy": "Never",
            "securityContext": restricted_pod_security(DRILL_UID, DRILL_UID),
            # SIGTERM at the deadline: the drill drops its scratch database on the way out
            "terminationGracePeriodSeconds": 120,
            "containers": [{
                "name": "drill",
                "image": d.image,
                "imagePullPolicy": "IfNotPresent",
                "args": args,
                "env": env,
                "resources": drill_resources(sized),
                "securityContext": restricted_container_security(),
                "volumeMounts": [
                    {"name": "scratch", "mountPath": "/scratch"},
                    {"name": "spec", "mountPath": "/etc/erpops", "readOnly": True},
                ],
            }],
            "volumes": volumes,
        },
    }
    if d.odoo_login:
        pod["spec"]["initContainers"] = [drill_odoo_sidecar(sized, refs)]
    return {
        "schedule": d.schedule,
        "timeZone": "Etc/UTC",
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 3600,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {
            "metadata": {"labels": {**stack_labels(refs), **drill_labels()}},
            "spec": {
                # a failed drill is a verdict, not a glitch to retry into the next one
                "backoffLimit": 0,
                "activeDeadlineSeconds": d.deadline_minutes * 60,
                "ttlSecondsAfterFinished": DRILL_JOB_TTL_SECONDS,
                "template": pod,
            },
        },
    }


def drill_pg_env(sized: Sized, refs: Refs) -> list[dict[str, Any]]:
    """libpq's variables for the drill and its Odoo sidecar: the drill's own role, TLS required."""
    return [
        {"name": "PGHOST", "value": drill_pg_host(sized, refs)},
        {"name": "PGPORT", "value": str(POSTGRES_PORT)},
        {"name": "PGUSER", "valueFrom": {"secretKeyRef": {"name": DRILL_DB_SECRET, "key": "username"}}},
        {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": DRILL_DB_SECRET, "key": "password"}}},
        # CloudNativePG serves TLS: never fall back to a clear-text connection
        {"name": "PGSSLMODE", "value": "require"},
    ]


def drill_odoo_uid(sized: Sized) -> int:
    # the official image's odoo user (helm/odoo _helpers.tpl odoo.runAsUser): 100 on 18.0's noble, else 101
    return 100 if sized.spec.odoo.version == "18.0" else 101


DRILL_ODOO_GID = 101


def drill_odoo_conf(sized: Sized) -> str:
    """odoo.conf of the sidecar without admin_passwd (added at start, random): loopback, threaded, no cron, no
    database list, the drill's scratch databases only, through the drill's own role (libpq's PG* variables)."""
    from erpops import image as odoo_image
    from erpops.backup.drill import drill_db_pattern

    running = odoo_image.odoo_image(sized)
    addons = ["/mnt/extra-addons", *([odoo_image.ADDONS_PATH] if running.built else [])]
    return "\n".join([
        "[options]",
        f"addons_path = {','.join(addons)}",
        "data_dir = /var/lib/odoo",
        f"dbfilter = {drill_db_pattern(sized.database)}",
        "list_db = False",
        "http_interface = 127.0.0.1",
        f"http_port = {DRILL_ODOO_PORT}",
        "workers = 0",
        "max_cron_threads = 0",
        "db_sslmode = require",
        f"db_maxconn = {DRILL_ODOO_DB_MAXCONN}",
        "server_wide_modules = base,web",
        "proxy_mode = False",
        "log_level = info",
    ]) + "\n"


def drill_odoo_sidecar(sized: Sized, refs: Refs) -> dict[str, Any]:
    """The stack's own Odoo image as a native sidecar (an init container with restartPolicy Always, Kubernetes
    1.29+): started before the drill, stopped after it. It reads the copy through the drill's role and has no
    S3 key, no mail server (the copy is neutralized) and no listener but 127.0.0.1."""
    from erpops import image as odoo_image

    conf = f"{DRILL_ODOO_CONF_DIR}/odoo.conf"
    # $$( is Kubernetes' escape for a literal $( : the shell gets command substitution
    script = "\n".join([
        "umask 077",
        f"cat > {conf} <<'EOF'",
        drill_odoo_conf(sized).rstrip("\n"),
        "EOF",
        "printf 'admin_passwd = %s\\n' \"$$(od -An -N32 -tx1 /dev/urandom | tr -d ' \\n')\" >> " + conf,
        f"exec odoo --config={conf}",
    ])
    health = f"http://127.0.0.1:{DRILL_ODOO_PORT}/web/health"
    uid = drill_odoo_uid(sized)
    return {
        "name": "odoo",
        "image": odoo_image.odoo_image(sized).ref,
        "imagePullPolicy": "IfNotPresent",
        "restartPolicy": "Always",
        "command": ["/bin/sh", "-ec", script],
        "env": drill_pg_env(sized, refs),
        "resources": drill_odoo_resources(sized),
        "securityContext": {**restricted_container_security(), "runAsUser": uid, "runAsGroup": DRILL_ODOO_GID},
        # bound to 127.0.0.1, so the kubelet cannot reach it over HTTP: the probe runs inside the container
        "startupProbe": {
            "exec": {"command": ["python3", "-c", f"import urllib.request; urllib.request.urlopen({health!r}, "
                                                  "timeout=4).read()"]},
            "periodSeconds": DRILL_ODOO_STARTUP_PERIOD_SECONDS,
            "timeoutSeconds": 5,
            "failureThreshold": DRILL_ODOO_STARTUP_FAILURES,
        },
        "volumeMounts": [
            {"name": "odoo-data", "mountPath": "/var/lib/odoo"},
            {"name": "odoo-run", "mountPath": DRILL_ODOO_CONF_DIR},
            {"name": "odoo-tmp", "mountPath": "/tmp"},  # noqa: S108 (an emptyDir in the pod)
        ],
    }


def drill_network_policies(sized: Sized, refs: Refs) -> list[tuple[str, dict[str, Any]]]:
    """The drill reaches PostgreSQL (directly: CREATE DATABASE and pg_restore -j, not through the pooler),
    the backup bucket and the Pushgateway; PostgreSQL admits it. Nothing reaches the drill."""
    host, port = drill_pushgateway(sized)
    monitoring = sized.spec.monitoring.namespace
    in_cluster = bool(monitoring) and host.endswith((f".{monitoring}", f".{monitoring}.svc",
                                                     f".{monitoring}.svc.cluster.local"))
    push_peer = _ns(monitoring) if monitoring and in_cluster else {"ipBlock": {"cidr": "0.0.0.0/0",
                                                                              "except": [LINK_LOCAL]}}
    drill = drill_labels()
    scratch_cluster = sized.spec.drill.target == "cluster"
    server = drill_cluster_labels() if scratch_cluster else postgres_labels(refs)
    # the Odoo sidecar shares the pod (a NetworkPolicy selects pods, not containers): it listens on loopback
    # only, which no policy governs, and it is given no S3 key; nothing may connect to the pod at all
    policies: list[tuple[str, dict[str, Any]]] = [
        ("drill-egress", {
            "podSelector": {"matchLabels": drill},
            "policyTypes": ["Ingress", "Egress"],
            "egress": [
                {"to": [{"podSelector": {"matchLabels": server}}], "ports": _ports(POSTGRES_PORT)},
                {"to": [s3_peer(sized)], "ports": _ports(s3_port(sized))},
                {"to": [push_peer], "ports": _ports(port)},
            ],
        }),
    ]
    if not scratch_cluster:
        policies.append(("postgres-from-drill", {
            "podSelector": {"matchLabels": server},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": drill}}], "ports": _ports(POSTGRES_PORT)}],
        }))
        return policies
    own = {"podSelector": {"matchLabels": {"cnpg.io/cluster": DRILL_CLUSTER}}}
    api_peer = {"ipBlock": {"cidr": "0.0.0.0/0", "except": [LINK_LOCAL]}}
    policies.append(("drill-postgres", {
        # the scratch cluster: the drill connects, the operator manages it; it backs up nothing, so no S3
        "podSelector": {"matchLabels": {"cnpg.io/cluster": DRILL_CLUSTER}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [
            {"from": [{"podSelector": {"matchLabels": drill}}], "ports": _ports(POSTGRES_PORT)},
            {"from": [own], "ports": _ports(POSTGRES_PORT, 8000)},
            {"from": [_ns(CNPG_NAMESPACE)], "ports": _ports(8000, POSTGRES_PORT)},
        ],
        "egress": [
            {"to": [own], "ports": _ports(POSTGRES_PORT, 8000)},
            {"to": [api_peer], "ports": _ports(443, 6443)},
        ],
    }))
    return policies


def drill_alert_rules(sized: Sized, refs: Refs) -> dict[str, Any]:
    """PrometheusRule spec: drill failed, no successful drill within drill.no_success_hours, RTO above
    backup.rto_minutes. The Pushgateway's series carry the push's grouping labels (job, stack)."""
    d, stack = sized.spec.drill, refs.stack
    sel = f'job="erpops_drill",stack="{stack}"'
    hours = d.no_success_hours
    rto = sized.spec.backup.rto_minutes

    def rule(alert: str, expr: str, duration: str, severity: str, summary: str, runbook: str) -> dict[str, Any]:
        return {"alert": alert, "expr": expr, "for": duration, "labels": {"severity": severity, "stack": stack},
                "annotations": {"summary": summary, "runbook": f"runbooks/alerts/{runbook}.md"}}

    return {"groups": [{"name": "erpops-drill", "rules": [
        rule("ErpopsDrillFailed", f"max(erpops_drill_success{{{sel}}}) == 0", "0m", "critical",
             f"The last restore drill of {stack} failed: its newest backup did not restore cleanly", "drill.failed"),
        rule("ErpopsDrillNoRecentSuccess",
             f"time() - max(erpops_drill_last_success_timestamp_seconds{{{sel}}}) > {hours * 3600}", "15m",
             "critical", f"No restore drill of {stack} passed in {hours} h", "drill.no_success"),
        rule("ErpopsDrillNeverSucceeded", f"absent(erpops_drill_last_success_timestamp_seconds{{{sel}}})",
             f"{hours}h", "warning", f"No restore drill of {stack} has ever passed", "drill.no_success"),
        rule("ErpopsDrillRtoAboveObjective", f'max(erpops_drill_rto_seconds{{{sel},step="total"}}) > {rto * 60}',
             "0m", "warning", f"The last restore drill of {stack} took longer than the RTO of {rto} min",
             "drill.rto"),
    ]}]}
