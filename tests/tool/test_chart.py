"""helm/odoo rendered offline by the real Helm engine, for each Odoo series, with defaults and an HA set.

Asserts on what a cluster would receive: strictly valid objects, Pod Security "restricted", a clean
`helm lint --strict`, odoo.conf content, routing, hooks, and the errors a user gets for bad values.
"""

from __future__ import annotations

import configparser
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from devtools.podsecurity import check_all
from tests.k8s import (
    ODOO_CHART,
    container,
    deep_merge,
    find,
    kubelet_expand,
    pod_spec,
    render_chart,
    validate_k8s,
)

VERSIONS = ["16.0", "17.0", "18.0"]
DIGEST = "sha256:" + "0123456789abcdef" * 4

HA_VALUES: dict[str, Any] = {
    "image": {"repository": "registry.example.com/erp/odoo", "tag": "17.0-ignored", "digest": DIGEST,
              "addons": ["session_redis", "fs_storage", "fs_attachment"]},
    "odoo": {"adminPassword": {"existingSecret": "odoo-admin"}},
    "web": {
        "replicaCount": 3,
        "workers": 4,
        "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 10},
    },
    "cron": {"enabled": True, "replicaCount": 2, "maxCronThreads": 2},
    "redis": {"enabled": True, "host": "redis", "existingSecret": "redis-auth"},
    "s3": {"enabled": True, "region": "eu-west-1", "bucket": "erp-{db}", "existingSecret": "s3-creds"},
    "persistence": {"enabled": False},
    "ingress": {"enabled": True, "host": "erp.example.com", "tlsSecretName": "erp-tls"},
}
VALUE_SETS = {"defaults": {}, "ha": HA_VALUES}
SECRET_LOOKING = re.compile(r"passw|secret|db_user|token", re.IGNORECASE)


def odoo_conf(objs: list[dict[str, Any]], name: str = "odoo-config") -> configparser.RawConfigParser:
    """odoo.conf of a rendered ConfigMap, parsed as Odoo parses it (RawConfigParser)."""
    parser = configparser.RawConfigParser()
    parser.read_string(find(objs, "ConfigMap", name)["data"]["odoo.conf"])
    return parser


def workloads(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] in ("Deployment", "Job")]


# -- every object, every series, both value sets --------------------------------------------------


@pytest.mark.parametrize("upgrade", [False, True], ids=["install", "upgrade"])
@pytest.mark.parametrize("value_set", VALUE_SETS)
@pytest.mark.parametrize("version", VERSIONS)
def test_objects_are_valid_kubernetes_1_30(version: str, value_set: str, upgrade: bool) -> None:
    objs = render_chart(VALUE_SETS[value_set], version, upgrade=upgrade)
    validate_k8s(objs, "1.30.0")


@pytest.mark.parametrize("value_set", VALUE_SETS)
@pytest.mark.parametrize("version", VERSIONS)
def test_every_pod_meets_pod_security_restricted(version: str, value_set: str) -> None:
    objs = render_chart(VALUE_SETS[value_set], version)
    assert workloads(objs), "no workload rendered"
    violations = check_all(objs)
    assert violations == [], "\n".join(str(v) for v in violations)


@pytest.mark.parametrize("value_set", VALUE_SETS)
@pytest.mark.parametrize("version", VERSIONS)
def test_helm_lint_strict_is_clean(version: str, value_set: str) -> None:
    values = deep_merge(VALUE_SETS[value_set], {"odoo": {"version": version}})
    report = helm.lint(str(ODOO_CHART), values, strict=True, kube_version="v1.30.0")
    warnings = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and warnings == [], report


# -- odoo.conf -------------------------------------------------------------------------------------

CONF_VALUES: dict[str, Any] = {
    "web": {"workers": 5},
    "cron": {"maxCronThreads": 3},
    "database": {"host": "pg-pooler", "port": 6432, "name": "erp_prod", "sslmode": "verify-full", "maxConnections": 24},
    "odoo": {
        "limits": {
            "memorySoft": 2147483648,
            "memoryHard": 2684354560,
            "timeCpu": 600,
            "timeReal": 1200,
            "timeRealCron": 3600,
            "request": 8192,
        },
    },
}


@pytest.mark.parametrize("version", VERSIONS)
def test_configmap_carries_every_limit_and_no_secret(version: str) -> None:
    objs = render_chart(CONF_VALUES, version)
    conf = odoo_conf(objs)
    options = dict(conf.items("options"))
    assert options["list_db"] == "False"
    assert options["proxy_mode"] == "True"
    expected = {
        "workers": "5",
        "max_cron_threads": "3",
        "db_maxconn": "24",
        "limit_memory_soft": "2147483648",  # never 2.147483648e+09: Helm prints big floats that way
        "limit_memory_hard": "2684354560",
        "limit_time_cpu": "600",
        "limit_time_real": "1200",
        "limit_time_real_cron": "3600",
        "limit_request": "8192",
        "db_host": "pg-pooler",
        "db_port": "6432",
        "db_name": "erp_prod",
        "db_sslmode": "verify-full",
        "dbfilter": "^erp_prod$",
        "data_dir": "/var/lib/odoo",
        "gevent_port": "8072",
        "server_wide_modules": "base,web",
    }
    assert {k: options.get(k) for k in expected} == expected
    secret_keys = [k for k in options if SECRET_LOOKING.search(k)]
    assert secret_keys == [], f"secret-looking keys in the ConfigMap: {secret_keys}"
    # the module Job reads the same configuration from its own hook ConfigMap
    assert find(objs, "ConfigMap", "odoo-modules")["data"] == find(objs, "ConfigMap", "odoo-config")["data"]


