"""The real Pulumi program (infra/__main__.py) under Pulumi's mocks, once per stack.

Asserts on what `pulumi up` would register: the namespace and its Pod Security labels, the explicit
provider on every Kubernetes resource, component parents, NetworkPolicies, per-stack names, the
CloudNativePG parameters and pooler against the sizing, AWS buckets and IAM, and a bad spec that stops
the program before a single resource is registered. Messages name the resource's URN.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import pulumi
import pytest

from erpops import spec
from erpops.helm_values import chart_values, odoo_values
from erpops.naming import refs_for
from infra import derive, render
from infra.chart import render_chart

ROOT = Path(__file__).resolve().parents[2]
STACKS = ["dev", "staging", "prod"]


class Run:
    """One run of the program for a stack: every registration, the resolved `ops` output, the sizing."""

    def __init__(self, stack: str, regs: list[render.Registration], ops: dict[str, Any], sized: spec.Sized,
                 checked: dict[str, Any]) -> None:
        self.stack, self.regs, self.ops, self.sized, self.checked = stack, regs, ops, sized, checked

    def of_type(self, token: str) -> list[render.Registration]:
        return [r for r in self.regs if r.type == token]

    def one(self, token: str, name: str | None = None) -> render.Registration:
        found = [r for r in self.of_type(token) if name is None or r.inputs.get("metadata", {}).get("name") == name]
        assert len(found) == 1, f"expected one {token} {name or ''} in stack {self.stack}, got {len(found)}"
        return found[0]

    def manifests(self) -> list[render.Registration]:
        return [r for r in self.regs if r.custom and r.type.startswith("kubernetes:") and "kind" in r.inputs]


def _inspect(checked: dict[str, Any]):
    """Assertions inside Output.all(...).apply, on the program's own component objects: returned to the
    mocks runner, which awaits it, so a failing assertion fails the run instead of passing silently."""

    def inspect(program: dict[str, Any]) -> pulumi.Output:
        env, postgres, sized = program["env"], program["postgres"], program["sized"]

        def check(args: list[Any]) -> None:
            ns_meta, ns_urn, pooler_spec, pooler_urn = args
            assert ns_meta["name"] == sized.namespace, f"{ns_urn}: namespace is {ns_meta['name']}"
            assert ns_meta["labels"]["pod-security.kubernetes.io/enforce"] == "restricted", ns_urn
            pgb = pooler_spec["pgbouncer"]
            assert int(pgb["parameters"]["default_pool_size"]) == sized.budget.pool_size, pooler_urn
            checked["outputs"] = True

        return pulumi.Output.all(env.namespace.metadata, env.namespace.urn, postgres.pooler.spec,
                                 postgres.pooler.urn).apply(check)

    return inspect


@cache
def run(stack: str) -> Run:
    raw = spec.read_raw(spec.stack_file(ROOT, stack))
    sized = spec.validate(raw, stack)
    secrets = render._Secrets()
    config, secret_keys = render.mock_config(raw, sized, secrets)
    checked: dict[str, Any] = {}
    regs, ops = render.run_program(ROOT, stack, config, secret_keys, secrets, inspect=_inspect(checked))
    return Run(stack, regs, ops, sized, checked)


@pytest.fixture(params=STACKS)
def r(request: pytest.FixtureRequest) -> Run:
    return run(request.param)


# --------------------------------------------------------------------------------------------
# Namespace, provider, parents
# --------------------------------------------------------------------------------------------

def test_outputs_were_checked_inside_apply(r: Run) -> None:
    assert r.checked.get("outputs") is True, "the Output.all(...).apply assertions never ran"


def test_namespace_is_per_stack_and_enforces_restricted(r: Run) -> None:
    ns = r.one("kubernetes:core/v1:Namespace", f"erpops-{r.stack}")
    labels = ns.inputs["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted", f"{ns.urn}: {mode} label"
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "latest", f"{ns.urn}: {mode}-version"
    assert r.ops["namespace"] == f"erpops-{r.stack}"


def test_every_namespaced_object_lives_in_the_stack_namespace(r: Run) -> None:
    for reg in r.manifests():
        if reg.inputs["kind"] == "Namespace":
            continue
        assert reg.inputs["metadata"].get("namespace") == r.sized.namespace, f"{reg.urn}: wrong namespace"
        assert reg.inputs["metadata"].get("name"), f"{reg.urn}: no explicit metadata.name"


def test_every_kubernetes_resource_uses_the_stacks_explicit_provider(r: Run) -> None:
    provider = r.one("pulumi:providers:kubernetes")
    assert provider.inputs["context"] == r.sized.spec.kubernetes.context, provider.urn
    assert provider.inputs["namespace"] == r.sized.namespace, provider.urn
    reference = f"{provider.urn}::{provider.name}-id"
    k8s = [x for x in r.regs if x.type.startswith("kubernetes:")]
    assert k8s
    for reg in k8s:
        assert reg.provider == reference, f"{reg.urn} uses provider {reg.provider or 'default (ambient kubeconfig)'}"


def test_every_resource_is_the_child_of_a_component(r: Run) -> None:
    root = f"urn:pulumi:{r.stack}::erpops::pulumi:pulumi:Stack::erpops-{r.stack}"
    components = {x.urn for x in r.regs if x.type.startswith("erpops:")}
    assert {x.type for x in r.regs if x.urn in components} >= {
        "erpops:k8s:Environment", "erpops:k8s:ObjectStorage", "erpops:k8s:Postgres", "erpops:k8s:Odoo"}
    for reg in r.regs:
        if reg.urn in components:
            assert reg.parent == root, f"{reg.urn}: a component must sit under the stack, not {reg.parent}"
            assert not reg.custom, f"{reg.urn}: components are not custom resources"
        else:
            assert reg.parent in components, f"{reg.urn} has no component parent (parent {reg.parent!r})"


# --------------------------------------------------------------------------------------------
# NetworkPolicies
# --------------------------------------------------------------------------------------------

def _peers(policy: dict[str, Any]) -> list[dict[str, Any]]:
    spec_ = policy["spec"]
    return [p for rule in spec_.get("ingress", []) for p in rule.get("from", [])] + \
           [p for rule in spec_.get("egress", []) for p in rule.get("to", [])]


def test_a_default_deny_policy_covers_every_pod(r: Run) -> None:
    policies = [x for x in r.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")]
    deny = [p for p in policies if p.inputs["spec"]["podSelector"] == {}
            and set(p.inputs["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            and not p.inputs["spec"].get("ingress") and not p.inputs["spec"].get("egress")]
    assert len(deny) == 1, f"stack {r.stack}: no default-deny ingress+egress NetworkPolicy"


def test_no_policy_admits_another_namespace(r: Run) -> None:
    monitoring = r.sized.spec.monitoring.namespace
    allowed = {r.sized.spec.kubernetes.ingress_namespace, "kube-system", "cnpg-system",
               *([monitoring] if monitoring else [])}
    for reg in r.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy"):
        for peer in _peers(reg.inputs):
            if "namespaceSelector" not in peer:
                continue
            selector = peer["namespaceSelector"]
            assert set(selector) == {"matchLabels"}, f"{reg.urn}: namespaceSelector {selector} is not exact"
            labels = selector["matchLabels"]
            assert list(labels) == ["kubernetes.io/metadata.name"], f"{reg.urn}: selects by {labels}"
            name = labels["kubernetes.io/metadata.name"]
            assert name in allowed, f"{reg.urn}: admits namespace {name}"
            assert not name.startswith("erpops-"), f"{reg.urn}: admits another erpops namespace {name}"
        for rule in reg.inputs["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                assert "ipBlock" not in peer, f"{reg.urn}: ingress from an IP block bypasses namespaces"


def test_ingress_reaches_only_the_odoo_web_ports(r: Run) -> None:
    reg = r.one("kubernetes:networking.k8s.io/v1:NetworkPolicy", "odoo-web-from-ingress")
    (rule,) = reg.inputs["spec"]["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": r.sized.spec.kubernetes.ingress_namespace}}}], reg.urn
    assert sorted(p["port"] for p in rule["ports"]) == [8069, 8072], reg.urn
    assert reg.inputs["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "web", reg.urn


def _s3_rules(policy: render.Registration) -> list[dict[str, Any]]:
    return [rule for rule in policy.inputs["spec"]["egress"]
            if rule["to"][0].get("ipBlock", {}).get("cidr") == "0.0.0.0/0"
            and 6443 not in [p["port"] for p in rule["ports"]]]  # the Kubernetes API rule


@pytest.mark.parametrize("policy", ["odoo-egress", "postgres"])
def test_object_storage_egress_port_and_range(r: Run, policy: str) -> None:
    reg = r.one("kubernetes:networking.k8s.io/v1:NetworkPolicy", policy)
    storage = r.sized.spec.object_storage
    s3_rules = _s3_rules(reg)
    # Odoo reaches S3 only when its attachments live there; CloudNativePG always (backups)
    expected = 1 if policy == "postgres" or r.sized.spec.filestore.mode == "object-storage" else 0
    assert len(s3_rules) == expected, reg.urn
    for rule in s3_rules:
        assert [p["port"] for p in rule["ports"]] == [443], reg.urn
        excepted = set(rule["to"][0]["ipBlock"].get("except", []))
        if storage.mode == "aws":
            assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= excepted, f"{reg.urn}: RFC1918 reachable"


# --------------------------------------------------------------------------------------------
# PostgreSQL, pooler, Redis against the sizing
# --------------------------------------------------------------------------------------------

def test_cnpg_parameters_equal_the_sizing_minus_what_cnpg_fixes(r: Run) -> None:
    cluster = r.one("kubernetes:postgresql.cnpg.io/v1:Cluster")
    params = cluster.inputs["spec"]["postgresql"]["parameters"]
    expected = {k: v for k, v in r.sized.pg_parameters().items() if k not in derive.CNPG_FIXED_PARAMETERS}
    assert params == expected, cluster.urn
    assert not set(params) & derive.CNPG_FIXED_PARAMETERS, f"{cluster.urn}: sets a CNPG-fixed parameter"
    assert params["max_connections"] == str(r.sized.budget.max_connections), cluster.urn
    assert all(isinstance(v, str) for v in params.values()), f"{cluster.urn}: parameters must be strings"


def test_cluster_shape_follows_the_spec(r: Run) -> None:
    cluster = r.one("kubernetes:postgresql.cnpg.io/v1:Cluster")
    s = cluster.inputs["spec"]
    pg = r.sized.spec.postgres
    assert s["instances"] == pg.instances, cluster.urn
    assert s["imageName"] == f"ghcr.io/cloudnative-pg/postgresql:{derive.PG_MINOR[pg.major_version]}", cluster.urn
    assert s["resources"]["requests"] == s["resources"]["limits"], f"{cluster.urn}: not Guaranteed QoS"
    assert s["storage"] == {"size": pg.storage, "storageClass": r.sized.spec.kubernetes.storage_class}
    assert s["bootstrap"]["initdb"]["database"] == r.sized.database
    assert s["bootstrap"]["initdb"]["owner"] == "odoo"
    barman = s["backup"]["barmanObjectStore"]
    assert barman["destinationPath"] == f"s3://{r.sized.spec.object_storage.backup_bucket}/postgres/"
    assert ("endpointURL" in barman) == (r.sized.spec.object_storage.mode == "s3-compatible"), cluster.urn
    assert s["backup"]["retentionPolicy"] == f"{r.sized.spec.backup.retention.daily}d"
    if pg.instances > 1:
        assert s["affinity"]["enablePodAntiAffinity"] is True and \
            s["affinity"]["topologyKey"] == "kubernetes.io/hostname", cluster.urn
    backup = r.one("kubernetes:postgresql.cnpg.io/v1:ScheduledBackup")
    assert backup.inputs["spec"]["schedule"] == "0 " + r.sized.spec.backup.schedule, backup.urn
    assert len(backup.inputs["spec"]["schedule"].split()) == 6
    assert backup.inputs["spec"]["method"] == "barmanObjectStore"


def test_pooler_sizes_equal_the_budget(r: Run) -> None:
    pooler = r.one("kubernetes:postgresql.cnpg.io/v1:Pooler")
    s, budget = pooler.inputs["spec"], r.sized.budget
    assert s["type"] == "rw" and s["pgbouncer"]["poolMode"] == "session", pooler.urn
    assert s["instances"] == budget.pooler_instances, pooler.urn
    params = s["pgbouncer"]["parameters"]
    assert int(params["default_pool_size"]) == budget.pool_size, pooler.urn
    assert int(params["max_client_conn"]) == r.sized.spec.pooler.max_client_conn, pooler.urn
    assert int(params["max_client_conn"]) >= budget.client_connections, pooler.urn
    # the pooled server connections fit in max_connections with the direct and reserved ones
    assert budget.pool_size * s["instances"] + budget.direct_connections + budget.reserved \
        <= budget.max_connections, pooler.urn


def run_variant(stack: str, change: Any) -> Run:
    raw = copy.deepcopy(spec.read_raw(spec.stack_file(ROOT, stack)))
    change(raw)
    sized = spec.validate(raw, stack)
    secrets = render._Secrets()
    config, secret_keys = render.mock_config(raw, sized, secrets)
    regs, ops = render.run_program(ROOT, stack, config, secret_keys, secrets)
    return Run(stack, regs, ops, sized, {})


def _with_in_cluster_redis(raw: dict[str, Any]) -> None:
    """dev with sessions in an in-cluster Redis, on an image declared to carry session_redis."""
    raw["filestore"]["sessions"] = "redis"
    raw["redis"] = {"enabled": True, "persistence": True}
    raw["image"] = {"addons": ["session_redis"]}


@cache
def redis_run() -> Run:
    return run_variant("dev", _with_in_cluster_redis)


def test_no_shipped_stack_runs_a_redis_nothing_uses(r: Run) -> None:
    assert not r.of_type("kubernetes:apps/v1:StatefulSet"), f"{r.stack}: sessions are not in Redis"
    assert r.sized.spec.filestore.session_store != "redis"


def test_redis_password_comes_from_a_secret_never_the_args() -> None:
    r = redis_run()
    sts = r.one("kubernetes:apps/v1:StatefulSet", "redis")
    (c,) = sts.inputs["spec"]["template"]["spec"]["containers"]
    args = c["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)", sts.urn
    env = {e["name"]: e for e in c["env"]}
    for name in ("REDIS_PASSWORD", "REDISCLI_AUTH"):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "redis-auth", "key": "redis-password"}
    maxmemory = int(args[args.index("--maxmemory") + 1])
    from erpops.units import parse_memory

    assert maxmemory == int(0.9 * parse_memory(r.sized.spec.redis.memory)), sts.urn
    assert args[args.index("--maxmemory-policy") + 1] == "volatile-lru"
    assert c["image"] == derive.REDIS_IMAGE and derive.REDIS_IMAGE.startswith("redis:7.2.")
    persistence = r.sized.spec.redis.persistence
    assert ("volumeClaimTemplates" in sts.inputs["spec"]) == persistence, sts.urn
    assert args[args.index("--appendonly") + 1] == ("yes" if persistence else "no"), sts.urn
    password = r.one("random:index/randomPassword:RandomPassword")
    assert password.inputs["keepers"] == {"rotation": "initial"}, password.urn


def test_secrets_hold_references_only(r: Run) -> None:
    for reg in r.of_type("kubernetes:core/v1:Secret"):
        for key, value in reg.inputs.get("stringData", {}).items():
            assert str(value).startswith("<secret"), f"{reg.urn}: stringData.{key} is not a secret reference"


# --------------------------------------------------------------------------------------------
# Object storage
# --------------------------------------------------------------------------------------------

def test_aws_buckets_are_private_versioned_encrypted_and_expire(r: Run) -> None:
    storage = r.sized.spec.object_storage
    buckets = r.of_type("aws:s3/bucket:Bucket")
    if storage.mode != "aws":
        assert not [x for x in r.regs if x.type.startswith("aws:")], f"{r.stack}: s3-compatible creates no AWS"
        return
    assert r.one("pulumi:providers:aws").inputs["region"] == storage.region
    by_name = {b.inputs["bucket"]: b for b in buckets}
    assert set(by_name) == {storage.filestore_bucket, storage.backup_bucket}
    for kind, bucket in (("filestore", storage.filestore_bucket), ("backup", storage.backup_bucket)):
        def one(token: str, bucket: str = bucket) -> dict[str, Any]:
            found = [x for x in r.of_type(token) if x.inputs.get("bucket") == bucket]
            assert len(found) == 1, f"expected one {token} for {bucket}, got {len(found)}"
            return found[0].inputs

        assert one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock") == {
            "bucket": bucket, "blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True,
            "restrictPublicBuckets": True}
        assert one("aws:s3/bucketOwnershipControls:BucketOwnershipControls")["rule"] == {
            "objectOwnership": "BucketOwnerEnforced"}
        assert one("aws:s3/bucketVersioning:BucketVersioning")["versioningConfiguration"]["status"] == "Enabled"
        sse = one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
        assert sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] in ("AES256", "aws:kms")
        rules = {x["id"]: x for x in one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")["rules"]}
        assert rules["abort-incomplete-multipart"]["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 1
        assert rules["expire-noncurrent-versions"]["noncurrentVersionExpiration"]["noncurrentDays"] >= 1
        if kind == "backup":
            retention = r.sized.spec.backup.retention
            gfs = max(retention.daily, retention.weekly * 7, retention.monthly * 31)
            assert rules["expire-after-retention"]["expiration"]["days"] == max(gfs, retention.daily + 2)
    backup = by_name[storage.backup_bucket]
    locks = r.of_type("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration")
    if r.sized.spec.tier == "prod":
        assert backup.inputs["objectLockEnabled"] is True, backup.urn
        (lock,) = locks
        assert lock.inputs["rule"]["defaultRetention"]["mode"] == "GOVERNANCE", lock.urn
    else:
        assert not locks
    assert by_name[storage.filestore_bucket].inputs["objectLockEnabled"] is False


def test_each_identity_reaches_only_its_own_bucket(r: Run) -> None:
    """Odoo's key cannot touch the backups, CloudNativePG's cannot touch the filestore."""
    if r.sized.spec.object_storage.mode != "aws":
        pytest.skip("s3-compatible stacks bring their own keys (Pulumi secret config)")
    storage = r.sized.spec.object_storage
    users = {u.urn: u.inputs["name"] for u in r.of_type("aws:iam/user:User")}
    policies = {}
    for reg in r.of_type("aws:iam/userPolicy:UserPolicy"):
        (user_urn,) = [d for d in reg.depends_on if d in users]
        policies[users[user_urn]] = json.loads(reg.inputs["policy"])
    backup_user, filestore_user = f"erpops-{r.stack}-backup", f"erpops-{r.stack}-filestore"
    expected = {backup_user: storage.backup_bucket}
    if r.sized.spec.filestore.mode == "object-storage":
        expected[filestore_user] = storage.filestore_bucket
    drill_user = f"erpops-{r.stack}-drill"
    assert set(policies) == set(expected) | ({drill_user} if r.sized.spec.drill.enabled else set())
    if r.sized.spec.drill.enabled:  # the drill's: its stack's prefix of the backup bucket, and write only reports
        arn = f"arn:aws:s3:::{storage.backup_bucket}"
        grants = {(a, res) for st in policies[drill_user]["Statement"] for a in st["Action"] for res in st["Resource"]}
        assert {res for _, res in grants} == {arn, f"{arn}/{r.stack}/*", f"{arn}/{r.stack}/drills/*"}
        assert {a for a, res in grants if res == f"{arn}/{r.stack}/*"} == {"s3:GetObject"}
        assert {a for a, res in grants if a in ("s3:PutObject", "s3:DeleteObject")} == {"s3:PutObject"}
        assert ("s3:PutObject", f"{arn}/{r.stack}/drills/*") in grants
    for user, bucket in expected.items():
        arn = f"arn:aws:s3:::{bucket}"
        resources = {res for stmt in policies[user]["Statement"] for res in stmt["Resource"]}
        assert resources == {arn, f"{arn}/*"}, user
        assert all(stmt["Effect"] == "Allow" and all(a.startswith("s3:") for a in stmt["Action"])
                   for stmt in policies[user]["Statement"])
    # each Kubernetes Secret holds the key of one user
    keys = {k.name: k for k in r.of_type("aws:iam/accessKey:AccessKey")}
    backup = r.one("kubernetes:core/v1:Secret", "object-storage-credentials").inputs["stringData"]
    assert backup["secret-access-key"] == "<secret:aws-iam-secret-access-key/storage-backup-access-key>"
    if filestore_user in expected:
        odoo = r.one("kubernetes:core/v1:Secret", "odoo-object-storage").inputs["stringData"]
        assert odoo["secret-access-key"] == "<secret:aws-iam-secret-access-key/storage-filestore-access-key>"
    assert set(keys) == {"storage-backup-access-key", *(["storage-filestore-access-key"]
                                                        if filestore_user in expected else []),
                         *(["storage-drill-access-key"] if r.sized.spec.drill.enabled else [])}


def test_s3_compatible_keys_come_from_the_named_secret_config(r: Run) -> None:
    if r.sized.spec.object_storage.mode != "s3-compatible":
        pytest.skip("aws stacks create their own IAM user and key")
    data = r.one("kubernetes:core/v1:Secret", "object-storage-credentials").inputs["stringData"]
    secrets = r.sized.spec.secrets
    backup_id = secrets.backup_s3_access_key_id or secrets.s3_access_key_id
    backup_key = secrets.backup_s3_secret_access_key or secrets.s3_secret_access_key
    assert data["access-key-id"] == f"<secret:pulumi-config/erpops:{backup_id}>"
    assert data["secret-access-key"] == f"<secret:pulumi-config/erpops:{backup_key}>"
    odoo = [x for x in r.of_type("kubernetes:core/v1:Secret") if x.inputs["metadata"]["name"] == "odoo-object-storage"]
    if r.sized.spec.filestore.mode == "object-storage":
        assert backup_id != secrets.s3_access_key_id, "Odoo and CloudNativePG share a key"
        odoo_key = odoo[0].inputs["stringData"]["access-key-id"]
        assert odoo_key == f"<secret:pulumi-config/erpops:{secrets.s3_access_key_id}>"
    else:
        assert odoo == [], "Odoo keeps no attachments in S3 and gets no key"


# --------------------------------------------------------------------------------------------
# Segregation across stacks, ops output, Odoo chart values
# --------------------------------------------------------------------------------------------

def test_stacks_share_no_namespace_bucket_prefix_database_or_secret() -> None:
    runs = [run(s) for s in STACKS]
    for what, value in (
        ("namespace", lambda x: x.ops["namespace"]),
        ("filestore bucket", lambda x: x.ops["buckets"]["filestore"]),
        ("backup bucket", lambda x: x.ops["buckets"]["backup"]),
        ("backup destination", lambda x: x.ops["endpoints"]["backup_destination"]),
        ("redis key prefix", lambda x: x.ops["redis_key_prefix"]),
        ("database", lambda x: x.ops["database"]["name"]),
        ("odoo url", lambda x: x.ops["endpoints"]["odoo"]),
    ):
        values = [v for v in (value(x) for x in runs) if v is not None]
        assert len(set(values)) == len(values), f"{what} shared between stacks: {values}"
    secrets = [(x.sized.namespace, reg.inputs["metadata"]["name"])
               for x in runs for reg in x.of_type("kubernetes:core/v1:Secret")]
    assert len(set(secrets)) == len(secrets), "two stacks write the same Secret"
    users = [reg.inputs["name"] for x in runs for reg in x.of_type("aws:iam/user:User")]
    assert len(set(users)) == len(users)


def test_ops_output_shape(r: Run) -> None:
    ops = r.ops
    assert set(ops) == {"stack", "tier", "kubernetes_context", "namespace", "database", "services", "secrets",
                        "buckets", "endpoints", "redis_key_prefix", "image", "filestore", "drill"}
    assert ops["services"]["odoo_web"] == {"name": "odoo-web", "port": 8069}
    assert ops["services"]["odoo_websocket"] == {"name": "odoo-web", "port": 8072}
    assert ops["services"]["pooler_rw"] == {"name": "odoo-db-pooler-rw", "port": 5432}
    assert ops["services"]["redis"] is None  # no shipped stack keeps sessions in Redis
    assert ops["database"]["name"] == r.sized.database
    odoo_s3 = "odoo-object-storage" if r.sized.spec.filestore.mode == "object-storage" else None
    assert ops["secrets"] == {"database": "odoo-db-app", "odoo_admin": "odoo-admin",
                              "object_storage": "object-storage-credentials", "odoo_object_storage": odoo_s3,
                              "redis": None}
    assert ops["filestore"] == {"mode": r.sized.spec.filestore.mode, "sessions": r.sized.spec.filestore.session_store}
    assert "<secret" not in json.dumps(ops)


def test_the_chart_gets_exactly_odoo_values(r: Run) -> None:
    chart = r.one("kubernetes:helm.sh/v4:Chart")
    assert chart.parent.endswith("erpops:k8s:Odoo::odoo"), chart.urn
    assert chart.inputs["name"] == "odoo" and chart.inputs["namespace"] == r.sized.namespace
    assert Path(chart.inputs["chart"]).resolve() == ROOT / "helm" / "odoo", chart.urn
    in_cluster_redis = r.sized.spec.redis.enabled and r.sized.spec.redis.mode == "in-cluster"
    expected = odoo_values(r.sized, refs_for(r.sized),
                           pod_annotations={derive.ROTATION_ANNOTATION: "initial"} if in_cluster_redis else None)
    # everything but the module Job, which the component applies ahead of the chart
    assert chart.inputs["values"] == chart_values(expected), chart.urn
    assert chart.inputs["values"]["moduleJob"]["enabled"] is False, chart.urn
    assert expected["moduleJob"]["enabled"] is True


def test_quota_covers_every_pod_at_full_scale(r: Run) -> None:
    quota = r.one("kubernetes:core/v1:ResourceQuota").inputs["spec"]["hard"]
    groups = derive.pod_groups(r.sized)
    from erpops.units import mib, parse_cpu

    cpu = sum(g.count * g.cpu_limit_m for g in groups) / 1000
    memory = sum(g.count * g.memory_limit_mib for g in groups)
    assert parse_cpu(quota["limits.cpu"]) >= cpu * 1.19 and mib(quota["limits.memory"]) >= memory * 1.19
    assert int(quota["pods"]) >= r.sized.spec.web_replicas_max + r.sized.spec.postgres.instances \
        + r.sized.spec.pooler.instances + 1
    assert quota["services.loadbalancers"] == "0" and quota["services.nodeports"] == "0"


# --------------------------------------------------------------------------------------------
# A bad spec: RunError naming the key and the fix, before any resource
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("change", "key", "fix"), [
    (lambda raw: raw["postgres"].update(instances=1), "postgres.instances", "set postgres.instances to 3"),
    (lambda raw: raw["postgres"].update(paramters={}), "postgres.paramters", "remove it or fix its spelling"),
    (lambda raw: raw["kubernetes"].update(ingress_namespace="erpops-staging"), "kubernetes.ingress_namespace",
     "set it to the namespace of your ingress controller"),
])
def test_bad_spec_raises_run_error_before_any_resource(change: Any, key: str, fix: str) -> None:
    raw = copy.deepcopy(spec.read_raw(spec.stack_file(ROOT, "prod")))
    change(raw)
    sink: list[render.Registration] = []
    with pytest.raises(pulumi.RunError) as exc:
        render.run_program(ROOT, "prod", {"erpops:spec": json.dumps(raw)}, [], sink=sink)
    assert key in str(exc.value) and fix in str(exc.value), str(exc.value)
    assert sink == [], f"{len(sink)} resources registered before the spec error: {[x.urn for x in sink]}"


def test_missing_spec_names_the_config_key() -> None:
    sink: list[render.Registration] = []
    with pytest.raises(pulumi.RunError, match="erpops:spec") as exc:
        render.run_program(ROOT, "prod", {}, [], sink=sink)
    assert "pulumi config set" in str(exc.value)
    assert sink == []


def test_the_optional_operator_install_is_pinned_and_restricted() -> None:
    raw = copy.deepcopy(spec.read_raw(spec.stack_file(ROOT, "dev")))
    raw["kubernetes"]["install_cnpg_operator"] = True
    sized = spec.validate(raw, "dev")
    secrets = render._Secrets()
    config, secret_keys = render.mock_config(raw, sized, secrets)
    regs, _ = render.run_program(ROOT, "dev", config, secret_keys, secrets)
    charts = {r.name: r for r in regs if r.type == "kubernetes:helm.sh/v4:Chart"}
    operator = charts["postgres-operator"]
    assert operator.inputs["chart"] == "cloudnative-pg" and operator.inputs["version"] == derive.CNPG_CHART["version"]
    assert operator.inputs["repositoryOpts"] == {"repo": "https://cloudnative-pg.github.io/charts"}
    assert operator.inputs["namespace"] == "cnpg-system" and operator.parent.endswith("erpops:k8s:Postgres::postgres")
    (ns,) = [r for r in regs
             if r.type == "kubernetes:core/v1:Namespace" and r.inputs["metadata"]["name"] == "cnpg-system"]
    assert ns.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted", ns.urn


# --------------------------------------------------------------------------------------------
# Module install/upgrade Job: its own resource, ahead of the chart (Pulumi ignores Helm hooks)
# --------------------------------------------------------------------------------------------

def _module_job(r: Run) -> render.Registration:
    (job,) = r.of_type("kubernetes:batch/v1:Job")
    return job


def _depends_on(reg: render.Registration, r: Run) -> set[str]:
    return set(reg.depends_on)


def test_module_job_is_its_own_resource_ahead_of_the_chart(r: Run) -> None:
    job = _module_job(r)
    assert job.parent.endswith("erpops:k8s:Odoo::odoo"), job.urn
    name = job.inputs["metadata"]["name"]
    assert name.startswith("odoo-modules-") and len(name) <= 63, job.urn
    annotations = job.inputs["metadata"].get("annotations", {})
    assert not [a for a in annotations if a.startswith("helm.sh/")], f"{job.urn}: hook annotations {annotations}"
    assert annotations.get("pulumi.com/skipAwait", "false") == "false", f"{job.urn}: Pulumi must await the Job"
    assert annotations["pulumi.com/replaceUnready"] == "true", job.urn
    spec_ = job.inputs["spec"]
    assert int(annotations["pulumi.com/timeoutSeconds"]) > spec_["activeDeadlineSeconds"], job.urn
    assert "ttlSecondsAfterFinished" not in spec_, f"{job.urn}: a vanishing Job is drift under Pulumi"
    assert spec_["backoffLimit"] == 0, job.urn
    pod = spec_["template"]["spec"]
    assert pod["serviceAccountName"] == "odoo-module-job", job.urn
    (odoo,) = pod["containers"]
    object_storage = r.sized.spec.filestore.mode == "object-storage"
    storage_addons = ["fs_storage", "fs_attachment"] if object_storage else []
    modules = ",".join(dict.fromkeys([*storage_addons, *r.sized.spec.odoo.modules]))
    assert f"--init={modules}" in odoo["args"] and f"--update={modules}" in odoo["args"], odoo["args"]
    assert "--stop-after-init" in odoo["args"] and f"--database={r.sized.database}" in odoo["args"]
    assert [c["name"] for c in pod["initContainers"]] == ["wait-for-database", *(["storage"] if object_storage
                                                                                 else [])], job.urn
    # the Job's own ConfigMap and ServiceAccount, named apart from the hook objects the chart used to own
    configmap = r.one("kubernetes:core/v1:ConfigMap", name)
    assert {v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v} == {name}
    assert "db_host = odoo-db-pooler-rw" in configmap.inputs["data"]["odoo.conf"], configmap.urn
    r.one("kubernetes:core/v1:ServiceAccount", "odoo-module-job")


def test_module_job_waits_for_the_database_and_the_chart_waits_for_it(r: Run) -> None:
    job, chart = _module_job(r), r.one("kubernetes:helm.sh/v4:Chart")
    cluster = r.one("kubernetes:postgresql.cnpg.io/v1:Cluster")
    pooler = r.one("kubernetes:postgresql.cnpg.io/v1:Pooler")
    configmap = r.one("kubernetes:core/v1:ConfigMap", job.inputs["metadata"]["name"])
    sa = r.one("kubernetes:core/v1:ServiceAccount", "odoo-module-job")
    job_deps = _depends_on(job, r)
    for needed in (cluster, pooler, configmap, sa, r.one("kubernetes:core/v1:Secret", "object-storage-credentials")):
        assert needed.urn in job_deps, f"{job.urn} does not depend on {needed.urn}"
    assert job.urn in _depends_on(chart, r), f"{chart.urn} does not depend on the module Job"


def test_the_chart_renders_no_module_job(r: Run) -> None:
    chart = r.one("kubernetes:helm.sh/v4:Chart")
    objs = render_chart(ROOT / "helm" / "odoo", chart.inputs["values"], "odoo", r.sized.namespace)
    assert not [o for o in objs if "modules" in o["metadata"]["name"]], [o["metadata"]["name"] for o in objs]


def test_module_job_objects_are_the_charts_own_template() -> None:
    """The program's Job is the chart's templates/job-modules.yaml with moduleJob.hook=false: same pod."""
    from erpops.helm_values import module_job_values
    from infra.chart import module_job_objects

    sized = spec.load("prod", ROOT)
    values = odoo_values(sized, refs_for(sized))
    objs = module_job_objects(values, "odoo", sized.namespace)
    assert sorted(o["kind"] for o in objs) == ["ConfigMap", "Job"]
    full = render_chart(ROOT / "helm" / "odoo", module_job_values(values), "odoo", sized.namespace)
    (job,) = [o for o in objs if o["kind"] == "Job"]
    assert job in full


def _job_name(values: dict[str, Any], namespace: str = "ns") -> str:
    from infra.chart import module_job_objects

    (job,) = [o for o in module_job_objects(values, "odoo", namespace) if o["kind"] == "Job"]
    return job["metadata"]["name"]


def test_module_job_name_follows_image_and_modules_only() -> None:
    sized = spec.load("staging", ROOT)
    base = odoo_values(sized, refs_for(sized))
    name = _job_name(base)
    assert _job_name(copy.deepcopy(base)) == name, "the name must be stable across runs"

    def changed(change: Any) -> str:
        values = copy.deepcopy(base)
        change(values)
        return _job_name(values)

    assert changed(lambda v: v["image"].update(tag=v["image"]["tag"] + "-1")) != name
    assert changed(lambda v: v["image"].update(digest="sha256:" + "a" * 64)) != name
    assert changed(lambda v: v["moduleJob"]["modules"].append("crm")) != name
    # what does not call for a module run keeps the Job (no re-run on a scale or a sizing change)
    assert changed(lambda v: v["web"].update(replicaCount=v["web"]["replicaCount"] + 1)) == name
    assert changed(lambda v: v["web"]["podAnnotations"].update(x="y")) == name
    assert changed(lambda v: v["odoo"]["limits"].update(timeCpu=v["odoo"]["limits"]["timeCpu"] + 1)) == name


def test_module_job_name_changes_with_the_spec_image_under_pulumi() -> None:
    raw = copy.deepcopy(spec.read_raw(spec.stack_file(ROOT, "dev")))
    names = []
    for image in (raw["odoo"]["image"], raw["odoo"]["image"] + "-patched", raw["odoo"]["image"]):
        raw["odoo"]["image"] = image
        sized = spec.validate(raw, "dev")
        secrets = render._Secrets()
        config, secret_keys = render.mock_config(raw, sized, secrets)
        regs, _ = render.run_program(ROOT, "dev", config, secret_keys, secrets)
        (job,) = [x for x in regs if x.type == "kubernetes:batch/v1:Job"]
        names.append(job.inputs["metadata"]["name"])
    assert names[0] != names[1] and names[0] == names[2], names


def test_a_managed_redis_is_reached_by_address_with_its_password_from_config() -> None:
    def managed(raw: dict[str, Any]) -> None:
        raw["filestore"]["sessions"] = "redis"
        raw["image"] = {"addons": ["fs_storage", "fs_attachment", "session_redis"]}
        raw["redis"] = {"enabled": True, "mode": "managed", "endpoint": "sessions.abc.cache.amazonaws.com:6380",
                        "cidrs": ["10.20.0.0/24", "10.20.1.0/24"]}
        raw["secrets"]["redis_password"] = "redisPassword"

    r = run_variant("prod", managed)
    assert not r.of_type("kubernetes:apps/v1:StatefulSet"), "a managed Redis runs nothing in the namespace"
    secret = r.one("kubernetes:core/v1:Secret", "redis-auth")
    assert secret.inputs["stringData"] == {"redis-password": "<secret:pulumi-config/erpops:redisPassword>"}
    egress = r.one("kubernetes:networking.k8s.io/v1:NetworkPolicy", "odoo-egress").inputs["spec"]["egress"]
    assert {"to": [{"ipBlock": {"cidr": "10.20.0.0/24"}}, {"ipBlock": {"cidr": "10.20.1.0/24"}}],
            "ports": [{"protocol": "TCP", "port": 6380}]} in egress
    values = r.one("kubernetes:helm.sh/v4:Chart").inputs["values"]
    assert values["redis"]["host"] == "sessions.abc.cache.amazonaws.com" and values["redis"]["port"] == 6380
    assert "session_redis" in values["image"]["addons"] and values["sessionDb"]["enabled"] is False


@pytest.mark.parametrize("namespace", ["erpops-staging", "kube-system", "cnpg-system"])
def test_a_monitoring_namespace_that_would_open_the_environment_is_refused(namespace: str) -> None:
    raw = copy.deepcopy(spec.read_raw(spec.stack_file(ROOT, "prod")))
    raw["monitoring"]["namespace"] = namespace
    sink: list[render.Registration] = []
    with pytest.raises(pulumi.RunError, match=r"monitoring\.namespace") as exc:
        render.run_program(ROOT, "prod", {"erpops:spec": json.dumps(raw)}, [], sink=sink)
    assert "name Prometheus' namespace" in str(exc.value) and sink == []


def test_the_image_build_logs_in_with_the_named_secret_config_keys() -> None:
    def with_registry_login(raw: dict[str, Any]) -> None:
        raw["image"]["build"].update(registry_username_key="registryUser", registry_password_key="registryToken")

    r = run_variant("prod", with_registry_login)
    (build,) = r.of_type("docker-build:index:Image")
    assert build.parent.endswith("erpops:docker:OdooImage::image"), build.urn
    (registry,) = build.inputs["registries"]
    assert registry["username"] == "<secret:pulumi-config/erpops:registryUser>"
    assert registry["password"] == "<secret:pulumi-config/erpops:registryToken>"
    # the SDK marks the whole entry secret once a field is: the address then shows as a reference too
    assert registry["address"] in ("registry.example.com", "<secret>")
    assert build.inputs["platforms"] == ["linux/amd64"] and build.inputs["push"] is True
    assert build.inputs["dockerfile"]["location"].endswith("images/odoo/Dockerfile")
