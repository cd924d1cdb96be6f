"""`erpops render`: what a stack would create, as files, checked the way a cluster would check them.

Every stack is rendered once per session, in its own process (as the CLI does): prod through the
`erpops render` command itself, dev and staging through `python -m infra.render`, concurrently.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools import podsecurity
from erpops import spec
from erpops.units import mib, parse_cpu, parse_memory
from infra import crdschema, derive
from infra.render import PLACEHOLDER_PREFIX
from tests.k8s import validate_k8s

ROOT = Path(__file__).resolve().parents[2]
STACKS = ["dev", "staging", "prod"]
ERPOPS = Path(sys.executable).parent / "erpops"


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("render")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = {}
    for stack in STACKS:
        if stack == "prod":
            cmd = [str(ERPOPS), "render", "--stack", stack, "--out", str(out / stack)]
        else:
            cmd = [sys.executable, "-m", "infra.render", "--stack", stack, "--out", str(out / stack)]
        procs[stack] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
    for stack, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"render {stack} exited {proc.returncode}:\n{stdout}\n{stderr}"
    return {stack: out / stack for stack in STACKS}


def load(directory: Path) -> list[dict[str, Any]]:
    return [doc for path in sorted(directory.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def program_objects(rendered: dict[str, Path], stack: str) -> list[dict[str, Any]]:
    return load(rendered[stack] / "k8s")


def chart_objects(rendered: dict[str, Path], stack: str) -> list[dict[str, Any]]:
    return load(rendered[stack] / "chart")


def find(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    return request.param


def test_cli_render_prod_writes_every_artifact(rendered: dict[str, Path]) -> None:
    out = rendered["prod"]
    for name in ("ops.json", "aws.yaml", "resources.json", "odoo-values.yaml"):
        assert (out / name).is_file(), f"{name} missing from {out}"
    assert list((out / "k8s").glob("*.yaml")) and list((out / "chart").glob("*.yaml"))
    ops = json.loads((out / "ops.json").read_text())
    assert ops["namespace"] == "erpops-prod" and ops["services"]["pooler_rw"]["name"] == "odoo-db-pooler-rw"
    aws = yaml.safe_load((out / "aws.yaml").read_text())
    assert {x["type"] for x in aws} >= {"aws:s3/bucket:Bucket", "aws:iam/user:User", "pulumi:providers:aws"}


def test_every_object_is_valid_for_kubernetes_1_30(rendered: dict[str, Path], stack: str) -> None:
    objs = program_objects(rendered, stack) + chart_objects(rendered, stack)
    builtin = [o for o in objs if not crdschema.is_custom(o)]
    validate_k8s(builtin, "1.30.0")
    cnpg = [o for o in objs if crdschema.is_custom(o)]
    s = spec.load(stack, ROOT).spec
    pod_monitors = s.monitoring.pod_monitors
    expected = {"Cluster", "Pooler", "ScheduledBackup", *(["PodMonitor"] if pod_monitors else []),
                *(["PrometheusRule"] if pod_monitors and s.drill.enabled else [])}
    assert {o["kind"] for o in cnpg} == expected
    for obj in cnpg:
        assert crdschema.validate(obj) == [], f"{obj['kind']}/{obj['metadata']['name']}"


def test_no_secret_value_reaches_any_file(rendered: dict[str, Path], stack: str) -> None:
    files = [p for p in rendered[stack].rglob("*") if p.is_file()]
    assert files
    for path in files:
        text = path.read_text()
        assert PLACEHOLDER_PREFIX not in text, f"{path} holds a secret value, not a reference"
    for secret in (o for o in program_objects(rendered, stack) if o["kind"] == "Secret"):
        assert "data" not in secret
        for key, value in secret["stringData"].items():
            assert value.startswith("<secret"), f"Secret/{secret['metadata']['name']}.{key} = {value!r}"


def test_the_chart_objects_are_present(rendered: dict[str, Path], stack: str) -> None:
    sized = spec.load(stack, ROOT)
    objs = chart_objects(rendered, stack)
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objs}
    assert {("Deployment", "odoo-web"), ("Deployment", "odoo-cron"), ("Service", "odoo-web"),
            ("Ingress", "odoo"), ("ConfigMap", "odoo-config")} <= kinds, kinds
    # the module Job is the program's own resource (Pulumi ignores Helm hooks), not the chart's
    assert not [k for k in kinds if k[0] == "Job" or k[1].startswith("odoo-modules")], kinds
    assert (("HorizontalPodAutoscaler", "odoo-web") in kinds) == sized.spec.odoo.web.autoscale.enabled
    for obj in objs:
        assert obj["metadata"]["namespace"] == sized.namespace, f"{obj['kind']}/{obj['metadata']['name']}"
    # the web and cron ServiceAccounts are the program's (one per workload), not the chart's
    assert ("ServiceAccount", "odoo-web") not in kinds and ("ServiceAccount", "odoo-cron") not in kinds


def module_job(rendered: dict[str, Path], stack: str) -> dict[str, Any]:
    jobs = [o for o in program_objects(rendered, stack) if o["kind"] == "Job"]
    assert len(jobs) == 1, [o["metadata"]["name"] for o in jobs]
    return jobs[0]


def test_the_module_job_is_a_plain_program_object(rendered: dict[str, Path], stack: str) -> None:
    job = module_job(rendered, stack)
    name = job["metadata"]["name"]
    assert name.startswith("odoo-modules-"), name
    annotations = job["metadata"].get("annotations", {})
    assert not [a for a in annotations if a.startswith("helm.sh/")], annotations
    assert "ttlSecondsAfterFinished" not in job["spec"]
    # strictly valid for Kubernetes 1.30 and Pod Security "restricted", on its own
    validate_k8s([job, find(program_objects(rendered, stack), "ConfigMap", name)], "1.30.0")
    violations = podsecurity.check_all([job], (podsecurity.BASELINE, podsecurity.RESTRICTED))
    assert not violations, "\n".join(map(str, violations))
    assert not podsecurity.check_all([job])
    # the same odoo.conf as the web and cron pods
    conf = find(program_objects(rendered, stack), "ConfigMap", name)["data"]["odoo.conf"]
    assert conf == find(chart_objects(rendered, stack), "ConfigMap", "odoo-config")["data"]["odoo.conf"]
    resources = json.loads((rendered[stack] / "resources.json").read_text())
    (chart,) = [x for x in resources if x["type"] == "kubernetes:helm.sh/v4:Chart"]
    (job_reg,) = [x for x in resources if x["type"] == "kubernetes:batch/v1:Job"]
    assert job_reg["urn"] in chart["depends_on"], "the chart must wait for the module Job"
    cnpg = {x["urn"] for x in resources if x["type"].startswith("kubernetes:postgresql.cnpg.io/v1:")
            and x["type"].rsplit(":", 1)[1] in ("Cluster", "Pooler")}
    assert len(cnpg) == 2 and cnpg <= set(job_reg["depends_on"]), job_reg["depends_on"]


def _pooler_pod(pooler: dict[str, Any]) -> dict[str, Any]:
    # CloudNativePG makes a Deployment from this template: check it as the pod it becomes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pooler["metadata"]["name"]},
            "spec": pooler["spec"]["template"]["spec"]}


def test_every_pod_is_pod_security_restricted(rendered: dict[str, Path], stack: str) -> None:
    objs = program_objects(rendered, stack) + chart_objects(rendered, stack)
    pooler = find(objs, "Pooler", "odoo-db-pooler-rw")
    workloads = [o for o in objs if podsecurity.pod_spec_of(o) is not None] + [_pooler_pod(pooler)]
    assert len(workloads) >= 4  # web, cron, module Job, pooler (and Redis where sessions are in it)
    violations = podsecurity.check_all(workloads, (podsecurity.BASELINE, podsecurity.RESTRICTED))
    assert not violations, "\n".join(map(str, violations))
    house = podsecurity.check_all([o for o in objs if podsecurity.pod_spec_of(o) is not None])
    assert not house, "\n".join(map(str, house))
    cluster = find(objs, "Cluster", "odoo-db")
    assert cluster["spec"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_the_chart_is_wired_to_what_the_program_creates(rendered: dict[str, Path], stack: str) -> None:
    program, chart = program_objects(rendered, stack), chart_objects(rendered, stack)
    secrets = {o["metadata"]["name"]: set(o["stringData"]) for o in program if o["kind"] == "Secret"}
    # CloudNativePG creates <cluster>-app for the initdb owner
    secrets["odoo-db-app"] = {"username", "password"}
    for obj in chart + program:
        pod = podsecurity.pod_spec_of(obj)
        if not pod:
            continue
        for c in [*pod.get("initContainers", []), *pod.get("containers", [])]:
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    where = f"{obj['kind']}/{obj['metadata']['name']} {c['name']} env {env['name']}"
                    assert ref["name"] in secrets, f"{where}: Secret {ref['name']} is made by nobody"
                    assert ref["key"] in secrets[ref["name"]], f"{where}: Secret {ref['name']} has no {ref['key']}"
        if obj in chart:
            sa = pod.get("serviceAccountName")
            made = {o["metadata"]["name"] for o in program + chart if o["kind"] == "ServiceAccount"}
            assert sa in made, f"{obj['kind']}/{obj['metadata']['name']}: ServiceAccount {sa} is made by nobody"
    conf = find(chart, "ConfigMap", "odoo-config")["data"]["odoo.conf"]
    assert "db_host = odoo-db-pooler-rw" in conf and f"db_name = odoo_{stack}" in conf


def test_network_policies_select_the_pods_that_exist(rendered: dict[str, Path], stack: str) -> None:
    program, chart = program_objects(rendered, stack), chart_objects(rendered, stack)
    def template(o: dict[str, Any]) -> dict[str, Any]:
        return o["spec"]["jobTemplate"]["spec"]["template"] if o["kind"] == "CronJob" else o["spec"]["template"]

    pods = {f"{o['kind']}/{o['metadata']['name']}": template(o)["metadata"]["labels"]
            for o in program + chart if podsecurity.pod_spec_of(o) is not None}

    def selected(selector: dict[str, str]) -> list[str]:
        return [name for name, labels in pods.items() if selector.items() <= labels.items()]

    ingress = find(program, "NetworkPolicy", "odoo-web-from-ingress")["spec"]["podSelector"]["matchLabels"]
    assert selected(ingress) == ["Deployment/odoo-web"]
    odoo = find(program, "NetworkPolicy", "odoo-egress")["spec"]["podSelector"]["matchLabels"]
    job = module_job(rendered, stack)
    assert set(selected(odoo)) == {"Deployment/odoo-web", "Deployment/odoo-cron", f"Job/{job['metadata']['name']}"}
    if any(o["kind"] == "StatefulSet" for o in program):
        redis = find(program, "NetworkPolicy", "redis-from-odoo")["spec"]["podSelector"]["matchLabels"]
        assert selected(redis) == ["StatefulSet/redis"]
    web_service = find(chart, "Service", "odoo-web")["spec"]["selector"]
    assert selected(web_service) == ["Deployment/odoo-web"]
    if any(o["kind"] == "CronJob" for o in program):
        for name in ("drill-egress",):
            drill = find(program, "NetworkPolicy", name)["spec"]["podSelector"]["matchLabels"]
            assert selected(drill) == ["CronJob/erpops-drill"]
        admitted = find(program, "NetworkPolicy", "postgres-from-drill")["spec"]["ingress"][0]["from"][0]
        assert selected(admitted["podSelector"]["matchLabels"]) == ["CronJob/erpops-drill"]


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    pod = podsecurity.pod_spec_of(obj) or {}
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def test_quota_and_limits_admit_every_pod_at_full_scale(rendered: dict[str, Path], stack: str) -> None:
    sized = spec.load(stack, ROOT)
    program, chart = program_objects(rendered, stack), chart_objects(rendered, stack)
    quota = find(program, "ResourceQuota", "erpops-quota")["spec"]["hard"]
    limits = find(program, "LimitRange", "erpops-limits")["spec"]["limits"]
    container_max = next(x["max"] for x in limits if x["type"] == "Container")
    hpa = [o for o in chart if o["kind"] == "HorizontalPodAutoscaler"]
    cpu = memory = 0.0
    pods = 0
    for obj in program + chart:
        if podsecurity.pod_spec_of(obj) is None:
            continue
        replicas = obj["spec"].get("replicas", 1)
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] == "odoo-web" and hpa:
            replicas = hpa[0]["spec"]["maxReplicas"]
        pod_spec = podsecurity.pod_spec_of(obj) or {}
        # native sidecars (init containers that keep running) hold their resources beside the containers
        regular = [*pod_spec.get("containers", []),
                   *[c for c in pod_spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]]
        cpu += replicas * sum(parse_cpu(c["resources"]["limits"]["cpu"]) for c in regular)
        memory += replicas * sum(parse_memory(c["resources"]["limits"]["memory"]) for c in regular)
        pods += replicas
        for c in _containers(obj):
            assert parse_cpu(c["resources"]["limits"]["cpu"]) <= parse_cpu(container_max["cpu"]), c["name"]
            assert mib(c["resources"]["limits"]["memory"]) <= mib(container_max["memory"]), c["name"]
    pg, pooler = sized.spec.postgres, derive.pooler_resources()["limits"]
    cpu += pg.instances * parse_cpu(pg.cpu) + sized.spec.pooler.instances * parse_cpu(pooler["cpu"])
    memory += pg.instances * parse_memory(pg.memory) + sized.spec.pooler.instances * parse_memory(pooler["memory"])
    pods += pg.instances + sized.spec.pooler.instances
    assert parse_cpu(quota["limits.cpu"]) >= cpu, (quota["limits.cpu"], cpu)
    assert parse_memory(quota["limits.memory"]) >= memory, (quota["limits.memory"], memory)
    assert int(quota["pods"]) >= pods
    assert parse_memory(quota["requests.storage"]) >= pg.instances * parse_memory(pg.storage)


def test_a_bad_spec_exits_2_with_the_key_and_the_fix(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    doc = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    doc["config"]["erpops:spec"]["postgres"]["instances"] = 1
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    proc = subprocess.run([str(ERPOPS), "--root", str(tmp_path), "render", "--stack", "prod", "--out", str(out)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "postgres.instances" in proc.stderr and "set postgres.instances to 3" in proc.stderr, proc.stderr
    assert not out.exists(), "a bad spec must write nothing"


@pytest.mark.parametrize("stack_name", STACKS)
def test_odoo_values_pass_the_charts_schema(stack_name: str) -> None:
    import helm_python as helm

    from erpops.helm_values import odoo_values
    from erpops.naming import refs_for

    sized = spec.load(stack_name, ROOT)
    values = odoo_values(sized, refs_for(sized), pod_annotations={derive.ROTATION_ANNOTATION: "initial"})
    with helm.Chart.load(str(ROOT / "helm" / "odoo")) as chart:
        chart.validate_schema(values)
    secret_refs = {values["database"]["existingSecret"], values["redis"]["existingSecret"],
                   values["s3"]["existingSecret"], values["odoo"]["adminPassword"]["existingSecret"],
                   values["mail"]["smtp"].get("existingSecret", "")} - {""}
    fs = sized.spec.filestore
    # never CloudNativePG's backup key (object-storage-credentials): Odoo has its own, for the filestore only
    expected = {"odoo-db-app", "odoo-admin", *(["odoo-object-storage"] if fs.mode == "object-storage" else []),
                *(["redis-auth"] if fs.session_store == "redis" else []),
                *(["odoo-smtp"] if sized.spec.mail.outgoing and sized.spec.mail.outgoing.password_key else [])}
    assert secret_refs == expected


def test_erpops_core_does_not_import_pulumi() -> None:
    code = ("import sys, erpops.cli, infra.render, erpops.helm_values, infra.crdschema; "
            "assert not [m for m in sys.modules if m.split('.')[0].startswith('pulumi')], 'pulumi imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


# --------------------------------------------------------------------------------------------
# The production shape, read from the rendered objects as the cluster would run them
# --------------------------------------------------------------------------------------------

ODOO_CORE_WIDE = {"base", "web"}
STORAGE_ADDONS = ("fs_storage", "fs_attachment")


def _odoo_pods(rendered: dict[str, Path], stack: str) -> list[dict[str, Any]]:
    """Every pod that runs Odoo on the database: web, cron and the module Job."""
    chart = chart_objects(rendered, stack)
    return [find(chart, "Deployment", "odoo-web"), find(chart, "Deployment", "odoo-cron"), module_job(rendered, stack)]


def _odoo_containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in _containers(obj) if c["name"] in ("odoo", "storage")]


def _values(rendered: dict[str, Path], stack: str) -> dict[str, Any]:
    return yaml.safe_load((rendered[stack] / "odoo-values.yaml").read_text())


def _conf(rendered: dict[str, Path], stack: str) -> dict[str, str]:
    text = find(chart_objects(rendered, stack), "ConfigMap", "odoo-config")["data"]["odoo.conf"]
    return dict(line.split(" = ", 1) for line in text.splitlines() if " = " in line)


def test_every_odoo_pod_sees_the_same_filestore_and_session_store(rendered: dict[str, Path], stack: str) -> None:
    sized = spec.load(stack, ROOT)
    fs, program = sized.spec.filestore, program_objects(rendered, stack)
    addons = set(_values(rendered, stack)["image"]["addons"])
    conf = _conf(rendered, stack)
    for pod_obj in _odoo_pods(rendered, stack):
        pod = podsecurity.pod_spec_of(pod_obj)
        volumes = {v["name"]: v for v in pod["volumes"]}
        where = f"{pod_obj['kind']}/{pod_obj['metadata']['name']}"
        for c in _odoo_containers(pod_obj):
            mounts = {m["mountPath"]: volumes[m["name"]] for m in c["volumeMounts"]}
            env = {e["name"]: e for e in c.get("env", [])}
            filestore, sessions = mounts["/var/lib/odoo"], mounts.get("/var/lib/odoo/sessions")
            if fs.mode == "shared-volume":
                # one ReadWriteMany claim, made by the program, holds attachments and sessions
                assert filestore["persistentVolumeClaim"]["claimName"] == "odoo-filestore", where
                assert sessions is None, f"{where}: sessions must stay on the shared claim"
                claim = find(program, "PersistentVolumeClaim", "odoo-filestore")["spec"]
                assert claim["accessModes"] == ["ReadWriteMany"]
                assert claim["storageClassName"] == fs.volume.storage_class
            else:
                assert fs.mode == "object-storage", f"{stack}: a shipped stack keeps Odoo's state on one pod"
                # /var/lib/odoo is scratch: attachments go to the bucket, sessions to PostgreSQL
                assert "emptyDir" in filestore, where
                assert env["ERPOPS_FILESTORE_BUCKET"]["value"] == sized.spec.object_storage.filestore_bucket
                for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                    assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "odoo-object-storage", where
                assert fs.session_store == "database" and "session_db" in addons
                assert env["SESSION_DB_URI"]["value"] == sized.database, where
                assert set(STORAGE_ADDONS) <= addons
    wide = set(conf["server_wide_modules"].split(","))
    assert wide - ODOO_CORE_WIDE <= addons, f"server-wide modules the image lacks: {wide - ODOO_CORE_WIDE - addons}"
    assert ("session_db" in wide) == (fs.session_store == "database")


def test_the_module_job_names_only_modules_the_image_carries(rendered: dict[str, Path], stack: str) -> None:
    sized = spec.load(stack, ROOT)
    addons = set(_values(rendered, stack)["image"]["addons"])
    job = module_job(rendered, stack)
    words = [w for c in _odoo_containers(job) for w in [*c.get("args", []), *c.get("command", [])]]
    named = {m for w in words for opt in re.findall(r"--(?:init|update)=([a-z0-9_,]+)", w) for m in opt.split(",")}
    # the spec's modules are Odoo's own (the spec refuses addon names the image lacks); the rest the image's
    assert named - set(sized.spec.odoo.modules) <= addons, named - set(sized.spec.odoo.modules) - addons
    if sized.spec.filestore.mode == "object-storage":
        assert set(STORAGE_ADDONS) <= named
    else:
        assert not named & set(STORAGE_ADDONS)


def test_the_platform_sets_the_attachment_location(rendered: dict[str, Path], stack: str) -> None:
    sized = spec.load(stack, ROOT)
    job = module_job(rendered, stack)
    init = {c["name"]: c for c in podsecurity.pod_spec_of(job).get("initContainers", [])}
    if sized.spec.filestore.mode != "object-storage":
        # Odoo's default location (file, in data_dir/filestore) is the shared claim itself
        assert "storage" not in init
        return
    # before the modules: install the storage addons alone, then make the bucket the default and move
    # what the base install wrote, so nothing stays on the Job's scratch /var/lib/odoo
    assert list(init) == ["wait-for-database", "storage"]
    script = init["storage"]["command"][2]
    assert script.index("--init=fs_storage,fs_attachment") < script.index("odoo shell")
    code = find(program_objects(rendered, stack), "ConfigMap", job["metadata"]["name"])["data"]["configure_storage.py"]
    assert '"use_as_default_for_attachments": True' in code and '"protocol": "s3"' in code
    assert "_force_storage_to_object_storage" in code and "still outside" in code


def test_the_ingress_carries_odoo_sized_body_and_timeouts(rendered: dict[str, Path], stack: str) -> None:
    sized = spec.load(stack, ROOT)
    chart = chart_objects(rendered, stack)
    time_real = int(_conf(rendered, stack)["limit_time_real"])
    main, ws = find(chart, "Ingress", "odoo")["metadata"]["annotations"], \
        find(chart, "Ingress", "odoo-websocket")["metadata"]["annotations"]
    nginx = "nginx.ingress.kubernetes.io/"
    for notes, least in ((main, time_real), (ws, sized.spec.ingress.websocket_timeout_seconds)):
        assert notes[nginx + "proxy-body-size"] == f"{sized.spec.ingress.body_size_mib}m"
        assert int(notes[nginx + "proxy-read-timeout"]) >= least
        assert int(notes[nginx + "proxy-send-timeout"]) >= least
    rules = find(chart, "Ingress", "odoo-websocket")["spec"]["rules"]
    ws_paths = [p["path"] for r in rules for p in r["http"]["paths"]]
    assert ws_paths == ["/websocket"]


def _egress_ports(policy: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for rule in policy["spec"]["egress"]:
        for port in rule["ports"]:
            out.setdefault(port["port"], []).extend(rule["to"])
    return out


def test_egress_admits_exactly_the_specs_mail_servers(rendered: dict[str, Path], stack: str) -> None:
    sized = spec.load(stack, ROOT)
    policy = find(program_objects(rendered, stack), "NetworkPolicy", "odoo-egress")
    ports = _egress_ports(policy)
    mail = sized.spec.mail
    servers = ([mail.outgoing] if mail.outgoing else []) + list(mail.incoming)
    for server in servers:
        assert ports[server.port] == [{"ipBlock": {"cidr": c}} for c in server.cidrs], server.host
    smtp_like = {25, 465, 587, 993, 995, 143, 110} - {s.port for s in servers}
    assert not smtp_like & set(ports), f"{stack}: mail ports open that the spec does not name"
    if sized.spec.tier != "prod":
        assert not servers, "non-prod stacks keep mail neutralized"
    conf = _conf(rendered, stack)
    if mail.outgoing:
        assert conf["smtp_server"] == mail.outgoing.host and int(conf["smtp_port"]) == mail.outgoing.port
        assert conf["smtp_ssl"] == ("True" if mail.outgoing.tls == "starttls" else "False")
        assert "smtp_password" not in conf  # added from the Secret by the init container, in memory
    else:
        assert "smtp_server" not in conf


def test_the_exporters_may_be_scraped_from_the_monitoring_namespace(rendered: dict[str, Path], stack: str) -> None:
    sized = spec.load(stack, ROOT)
    program = program_objects(rendered, stack)
    namespace = sized.spec.monitoring.namespace
    exporters = (("postgres", derive.CNPG_METRICS_PORT), ("pooler-from-odoo", derive.PGBOUNCER_METRICS_PORT))
    for policy_name, port in exporters:
        rules = [r for r in find(program, "NetworkPolicy", policy_name)["spec"]["ingress"]
                 if {p["port"] for p in r["ports"]} == {port}]
        if namespace:
            peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}
            assert rules == [{"from": [peer], "ports": [{"protocol": "TCP", "port": port}]}], policy_name
        else:
            assert rules == [], policy_name
    monitors = [o for o in program if o["kind"] == "PodMonitor"]
    assert len(monitors) == (2 if sized.spec.monitoring.pod_monitors else 0)
    if monitors:
        selectors = [m["spec"]["selector"]["matchLabels"] for m in monitors]
        assert sorted(selectors, key=str) == sorted([{"cnpg.io/cluster": "odoo-db"},
                                                     {"cnpg.io/poolerName": "odoo-db-pooler-rw"}], key=str)
        assert all(m["spec"]["podMetricsEndpoints"] == [{"port": "metrics"}] for m in monitors)


def test_the_two_object_storage_identities_cannot_reach_each_others_bucket(
        rendered: dict[str, Path], stack: str) -> None:
    sized = spec.load(stack, ROOT)
    storage = sized.spec.object_storage
    program = program_objects(rendered, stack)
    cluster = find(program, "Cluster", "odoo-db")
    barman = cluster["spec"]["backup"]["barmanObjectStore"]["s3Credentials"]
    assert barman["accessKeyId"]["name"] == "object-storage-credentials"
    # no Odoo container holds CloudNativePG's key
    for pod_obj in _odoo_pods(rendered, stack):
        for c in _containers(pod_obj):
            refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", []) if "valueFrom" in e}
            assert "object-storage-credentials" not in refs, f"{pod_obj['metadata']['name']}: Odoo holds the backup key"
    if storage.mode != "aws":
        secrets = sized.spec.secrets
        if sized.spec.filestore.mode == "object-storage":
            assert secrets.backup_s3_access_key_id not in (None, secrets.s3_access_key_id)
        return
    aws = yaml.safe_load((rendered[stack] / "aws.yaml").read_text())
    policies = {x["inputs"]["user"]: json.loads(x["inputs"]["policy"]) for x in aws
                if x["type"] == "aws:iam/userPolicy:UserPolicy"}
    keys = {x["inputs"]["user"] for x in aws if x["type"] == "aws:iam/accessKey:AccessKey"}
    reach = {user: {r.split("/", 1)[0] for st in pol["Statement"] for r in st["Resource"]}
             for user, pol in policies.items()}
    assert reach[f"erpops-{stack}-backup"] == {f"arn:aws:s3:::{storage.backup_bucket}"}
    if sized.spec.filestore.mode == "object-storage":
        assert reach[f"erpops-{stack}-filestore"] == {f"arn:aws:s3:::{storage.filestore_bucket}"}
    assert keys == set(policies)


def test_the_image_that_runs_is_the_one_the_program_builds(rendered: dict[str, Path], stack: str) -> None:
    from erpops import image as odoo_image

    sized = spec.load(stack, ROOT)
    resources = json.loads((rendered[stack] / "resources.json").read_text())
    builds = [x for x in resources if x["type"] == "docker-build:index:Image"]
    images = {c["image"] for o in _odoo_pods(rendered, stack) for c in _containers(o)}
    if not sized.spec.image.build.enabled:
        assert builds == [] and images == {sized.spec.odoo.image}
        return
    (build,) = builds
    ref = odoo_image.odoo_image(sized).ref
    assert images == {ref}, images
    inputs = build["inputs"]
    assert inputs["tags"] == [ref] and inputs["push"] is True
    assert (ROOT / inputs["context"]["location"]).resolve() == odoo_image.IMAGE_DIR
    assert inputs["buildArgs"] == {"ODOO_IMAGE": sized.spec.odoo.image, "ODOO_SERIES": sized.spec.odoo.version}
    # the Odoo component (module Job, chart) waits for the pushed image
    (odoo,) = [x for x in resources if x["type"] == "erpops:k8s:Odoo"]
    (component,) = [x for x in resources if x["type"] == "erpops:docker:OdooImage"]
    (job,) = [x for x in resources if x["type"] == "kubernetes:batch/v1:Job"]
    assert component["urn"] in job["depends_on"] or build["urn"] in job["depends_on"], job["depends_on"]
    assert odoo


def test_prod_renders_the_restore_drill_least_privileged(rendered: dict[str, Path]) -> None:
    """The CronJob runs `erpops drill` one at a time within a deadline, with its own DB role, S3 key and policy."""
    objs = program_objects(rendered, "prod")
    cron = find(objs, "CronJob", "erpops-drill")
    sized = spec.load("prod", ROOT)
    assert cron["spec"]["concurrencyPolicy"] == "Forbid" and cron["spec"]["schedule"] == sized.spec.drill.schedule
    job = cron["spec"]["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] == sized.spec.drill.deadline_minutes * 60 and job["backoffLimit"] == 0
    pod = job["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == sized.spec.drill.image and c["args"][:5] == ["--root", "/etc/erpops", "drill", "--stack",
                                                                      "prod"]
    assert c["resources"]["requests"] == c["resources"]["limits"]
    env = {e["name"]: e for e in c["env"]}
    assert env["PGUSER"]["valueFrom"]["secretKeyRef"]["name"] == "erpops-drill-db"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "erpops-drill-s3"
    assert env["PGHOST"]["value"] == "odoo-db-rw" and env["PGSSLMODE"]["value"] == "require"
    assert pod["serviceAccountName"] == "erpops-drill" and pod["automountServiceAccountToken"] is False
    assert not podsecurity.check_all([cron], (podsecurity.BASELINE, podsecurity.RESTRICTED))
    # the spec it reads is the stack's, without a secret value
    cm = find(objs, "ConfigMap", "erpops-drill-spec")
    assert spec.validate(yaml.safe_load(cm["data"]["Pulumi.prod.yaml"])["config"][spec.SPEC_KEY], "prod")
    # its own database role: CREATEDB only, its password in a basic-auth Secret
    cluster = find(objs, "Cluster", "odoo-db")
    (role,) = cluster["spec"]["managed"]["roles"]
    assert role["name"] == "erpops_drill" and role["createdb"] and not role["superuser"] and not role["createrole"]
    assert role["passwordSecret"] == {"name": "erpops-drill-db"} and role["inRoles"] == []
    assert find(objs, "Secret", "erpops-drill-db")["type"] == "kubernetes.io/basic-auth"
    # the network: out to PostgreSQL, S3 and the Pushgateway's namespace; PostgreSQL admits it
    egress = find(objs, "NetworkPolicy", "drill-egress")["spec"]["egress"]
    assert [r["ports"][0]["port"] for r in egress] == [5432, 443, 9091]
    assert egress[2]["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    admit = find(objs, "NetworkPolicy", "postgres-from-drill")["spec"]
    assert admit["podSelector"]["matchLabels"]["cnpg.io/cluster"] == "odoo-db"
    assert admit["ingress"][0]["from"][0]["podSelector"]["matchLabels"].items() <= \
        job["template"]["metadata"]["labels"].items()
    # the Odoo login (drill.odoo_login, on in prod): the stack's own Odoo image as a native sidecar, on loopback
    assert sized.spec.drill.odoo_login and c["args"][-2:] == ["--odoo-url", "http://127.0.0.1:8069"]
    (odoo,) = pod["initContainers"]
    web = find(chart_objects(rendered, "prod"), "Deployment", "odoo-web")["spec"]["template"]["spec"]
    assert odoo["restartPolicy"] == "Always" and odoo["image"] == web["containers"][0]["image"]
    assert odoo["securityContext"]["runAsUser"] == web["securityContext"]["runAsUser"]
    script = odoo["command"][2]
    conf = dict(line.split(" = ", 1) for line in script.split("<<'EOF'\n", 1)[1].split("\nEOF", 1)[0].splitlines()[1:])
    assert conf["http_interface"] == "127.0.0.1" and conf["list_db"] == "False"
    assert conf["workers"] == "0" and conf["max_cron_threads"] == "0" and conf["server_wide_modules"] == "base,web"
    assert re.fullmatch(conf["dbfilter"], f"odoo_prod_drill_{'2' * 14}")
    assert not re.match(conf["dbfilter"], "odoo_prod") and not re.match(conf["dbfilter"], "odoo_prod_drill_x")
    assert "admin_passwd" not in conf and "/dev/urandom" in script  # a random master password, made at start
    # it reads the copy as the drill's role, and holds no S3 key: PostgreSQL is all it may need
    odoo_env = {e["name"]: e for e in odoo["env"]}
    assert set(odoo_env) == {"PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGSSLMODE"}
    assert odoo_env["PGPASSWORD"]["valueFrom"] == env["PGPASSWORD"]["valueFrom"]
    probe = odoo["startupProbe"]
    assert "http://127.0.0.1:8069/web/health" in probe["exec"]["command"][-1]
    assert probe["periodSeconds"] * probe["failureThreshold"] <= sized.spec.drill.deadline_minutes * 60
    assert odoo["resources"]["limits"] == {"cpu": sized.spec.drill.odoo_resources.cpu,
                                           "memory": sized.spec.drill.odoo_resources.memory}
    assert role["connectionLimit"] == derive.drill_connection_limit(sized) == 2 + 3 + int(conf["db_maxconn"])
    # the alert rules
    rules = {r["alert"]: r for r in find(objs, "PrometheusRule", "erpops-drill")["spec"]["groups"][0]["rules"]}
    assert set(rules) == {"ErpopsDrillFailed", "ErpopsDrillNoRecentSuccess", "ErpopsDrillNeverSucceeded",
                          "ErpopsDrillRtoAboveObjective"}
    assert f"> {sized.spec.backup.rto_minutes * 60}" in rules["ErpopsDrillRtoAboveObjective"]["expr"]
    assert f"> {sized.spec.drill.no_success_hours * 3600}" in rules["ErpopsDrillNoRecentSuccess"]["expr"]
    for rule in rules.values():
        assert (ROOT / rule["annotations"]["runbook"]).is_file(), rule["annotations"]["runbook"]
    # the drill's IAM user reads the sets and writes only its reports
    aws = yaml.safe_load((rendered["prod"] / "aws.yaml").read_text())
    (policy,) = [json.loads(r["inputs"]["policy"]) for r in aws
                 if r["type"] == "aws:iam/userPolicy:UserPolicy" and "drill" in r["name"]]
    actions = {a for st in policy["Statement"] for a in st["Action"]}
    assert actions == {"s3:ListBucket", "s3:GetBucketLocation", "s3:GetObject", "s3:PutObject"}
    put = [st for st in policy["Statement"] if "s3:PutObject" in st["Action"]]
    assert put[0]["Resource"] == ["arn:aws:s3:::acme-erpops-prod-backups/prod/drills/*"]


def test_only_stacks_that_enable_the_drill_render_it(rendered: dict[str, Path]) -> None:
    for stack in ("dev", "staging"):
        assert not [o for o in program_objects(rendered, stack) if "drill" in o["metadata"]["name"]]


# --------------------------------------------------------------------------------------------
# drill.target: cluster (no shipped stack uses it: prod rendered with it, from a root beside the repository's)
# --------------------------------------------------------------------------------------------

def variant_root(tmp: Path, change: Any, stack: str = "prod") -> Path:
    """A project root whose stack file is the repository's with change applied; everything else links back."""
    for item in ROOT.iterdir():
        if item.name not in (f"Pulumi.{stack}.yaml", ".git", "out", ".venv", ".venv-checkov"):
            (tmp / item.name).symlink_to(item)
    doc = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    change(doc["config"][spec.SPEC_KEY])
    (tmp / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return tmp


def _scratch_cluster(raw: dict[str, Any]) -> None:
    raw["drill"].update(target="cluster", cluster={"cpu": "1", "memory": "2Gi", "storage": "40Gi"})


@pytest.fixture(scope="module")
def cluster_variant(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = variant_root(tmp_path_factory.mktemp("variant-root"), _scratch_cluster)
    out = tmp_path_factory.mktemp("variant-render")
    proc = subprocess.run([sys.executable, "-m", "infra.render", "--root", str(root), "--stack", "prod", "--out",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return root, out


def test_a_scratch_cluster_drill_renders_its_own_small_cnpg_cluster(cluster_variant: tuple[Path, Path]) -> None:
    root, out = cluster_variant
    sized = spec.load("prod", root)
    program, chart = load(out / "k8s"), load(out / "chart")
    # every object valid: Kubernetes 1.30 strictly, the CloudNativePG objects against the CRDs
    validate_k8s([o for o in program + chart if not crdschema.is_custom(o)])
    for obj in (o for o in program if crdschema.is_custom(o)):
        assert crdschema.validate(obj) == [], f"{obj['kind']}/{obj['metadata']['name']}"
    scratch = find(program, "Cluster", "erpops-drill-pg")["spec"]
    assert scratch["instances"] == 1 and "backup" not in scratch and scratch["enableSuperuserAccess"] is False
    assert scratch["storage"] == {"size": "40Gi", "storageClass": sized.spec.kubernetes.storage_class}
    assert scratch["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}
    assert scratch["imageName"] == find(program, "Cluster", "odoo-db")["spec"]["imageName"]
    assert int(scratch["postgresql"]["parameters"]["max_connections"]) > derive.drill_connection_limit(sized)
    assert [b["spec"]["cluster"]["name"] for b in program if b["kind"] == "ScheduledBackup"] == ["odoo-db"]
    # the drill's role lives in the scratch cluster only: the live server does not know it
    (role,) = scratch["managed"]["roles"]
    assert role["name"] == "erpops_drill" and role["createdb"] and not role["superuser"]
    assert "managed" not in find(program, "Cluster", "odoo-db")["spec"]
    # the drill and its Odoo sidecar connect to the scratch cluster
    pod = find(program, "CronJob", "erpops-drill")["spec"]["jobTemplate"]["spec"]["template"]
    for c in [*pod["spec"]["containers"], *pod["spec"]["initContainers"]]:
        assert {e["name"]: e.get("value") for e in c["env"]}["PGHOST"] == "erpops-drill-pg-rw", c["name"]
    assert not podsecurity.check_all([find(program, "CronJob", "erpops-drill")],
                                     (podsecurity.BASELINE, podsecurity.RESTRICTED))
    # the network: the drill reaches the scratch cluster, not the live one; the scratch cluster no S3
    policies = {o["metadata"]["name"]: o["spec"] for o in program if o["kind"] == "NetworkPolicy"}
    assert "postgres-from-drill" not in policies
    assert policies["drill-egress"]["egress"][0]["to"] == [
        {"podSelector": {"matchLabels": {"cnpg.io/cluster": "erpops-drill-pg", "cnpg.io/podRole": "instance"}}}]
    scratch_policy = policies["drill-postgres"]
    assert scratch_policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"].items() <= \
        pod["metadata"]["labels"].items()
    assert {p["port"] for r in scratch_policy["egress"] for p in r["ports"]} == {5432, 8000, 443, 6443}
    # the drill's NetworkPolicies do not select the scratch cluster's pods (its labels are not the drill's)
    inherited = scratch["inheritedMetadata"]["labels"]
    assert not derive.drill_labels().items() <= inherited.items()
    # and the quota holds it: one more PVC of its size, its instance and its initdb pod
    quota = find(program, "ResourceQuota", "erpops-quota")["spec"]["hard"]
    _, storage_mib = derive.pvc_plan(sized)
    assert parse_memory(quota["requests.storage"]) >= (storage_mib * 1024 * 1024) >= \
        (sized.spec.postgres.instances + 1) * parse_memory(sized.spec.postgres.storage) + parse_memory("40Gi")
    server = spec.load("prod", ROOT)
    assert parse_cpu(quota["limits.cpu"]) >= parse_cpu(derive.resource_quota(server)["limits.cpu"]) + 2 * 1.0
    assert derive.pvc_plan(sized)[0] == derive.pvc_plan(server)[0] + 1


def _odoo_values(sized: spec.Sized) -> dict[str, Any]:
    from erpops.helm_values import odoo_values, refs_for

    return odoo_values(sized, refs_for(sized))