def test_ha_config_loads_session_redis_and_no_attachment_addon_server_wide() -> None:
    conf = odoo_conf(render_chart(HA_VALUES))
    # fs_attachment is an ordinary module (installed by the Job), session_redis must load server-wide
    assert conf.get("options", "server_wide_modules") == "base,web,session_redis"
    with_db = odoo_conf(render_chart(deep_merge(HA_VALUES, {
        "redis": {"enabled": False}, "sessionDb": {"enabled": True},
        "image": {"addons": ["session_db", "fs_storage", "fs_attachment"]}})))
    assert with_db.get("options", "server_wide_modules") == "base,web,session_db"


@pytest.mark.parametrize(("values", "addon"), [
    ({"redis": {"enabled": True, "host": "r"}}, "session_redis"),
    ({"sessionDb": {"enabled": True}}, "session_db"),
    ({"s3": {"enabled": True, "region": "eu-west-1", "bucket": "b-files", "existingSecret": "s"}}, "fs_storage"),
], ids=["session_redis", "session_db", "fs_attachment"])
def test_a_feature_whose_addon_the_image_lacks_is_refused(values: dict[str, Any], addon: str) -> None:
    """The official image has none of these: Odoo would log 'invalid module names, ignored' and run on."""
    with pytest.raises(helm.HelmRenderError, match=f"needs the {addon} addon"):
        render_chart(values)
    render_chart(deep_merge(values, {"image": {"addons": ["session_redis", "session_db", "fs_storage",
                                                          "fs_attachment"]}}))


@pytest.mark.parametrize(
    "change",
    [{"odoo": {"limits": {"timeCpu": 61}}}, {"web": {"workers": 3}}, {"database": {"host": "elsewhere"}}],
    ids=["limit", "workers", "db_host"],
)
def test_config_change_changes_checksum_and_nothing_else_does(change: dict[str, Any]) -> None:
    def checksums(values: dict[str, Any]) -> dict[str, str]:
        objs = render_chart(values)
        return {
            o["metadata"]["name"]: o["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for o in objs
            if o["kind"] == "Deployment"
        }

    before = checksums(HA_VALUES)
    after = checksums(deep_merge(HA_VALUES, change))
    assert set(before) == {"odoo-web", "odoo-cron"}
    assert all(before[name] != after[name] for name in before), (before, after)
    unrelated = checksums(deep_merge(HA_VALUES, {"web": {"podAnnotations": {"team": "erp"}}}))
    assert unrelated == before


# -- routing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_ingress_sends_websocket_to_8072_and_the_rest_to_8069(version: str) -> None:
    objs = render_chart(HA_VALUES, version)
    ingresses = [o for o in objs if o["kind"] == "Ingress"]
    assert {i["metadata"]["name"] for i in ingresses} == {"odoo", "odoo-websocket"}
    for ingress in ingresses:
        assert ingress["spec"]["ingressClassName"] == "nginx"
        assert ingress["spec"]["tls"] == [{"hosts": ["erp.example.com"], "secretName": "erp-tls"}]
    service = find(objs, "Service", "odoo-web")
    web = container(find(objs, "Deployment", "odoo-web"))
    container_ports = {p["name"]: p["containerPort"] for p in web["ports"]}

    def container_port_for(path: str) -> int:
        (match,) = [p for i in ingresses for rule in i["spec"]["rules"] for p in rule["http"]["paths"]
                    if p["path"] == path]
        backend = match["backend"]["service"]
        assert backend["name"] == service["metadata"]["name"]
        (port,) = [p for p in service["spec"]["ports"] if p["name"] == backend["port"]["name"]]
        return container_ports[port["targetPort"]]

    assert container_port_for("/websocket") == 8072
    assert container_port_for("/") == 8069
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"http": 8069, "websocket": 8072}


