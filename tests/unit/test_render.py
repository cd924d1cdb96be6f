"""`erpops render`: what a stack would create, as files, checked the way a cluster would check them.

Every stack is rendered once per session, in its own process (as the CLI does): prod through the
`erpops render` command itself, dev and staging through `python -m erpops.render`, concurrently.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from erpops import crdschema, podsecurity, spec
from erpops.render import PLACEHOLDER_PREFIX
from erpops.units import mib, parse_cpu, parse_memory
from infra import derive
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
            cmd = [sys.executable, "-m", "erpops.render", "--stack", stack, "--out", str(out / stack)]
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
    pod_monitors = spec.load(stack, ROOT).spec.monitoring.pod_monitors
    assert {o["kind"] for o in cnpg} == {"Cluster", "Pooler", "ScheduledBackup", *(["PodMonitor"] if pod_monitors else [])}
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
    pods = {f"{o['kind']}/{o['metadata']['name']}": o["spec"]["template"]["metadata"]["labels"]
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
        regular = [c for c in (podsecurity.pod_spec_of(obj) or {}).get("containers", [])]
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

    from erpops.helm_values import odoo_values, refs_for

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
    code = ("import sys, erpops.cli, erpops.render, erpops.helm_values, erpops.crdschema; "
            "assert not [m for m in sys.modules if m.split('.')[0].startswith('pulumi')], 'pulumi imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)