# -- values the schema or the templates must refuse ------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"odoo": {"wrokers": 3}}, "additional properties 'wrokers' not allowed"),
        ({"image": {"digest": "sha256:abc"}}, "/image/digest"),
        ({"image": {"digest": "md5:" + "0" * 64}}, "/image/digest"),
        ({"web": {"resources": None}}, "missing property 'resources'"),
        ({"cron": {"resources": {"limits": None}}}, "missing property 'limits'"),
        ({"moduleJob": {"resources": {"requests": {"memory": None}}}}, "missing property 'memory'"),
        ({"odoo": {"version": "15.0"}}, "/odoo/version"),
        ({"web": {"workers": 0}}, "/web/workers"),
        ({"odoo": {"extraConfig": {"smtp_password": "hunter2"}}}, "smtp_password"),
        ({"odoo": {"extraConfig": {"workers": 9}}}, "'workers'"),
        ({"podSecurityContext": {"runAsUser": 0}}, "/podSecurityContext/runAsUser"),
    ],
    ids=[
        "unknown-key",
        "short-digest",
        "not-sha256",
        "no-resources",
        "no-limits",
        "no-memory-request",
        "old-version",
        "no-workers",
        "secret-in-extra-config",
        "chart-owned-option",
        "root-uid",
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any], expected: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(expected)):
        render_chart(values, version=None)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"web": {"replicaCount": 3}}, "web.replicaCount=3"),
        ({"web": {"autoscaling": {"enabled": True, "maxReplicas": 5}}}, "web.autoscaling.maxReplicas=5"),
    ],
    ids=["replicas", "autoscaling"],
)
def test_several_web_pods_without_redis_fail_with_the_fix(values: dict[str, Any], named: str) -> None:
    with pytest.raises(helm.HelmRenderError) as err:
        render_chart(values)
    message = str(err.value)
    assert named in message
    assert "sessions stay in each pod" in message
    assert "sessionDb.enabled=true" in message and "redis.enabled=true" in message


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"web": {"replicaCount": 2}, "redis": {"enabled": True, "host": "r"}, "image": {"addons": ["session_redis"]}},
         "Fix: set s3.enabled=true"),
        ({"cron": {"enabled": True}}, "cron.enabled=true"),
        ({"redis": {"enabled": True}}, "redis.host"),
        ({"s3": {"enabled": True, "region": "eu-west-1"}}, "s3.bucket and s3.existingSecret"),
        ({"s3": {"enabled": True, "bucket": "erp-files", "existingSecret": "s"}}, "s3.region"),
        ({"odoo": {"limits": {"memorySoft": 999999999, "memoryHard": 900000000}}}, "memorySoft"),
    ],
    ids=[
        "local-filestore-several-pods",
        "cron-on-local-filestore",
        "redis-without-host",
        "s3-without-bucket",
        "s3-without-region",
        "soft-above-hard",
    ],
)
def test_settings_that_cannot_work_together_fail(values: dict[str, Any], expected: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(expected)):
        render_chart(values)


def test_multi_pod_passes_with_redis_and_a_read_write_many_filestore() -> None:
    values = {
        "web": {"replicaCount": 2},
        "cron": {"enabled": True},
        "redis": {"enabled": True, "host": "redis"},
        "image": {"addons": ["session_redis"]},
        "persistence": {"accessModes": ["ReadWriteMany"]},
    }
    objs = render_chart(values)
    web = find(objs, "Deployment", "odoo-web")
    assert web["spec"]["replicas"] == 2
    assert web["spec"]["strategy"]["type"] == "RollingUpdate"
    assert pod_spec(web)["volumes"][-1] == {
        "name": "filestore",
        "persistentVolumeClaim": {"claimName": "odoo-filestore"},
    }


# -- workloads -------------------------------------------------------------------------------------


def env_refs(c: dict[str, Any]) -> set[str]:
    """Names used as $(VAR) in a container's command and args."""
    words = [*c.get("command", []), *c.get("args", [])]
    return {m for w in words for m in re.findall(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", w)}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_credentials_reach_odoo_through_env_expansion(value_set: str) -> None:
    objs = render_chart(VALUE_SETS[value_set])
    for obj in workloads(objs):
        c = container(obj)
        assert c["command"] == ["odoo"], "the image entrypoint would append its own --db_user/--db_password"
        # credentials reach libpq through its env, never through argv (visible in ps inside the pod)
        assert not [a for a in c["args"] if a.startswith(("--db_user", "--db_password", "-w", "-r"))]
        env = {e["name"]: e for e in c["env"]}
        # the kubelet leaves $(VAR) as is when VAR is not defined in the container: check each one is
        missing = env_refs(c) - set(env)
        assert not missing, f"{obj['metadata']['name']}: $(...) of undefined env {missing}"
        assert env["PGUSER"]["valueFrom"]["secretKeyRef"] == {"name": "odoo-db-app", "key": "username"}
        assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "odoo-db-app", "key": "password"}
        plain = [e["name"] for e in c["env"] if "value" in e and SECRET_LOOKING.search(e["name"])]
        assert plain == [], f"secret-looking env with a literal value: {plain}"


# what the Secrets would hold in a cluster; the password is nasty on purpose
SECRETS = {
    ("odoo-db-app", "username"): "erp",
    ("odoo-db-app", "password"): "p@ss w0rd $(DB_USER) %s '\"",
    ("odoo-admin", "admin-password"): "m4ster %s $(X)\n",
    ("redis-auth", "redis-password"): "r",
    ("s3-creds", "access-key-id"): "AKIA",
    ("s3-creds", "secret-access-key"): "k",
}


def container_env(c: dict[str, Any]) -> dict[str, str]:
    """The env a container would get, Secrets resolved from SECRETS (not expanded again, like the kubelet)."""
    env = {}
    for item in c.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = SECRETS[(ref["name"], ref["key"])]
    return env


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_odoo_gets_its_credentials_from_the_libpq_env(value_set: str) -> None:
    for obj in workloads(render_chart(VALUE_SETS[value_set])):
        c = container(obj)
        env = container_env(c)
        assert env["PGUSER"] == "erp"
        # the Secret's value arrives untouched: spaces, quotes and a $(...) inside the password
        assert env["PGPASSWORD"] == "p@ss w0rd $(DB_USER) %s '\""
        args = [kubelet_expand(a, env) for a in c["args"]]
        assert all(a.startswith("--") for a in args), args
        assert not any("p@ss" in a for a in args)


@pytest.mark.parametrize(("value_set", "admin"), [("ha", "m4ster %s $(X)"), ("defaults", None)])
def test_init_container_script_appends_the_master_password(value_set: str, admin: str | None, tmp_path: Path) -> None:
    objs = render_chart(VALUE_SETS[value_set])
    (init,) = pod_spec(find(objs, "Deployment", "odoo-web"))["initContainers"]
    env = container_env(init)
    script = kubelet_expand(init["command"][-1], env)
    template, rendered = tmp_path / "template", tmp_path / "config"
    template.mkdir()
    rendered.mkdir()
    (template / "odoo.conf").write_text(find(objs, "ConfigMap", "odoo-config")["data"]["odoo.conf"])
    script = script.replace("/etc/odoo-template/", f"{template}/").replace("/etc/odoo/", f"{rendered}/")
    subprocess.run([*init["command"][:-1], script], env={"PATH": "/usr/bin:/bin", **env}, check=True, timeout=10)
    conf = configparser.RawConfigParser()
    conf.read(rendered / "odoo.conf")
    assert conf.get("options", "list_db") == "False"
    password = conf.get("options", "admin_passwd")
    if admin:
        assert password == admin
    else:
        assert re.fullmatch(r"[0-9a-f]{64}", password), password
    assert (rendered / "odoo.conf").stat().st_mode & 0o077 == 0


def test_ha_env_configures_session_redis_and_attachment_s3_from_secrets() -> None:
    objs = render_chart(HA_VALUES)
    env = {e["name"]: e for e in container(find(objs, "Deployment", "odoo-web"))["env"]}
    assert env["ODOO_SESSION_REDIS"]["value"] == "1"
    assert env["ODOO_SESSION_REDIS_HOST"]["value"] == "redis"
    assert env["ODOO_SESSION_REDIS_PORT"]["value"] == "6379"
    assert env["ODOO_SESSION_REDIS_PREFIX"]["value"] == "odoo"
    assert env["ODOO_SESSION_REDIS_EXPIRATION"]["value"] == "604800"
    assert env["ODOO_SESSION_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "redis-auth",
        "key": "redis-password",
    }
    # botocore's own variables (s3fs under fs_storage), and the bucket the Job's storage step names
    assert env["AWS_DEFAULT_REGION"]["value"] == "eu-west-1"
    assert env["ERPOPS_FILESTORE_BUCKET"]["value"] == "erp-{db}"
    assert "AWS_ENDPOINT_URL" not in env  # AWS itself: no custom endpoint
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "s3-creds"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "s3-creds"


def test_admin_password_is_rendered_into_memory_by_an_init_container() -> None:
    objs = render_chart(HA_VALUES)
    spec = pod_spec(find(objs, "Deployment", "odoo-web"))
    (init,) = spec["initContainers"]
    assert init["env"] == [
        {"name": "ODOO_ADMIN_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "odoo-admin", "key": "admin-password"}}}
    ]
    assert "admin_passwd = " in init["command"][-1]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["config"]["emptyDir"]["medium"] == "Memory"
    assert volumes["config-template"]["configMap"]["name"] == "odoo-config"
    # without a Secret, a random master password replaces Odoo's default "admin"
    (default_init,) = pod_spec(find(render_chart({}), "Deployment", "odoo-web"))["initContainers"]
    assert "env" not in default_init
    assert "/dev/urandom" in default_init["command"][-1]


@pytest.mark.parametrize("version", VERSIONS)
def test_web_and_cron_arguments(version: str) -> None:
    objs = render_chart(HA_VALUES, version)
    web_args = container(find(objs, "Deployment", "odoo-web"))["args"]
    assert web_args[0] == "--config=/etc/odoo/odoo.conf"
    assert "--workers=4" in web_args
    assert "--max-cron-threads=0" in web_args
    cron_args = container(find(objs, "Deployment", "odoo-cron"))["args"]
    assert "--no-http" in cron_args
    assert "--max-cron-threads=2" in cron_args


def test_single_pod_defaults_run_cron_workers_in_the_web_pod() -> None:
    objs = render_chart({})
    kinds = sorted(o["kind"] for o in objs)
    assert "HorizontalPodAutoscaler" not in kinds and "Ingress" not in kinds
    assert [o["metadata"]["name"] for o in objs if o["kind"] == "Deployment"] == ["odoo-web"]
    web = find(objs, "Deployment", "odoo-web")
    assert web["spec"]["replicas"] == 1
    assert web["spec"]["strategy"] == {"type": "Recreate"}  # ReadWriteOnce filestore
    assert "--max-cron-threads=1" in container(web)["args"]
    pvc = find(objs, "PersistentVolumeClaim", "odoo-filestore")
    assert pvc["metadata"]["annotations"]["helm.sh/hook"] == "pre-install"
    # an explicit policy, so Helm's default before-hook-creation never deletes a filestore
    assert pvc["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "hook-failed"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_existing_claim_is_used_and_not_created() -> None:
    objs = render_chart({"persistence": {"existingClaim": "old-filestore"}})
    assert not [o for o in objs if o["kind"] == "PersistentVolumeClaim"]
    for obj in workloads(objs):
        volumes = {v["name"]: v for v in pod_spec(obj)["volumes"]}
        assert volumes["filestore"]["persistentVolumeClaim"]["claimName"] == "old-filestore"


@pytest.mark.parametrize("version", VERSIONS)
def test_probes_use_web_health_and_readiness_follows_the_series(version: str) -> None:
    web = container(find(render_chart({}, version), "Deployment", "odoo-web"))
    assert web["startupProbe"]["httpGet"] == {"path": "/web/health", "port": "http"}
    assert web["livenessProbe"]["httpGet"] == {"path": "/web/health", "port": "http"}
    readiness = "/web/health" if version == "16.0" else "/web/health?db_server_status=1"
    assert web["readinessProbe"]["httpGet"] == {"path": readiness, "port": "http"}


@pytest.mark.parametrize(("version", "uid"), [("16.0", 101), ("17.0", 101), ("18.0", 100)])
def test_pods_run_as_the_image_odoo_user(version: str, uid: int) -> None:
    for obj in workloads(render_chart(HA_VALUES, version)):
        sc = pod_spec(obj)["securityContext"]
        assert (sc["runAsUser"], sc["runAsGroup"], sc["fsGroup"]) == (uid, 101, 101), obj["metadata"]["name"]
    custom = render_chart({"podSecurityContext": {"runAsUser": 1000}}, version)
    assert pod_spec(find(custom, "Deployment", "odoo-web"))["securityContext"]["runAsUser"] == 1000


def test_read_only_root_has_volumes_where_odoo_writes() -> None:
    web = container(find(render_chart({}), "Deployment", "odoo-web"))
    mounts = {m["mountPath"]: m["name"] for m in web["volumeMounts"]}
    # the filestore claim holds the sessions too: nothing Odoo keeps is on an emptyDir
    assert mounts == {"/etc/odoo": "config", "/tmp": "tmp", "/var/lib/odoo": "filestore"}
    assert web["securityContext"]["readOnlyRootFilesystem"] is True
    # sessions elsewhere (Redis here): /var/lib/odoo/sessions is scratch
    ha = container(find(render_chart(HA_VALUES), "Deployment", "odoo-web"))
    assert {m["mountPath"]: m["name"] for m in ha["volumeMounts"]}["/var/lib/odoo/sessions"] == "sessions"


def test_digest_wins_over_tag_in_every_container() -> None:
    objs = render_chart(HA_VALUES)
    images = {
        c["image"]
        for obj in workloads(objs)
        for c in [*pod_spec(obj)["containers"], *pod_spec(obj).get("initContainers", [])]
    }
    assert images == {f"registry.example.com/erp/odoo@{DIGEST}"}
    tagged = container(find(render_chart({}, "18.0"), "Deployment", "odoo-web"))
    assert tagged["image"] == "docker.io/library/odoo:18.0"


def test_autoscaling_owns_the_replica_count() -> None:
    objs = render_chart(HA_VALUES)
    assert "replicas" not in find(objs, "Deployment", "odoo-web")["spec"]
    hpa = find(objs, "HorizontalPodAutoscaler", "odoo-web")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "odoo-web"}


@pytest.mark.parametrize(("cron_replicas", "cron_pdb"), [(1, False), (2, True)])
def test_pdbs(cron_replicas: int, cron_pdb: bool) -> None:
    objs = render_chart(deep_merge(HA_VALUES, {"cron": {"replicaCount": cron_replicas}}))
    pdbs = {o["metadata"]["name"]: o for o in objs if o["kind"] == "PodDisruptionBudget"}
    assert pdbs["odoo-web"]["spec"]["maxUnavailable"] == 1
    assert ("odoo-cron" in pdbs) is cron_pdb


def test_pods_spread_over_zones_and_nodes_and_mount_no_token() -> None:
    objs = render_chart(HA_VALUES)
    for name in ("odoo-web", "odoo-cron"):
        spec = pod_spec(find(objs, "Deployment", name))
        keys = [c["topologyKey"] for c in spec["topologySpreadConstraints"]]
        assert keys == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
        component = name.removeprefix("odoo-")
        for constraint in spec["topologySpreadConstraints"]:
            assert constraint["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == component
    for obj in objs:
        if obj["kind"] == "ServiceAccount":
            assert obj["automountServiceAccountToken"] is False
        elif obj["kind"] in ("Deployment", "Job"):
            assert pod_spec(obj)["automountServiceAccountToken"] is False


# -- module install / upgrade Job -------------------------------------------------------------------


def test_module_job_installs_with_dash_i_on_install() -> None:
    objs = render_chart({"moduleJob": {"modules": ["base", "web", "sale"]}})
    job = find(objs, "Job", "odoo-modules")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    assert job["spec"]["ttlSecondsAfterFinished"] == 86400
    args = container(job)["args"]
    assert "--init=base,web,sale" in args
    assert "--without-demo=all" in args
    assert "--stop-after-init" in args
    assert "--database=odoo" in args
    assert not [a for a in args if a.startswith("--update")]
    # its ConfigMap and ServiceAccount exist before it: hooks with a lower weight
    for kind in ("ConfigMap", "ServiceAccount"):
        hook = find(objs, kind, "odoo-modules")["metadata"]["annotations"]
        assert int(hook["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])
    assert "affinity" not in pod_spec(job)  # no web pod exists yet on a first install


def test_module_job_updates_with_dash_u_on_upgrade() -> None:
    objs = render_chart({}, upgrade=True)
    job = find(objs, "Job", "odoo-modules")
    args = container(job)["args"]
    assert "--update=base,web" in args
    assert not [a for a in args if a.startswith(("--init", "--without-demo"))]
    # the ReadWriteOnce filestore is attached to the web pod's node: the Job must run there
    affinity = pod_spec(job)["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert affinity[0]["topologyKey"] == "kubernetes.io/hostname"
    assert affinity[0]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "web"


def test_module_job_sets_the_attachment_storage_before_any_module_writes_one() -> None:
    objs = render_chart(HA_VALUES, upgrade=True)
    job = find(objs, "Job", "odoo-modules")
    assert "--update=fs_storage,fs_attachment,base,web" in container(job)["args"]
    assert "affinity" not in pod_spec(job)
    # an init container installs fs_storage/fs_attachment alone, then runs the storage script in odoo shell
    (storage,) = [c for c in pod_spec(job)["initContainers"] if c["name"] == "storage"]
    script = storage["command"][2]
    assert "--init=fs_storage,fs_attachment" in script and "odoo shell" in script
    assert "< /etc/odoo/configure_storage.py" in script
    code = find(objs, "ConfigMap", "odoo-modules")["data"]["configure_storage.py"]
    compile(code, "configure_storage.py", "exec")
    assert '"use_as_default_for_attachments": True' in code and "_force_storage_to_object_storage" in code
    # no credential in the script: botocore reads them from the Secret-backed env
    assert "AWS_SECRET_ACCESS_KEY" not in code
    env = {e["name"] for e in storage["env"]}
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "ERPOPS_FILESTORE_BUCKET"} <= env


# -- module Job as plain objects (moduleJob.hook=false, for deployers that ignore hooks) ------------

PLAIN_JOB_VALUES = deep_merge(HA_VALUES, {"moduleJob": {"hook": False, "modules": ["base", "web", "sale"]}})


def plain_job(values: dict[str, Any] = PLAIN_JOB_VALUES, version: str = "17.0") -> dict[str, Any]:
    (job,) = [o for o in render_chart(values, version) if o["kind"] == "Job"]
    return job


@pytest.mark.parametrize("version", VERSIONS)
def test_plain_module_job_has_no_hook_and_runs_install_and_update(version: str) -> None:
    objs = render_chart(PLAIN_JOB_VALUES, version)
    validate_k8s(objs, "1.30.0")
    assert check_all(objs) == []
    for obj in objs:
        annotations = obj["metadata"].get("annotations") or {}
        if "modules" in obj["metadata"]["name"]:
            assert not [a for a in annotations if a.startswith("helm.sh/hook")], obj["metadata"]["name"]
    job = plain_job(PLAIN_JOB_VALUES, version)
    assert "ttlSecondsAfterFinished" not in job["spec"]
    assert job["spec"]["backoffLimit"] == 0
    args = container(job)["args"]
    # Odoo installs the uninstalled modules of -i and updates the installed ones of -u: both, every run
    assert "--init=fs_storage,fs_attachment,base,web,sale" in args
    assert "--update=fs_storage,fs_attachment,base,web,sale" in args
    assert "--without-demo=all" in args and "--stop-after-init" in args
    wait, storage = pod_spec(job)["initContainers"]
    assert storage["name"] == "storage"  # after the database answers, before the modules
    assert wait["name"] == "wait-for-database" and wait["command"][:2] == ["python3", "-c"]
    compile(wait["command"][2], "wait-for-database", "exec")
    assert wait["command"][3:] == ["odoo-db-rw", "5432", "odoo", "require"]
    assert {e["name"] for e in wait["env"]} == {"PGUSER", "PGPASSWORD"}
    # the same odoo.conf as the web pods, in the Job's own ConfigMap, named like the Job
    name = job["metadata"]["name"]
    conf = find(objs, "ConfigMap", "odoo-config")["data"]["odoo.conf"]
    assert find(objs, "ConfigMap", name)["data"]["odoo.conf"] == conf
    assert [v["configMap"]["name"] for v in pod_spec(job)["volumes"] if "configMap" in v] == [name]


def test_plain_module_job_name_follows_image_database_and_modules() -> None:
    name = plain_job()["metadata"]["name"]
    assert re.fullmatch(r"odoo-modules-[0-9a-f]{10}", name), name
    assert plain_job()["metadata"]["name"] == name
    for change in ({"image": {"digest": "sha256:" + "f" * 64}}, {"moduleJob": {"modules": ["base", "web"]}},
                   {"database": {"name": "other"}}):
        assert plain_job(deep_merge(PLAIN_JOB_VALUES, change))["metadata"]["name"] != name, change
    for change in ({"web": {"replicaCount": 4}}, {"odoo": {"limits": {"timeCpu": 61}}},
                   {"moduleJob": {"activeDeadlineSeconds": 7200}}):
        assert plain_job(deep_merge(PLAIN_JOB_VALUES, change))["metadata"]["name"] == name, change
    long_release = plain_job(deep_merge(PLAIN_JOB_VALUES, {"fullnameOverride": "x" * 40}))
    assert len(long_release["metadata"]["name"]) <= 63


def test_plain_module_job_refuses_a_chart_made_pvc_filestore() -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape("moduleJob.hook=false")):
        render_chart({"moduleJob": {"hook": False}})
    objs = render_chart({"moduleJob": {"hook": False}, "persistence": {"enabled": False}})
    (job,) = [o for o in objs if o["kind"] == "Job"]
    assert job["metadata"]["name"].startswith("odoo-modules-")


def test_module_job_disabled_renders_nothing_of_it() -> None:
    objs = render_chart(deep_merge(HA_VALUES, {"moduleJob": {"enabled": False}}))
    assert not [o for o in objs if "modules" in o["metadata"]["name"]]


@pytest.mark.parametrize("upgrade", [False, True], ids=["install", "upgrade"])
def test_hook_module_job_is_unchanged_by_default(upgrade: bool) -> None:
    job = find(render_chart({}, upgrade=upgrade), "Job", "odoo-modules")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "initContainers" not in pod_spec(job)
    args = container(job)["args"]
    assert bool([a for a in args if a.startswith("--init")]) is not upgrade
    assert bool([a for a in args if a.startswith("--update")]) is upgrade


def test_smtp_settings_are_in_odoo_conf_and_the_password_only_in_memory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = deep_merge(HA_VALUES, {"mail": {"smtp": {
        "enabled": True, "server": "smtp.example.com", "port": 587, "ssl": True, "user": "erp@example.com",
        "existingSecret": "odoo-smtp", "passwordKey": "smtp-password"}}})
    objs = render_chart(values)
    configmap = find(objs, "ConfigMap", "odoo-config")["data"]["odoo.conf"]
    assert "smtp_password" not in configmap
    conf = odoo_conf(objs)
    assert conf.get("options", "smtp_server") == "smtp.example.com"
    assert conf.get("options", "smtp_port") == "587" and conf.get("options", "smtp_ssl") == "True"
    assert conf.get("options", "smtp_user") == "erp@example.com"
    (init,) = pod_spec(find(objs, "Deployment", "odoo-web"))["initContainers"]
    monkeypatch.setitem(SECRETS, ("odoo-smtp", "smtp-password"), "sm%tp $(Y) pw\n")
    env = container_env(init)
    script = kubelet_expand(init["command"][-1], env)
    template, rendered = tmp_path / "template", tmp_path / "config"
    template.mkdir()
    rendered.mkdir()
    (template / "odoo.conf").write_text(configmap)
    script = script.replace("/etc/odoo-template/", f"{template}/").replace("/etc/odoo/", f"{rendered}/")
    subprocess.run([*init["command"][:-1], script], env={"PATH": "/usr/bin:/bin", **env}, check=True, timeout=10)
    final = configparser.RawConfigParser()
    final.read(rendered / "odoo.conf")
    assert final.get("options", "smtp_password") == "sm%tp $(Y) pw"
    assert final.get("options", "admin_passwd") == SECRETS[("odoo-admin", "admin-password")].strip()


class _Records(list):
    """Just enough of an Odoo recordset/model for the storage script: search, create, write, count."""

    def __init__(self, model: _Model, items: list[dict[str, Any]]) -> None:
        super().__init__(items)
        self.model = model

    def write(self, vals: dict[str, Any]) -> None:
        for item in self:
            item.update(vals)


class _Model:
    def __init__(self, rows: list[dict[str, Any]], calls: list[str]) -> None:
        self.rows, self.calls = rows, calls

    def sudo(self) -> _Model:
        return self

    def with_context(self, **ctx: Any) -> _Model:
        self.calls.append(f"context {ctx}")
        return self

    def search(self, domain: list[Any], limit: int | None = None) -> _Records:
        (field, _, value), = domain
        return _Records(self, [r for r in self.rows if r.get(field) == value][:limit])

    def create(self, vals: dict[str, Any]) -> _Records:
        self.rows.append(dict(vals))
        return _Records(self, [self.rows[-1]])

    def search_count(self, domain: list[Any]) -> int:
        code = domain[1][2].removesuffix("%")
        return sum(1 for r in self.rows if r.get("store_fname") and not r["store_fname"].startswith(code))

    def _force_storage_to_object_storage(self) -> None:
        self.calls.append("force")
        for r in self.rows:
            if r.get("store_fname") and not r.get("stuck"):
                r["store_fname"] = "erpops_filestore://" + r["store_fname"]


@pytest.mark.parametrize("existing", [False, True], ids=["first-install", "later-run"])
def test_the_storage_script_makes_the_bucket_the_default_and_moves_everything(
        existing: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    code = compile(find(render_chart(HA_VALUES), "ConfigMap", "odoo-modules")["data"]["configure_storage.py"],
                   "configure_storage.py", "exec")
    calls: list[str] = []
    storages = [{"code": "erpops_filestore", "directory_path": "old"}] if existing else []
    attachments = [{"store_fname": "ab/abcdef"}, {"store_fname": False}]

    class Cr:
        def commit(self) -> None:
            calls.append("commit")

    class Env(dict):
        cr = Cr()

    env = Env({"fs.storage": _Model(storages, calls), "ir.attachment": _Model(attachments, calls)})
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("ERPOPS_FILESTORE_BUCKET", "acme-files")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://minio.example.com")
    exec(code, {"env": env})  # noqa: S102 (the chart's own script, against a stand-in env)
    (storage,) = storages
    assert storage["code"] == "erpops_filestore" and storage["protocol"] == "s3"
    assert storage["directory_path"] == "acme-files" and storage["use_as_default_for_attachments"] is True
    assert json.loads(storage["options"]) == {"client_kwargs": {"region_name": "eu-west-1"},
                                              "endpoint_url": "https://minio.example.com"}
    # committed as the default before the move, the move under that storage, committed again
    assert calls == ["commit", "context {'storage_location': 'erpops_filestore'}", "force", "commit"]
    assert attachments[0]["store_fname"] == "erpops_filestore://ab/abcdef"
    # an attachment the move could not take fails the Job, instead of staying on the scratch volume
    attachments.append({"store_fname": "cd/stuck", "stuck": True})
    with pytest.raises(SystemExit, match="1 attachments are still outside erpops_filestore"):
        exec(code, {"env": env})  # noqa: S102


# -- extension points and use as a subchart ---------------------------------------------------------

SMALL = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}
RESTRICTED = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
              "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
EXTENDED: dict[str, Any] = {
    "global": {"imageRegistry": "registry.example.com", "storageClass": "fast"},
    "extraEnvVars": [{"name": "TZ", "value": "Europe/Brussels"},
                     {"name": "SENTRY_DSN", "valueFrom": {"secretKeyRef": {"name": "sentry", "key": "dsn"}}}],
    "extraVolumes": [{"name": "fonts", "configMap": {"name": "report-fonts"}}],
    "extraVolumeMounts": [{"name": "fonts", "mountPath": "/usr/share/fonts/custom", "readOnly": True}],
    "initContainers": [{"name": "wait-for-mail", "image": "busybox:1.36", "command": ["true"],
                        "securityContext": RESTRICTED, "resources": SMALL}],
    "sidecars": [{"name": "log-shipper", "image": "fluent/fluent-bit:3.0", "securityContext": RESTRICTED,
                  "resources": SMALL}],
    "podAnnotations": {"team": "erp", "web-wins": "chart-wide"},
    "web": {"podAnnotations": {"web-wins": "web"}},
    "topologySpreadConstraints": [{"maxSkew": 2, "topologyKey": "topology.kubernetes.io/region",
                                   "whenUnsatisfiable": "DoNotSchedule",
                                   "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "odoo"}}}],
}


def test_extension_points_reach_the_web_and_cron_pods() -> None:
    values = deep_merge(HA_VALUES, EXTENDED)
    objs = render_chart(values)
    validate_k8s(objs, "1.30.0")
    assert check_all(objs) == []
    for name in ("odoo-web", "odoo-cron"):
        deployment = find(objs, "Deployment", name)
        spec = pod_spec(deployment)
        odoo = container(deployment)
        env = {e["name"]: e for e in odoo["env"]}
        assert env["TZ"]["value"] == "Europe/Brussels"
        assert env["SENTRY_DSN"]["valueFrom"]["secretKeyRef"]["name"] == "sentry"
        assert {"name": "fonts", "configMap": {"name": "report-fonts"}} in spec["volumes"]
        assert {"name": "fonts", "mountPath": "/usr/share/fonts/custom", "readOnly": True} in odoo["volumeMounts"]
        assert [c["name"] for c in spec["initContainers"]][-1] == "wait-for-mail"  # after the odoo.conf renderer
        assert [c["name"] for c in spec["containers"]] == ["odoo", "log-shipper"]
        assert [c["topologyKey"] for c in spec["topologySpreadConstraints"]] == ["topology.kubernetes.io/region"]
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["team"] == "erp" and "checksum/config" in annotations
    web = find(objs, "Deployment", "odoo-web")["spec"]["template"]["metadata"]["annotations"]
    cron = find(objs, "Deployment", "odoo-cron")["spec"]["template"]["metadata"]["annotations"]
    assert (web["web-wins"], cron["web-wins"]) == ("web", "chart-wide")


def test_extra_env_reaches_the_module_job_and_lint_stays_clean() -> None:
    values = deep_merge(HA_VALUES, EXTENDED)
    job = next(o for o in render_chart(values) if o["kind"] == "Job")
    assert "TZ" in {e["name"] for c in pod_spec(job)["containers"] for e in c.get("env", [])}
    report = helm.lint(str(ODOO_CHART), values, strict=True, kube_version="v1.30.0")
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == [], report


def test_the_chart_accepts_global_as_a_subchart_does() -> None:
    objs = render_chart({"global": {"imageRegistry": "r.example.com"}})
    assert find(objs, "Deployment", "odoo-web")


def test_an_extra_env_var_without_a_name_is_refused_by_the_schema() -> None:
    with pytest.raises(helm.HelmValuesError, match="name"):
        render_chart({"extraEnvVars": [{"value": "x"}]})


def test_every_problem_of_the_values_is_reported_at_once() -> None:
    with pytest.raises(helm.HelmRenderError) as err:
        render_chart({"redis": {"enabled": True},
                      "odoo": {"limits": {"memorySoft": 999999999, "memoryHard": 900000000}}})
    message = str(err.value)
    assert "3 problem(s) in the values" in message
    for fix in ("redis.host", "memorySoft", "needs the session_redis addon"):
        assert fix in message, message


EXPORTER = {"name": "odoo-exporter", "image": "registry.example.com/odoo-exporter:1.0", "resources": SMALL,
            "securityContext": RESTRICTED, "ports": [{"name": "metrics", "containerPort": 9273}]}


def test_pod_monitor_scrapes_the_exporter_sidecar() -> None:
    import jsonschema

    objs = render_chart(deep_merge(HA_VALUES, {"sidecars": [EXPORTER],
                                               "podMonitor": {"enabled": True, "labels": {"release": "prom"}}}))
    monitor = find(objs, "PodMonitor")
    schema = json.loads((ODOO_CHART.parents[1] / "infra" / "schemas" / "podmonitor-used-fields.json").read_text())
    jsonschema.validate(monitor, schema)
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    web = pod_spec(find(objs, "Deployment", "odoo-web"))
    selector = monitor["spec"]["selector"]["matchLabels"]
    labels = find(objs, "Deployment", "odoo-web")["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()  # it selects the web pods ...
    assert any(p["name"] == "metrics" for c in web["containers"] for p in c.get("ports", []))  # ... which serve it


def test_pod_monitor_without_an_exporter_is_refused() -> None:
    with pytest.raises(helm.HelmRenderError, match="Odoo serves no Prometheus metrics itself"):
        render_chart({"podMonitor": {"enabled": True}})


def test_no_pod_monitor_by_default() -> None:
    assert not [o for o in render_chart({}) if o["kind"] == "PodMonitor"]
