"""The CrossGuard pack (policy/) run on what each stack would create: every rule passes on the shipped stacks,
and each fires on a mutated resource with a message naming the resource and the fix.

The resources are the program's registrations under Pulumi's mocks (`python -m infra.render`) plus the objects
the helm/odoo chart renders with the program's values (the Chart's children, which a real preview would show
the pack as resources of their own).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi_policy import EnforcementLevel, PolicyResource, ResourceValidationArgs, StackValidationArgs
from pulumi_policy import ResourceValidationPolicy as ResourcePolicy

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "policy"))
import rules  # noqa: E402

STACKS = ["dev", "staging", "prod"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("policy-render")
    procs = {s: subprocess.Popen([sys.executable, "-m", "infra.render", "--stack", s, "--out", str(out / s)],
                                 cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for s in STACKS}
    for stack, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"render {stack}: {err}"
    return {s: out / s for s in STACKS}


def _token(obj: dict[str, Any]) -> str:
    group_version = obj["apiVersion"] if "/" in obj["apiVersion"] else f"core/{obj['apiVersion']}"
    return f"kubernetes:{group_version}:{obj['kind']}"


def resources(directory: Path, stack: str) -> list[PolicyResource]:
    """The stack's resources as the pack sees them: type, inputs (props), URN; bucket and user references
    resolved to their resources (property dependencies), as the engine passes them."""
    regs = [r for r in json.loads((directory / "resources.json").read_text()) if r["custom"]]
    out = [PolicyResource(r["type"], r["inputs"], r["urn"], r["name"], None, None, None, [], {}) for r in regs]
    for path in sorted((directory / "chart").glob("*.yaml")):
        obj = yaml.safe_load(path.read_text())
        out.append(PolicyResource(_token(obj), obj, f"urn:pulumi:{stack}::erpops::kubernetes:helm.sh/v4:Chart$"
                                  f"{_token(obj)}::{obj['metadata']['name']}", obj["metadata"]["name"], None, None,
                                  None, [], {}))
    by_bucket = {r.props.get("bucket"): r for r in out if r.resource_type == "aws:s3/bucket:Bucket"}
    by_user = {r.props.get("name"): r for r in out if r.resource_type == "aws:iam/user:User"}
    for r in out:
        if r.resource_type.startswith("aws:s3/bucket") and r.resource_type != "aws:s3/bucket:Bucket":
            r.property_dependencies = {"bucket": [by_bucket[r.props["bucket"]]]} if r.props.get("bucket") in \
                by_bucket else {}
        if r.resource_type == "aws:iam/userPolicy:UserPolicy" and r.props.get("user") in by_user:
            r.property_dependencies = {"user": [by_user[r.props["user"]]]}
    return out


def violations(res: list[PolicyResource], config: dict[str, dict[str, Any]] | None = None) -> list[tuple[str, str]]:
    """(rule, message) of every violation, each rule run the way the engine runs it."""
    found: list[tuple[str, str]] = []
    for policy in rules.POLICIES:
        cfg = (config or {}).get(policy.name, {})

        def report(message: str, urn: str | None = None, name: str = policy.name) -> None:
            found.append((name, message))

        if isinstance(policy, ResourcePolicy):
            for r in res:
                policy.validate(ResourceValidationArgs(r.resource_type, r.props, r.urn, r.name, None, None, cfg),
                                report)
        else:
            policy.validate(StackValidationArgs(res, cfg), report)
    return found


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    return request.param


def test_every_rule_passes_on_every_stack(rendered: dict[str, Path], stack: str) -> None:
    res = resources(rendered[stack], stack)
    kinds = {r.resource_type for r in res}
    assert {"kubernetes:apps/v1:Deployment", "kubernetes:networking.k8s.io/v1:NetworkPolicy",
            "kubernetes:core/v1:ConfigMap"} <= kinds  # the chart's objects are in, not only the program's
    assert violations(res) == []


def test_every_rule_passes_on_a_drill_with_its_own_cluster(tmp_path: Path) -> None:
    """drill.target: cluster (no shipped stack uses it): the scratch Cluster and its policies pass the pack too."""
    from tests.tool.test_render import _scratch_cluster, variant_root

    (tmp_path / "root").mkdir()
    root = variant_root(tmp_path / "root", _scratch_cluster)
    proc = subprocess.run([sys.executable, "-m", "infra.render", "--root", str(root), "--stack", "prod", "--out",
                           str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    res = resources(tmp_path / "out", "prod")
    assert _find(res, "kubernetes:postgresql.cnpg.io/v1:Cluster", "erpops-drill-pg")
    assert violations(res) == []
    # the sidecar is a container like any other: a literal secret in its env is caught
    pod = _find(res, "kubernetes:batch/v1:CronJob", "erpops-drill").props["spec"]["jobTemplate"]["spec"]["template"]
    pod["spec"]["initContainers"][0]["env"].append({"name": "PGPASSWORD_LITERAL", "value": "hunter2-literal"})
    pod["spec"]["initContainers"][0]["resources"] = {}
    found = violations(res)
    assert {rule for rule, _ in found} == {"container-resources", "no-secret-literals"}, found
    assert all("CronJob erpops-prod/erpops-drill" in message and "container odoo" in message for _, message in found)


def _find(res: list[PolicyResource], token: str, name: str) -> PolicyResource:
    (r,) = [x for x in res if x.resource_type == token and (x.props.get("metadata") or {}).get("name", x.props.get(
        "bucket", x.props.get("name"))) == name]
    return r


def _web(res: list[PolicyResource]) -> dict[str, Any]:
    return _find(res, "kubernetes:apps/v1:Deployment", "odoo-web").props["spec"]["template"]["spec"]


def _drop(res: list[PolicyResource], token: str) -> None:
    res[:] = [r for r in res if r.resource_type != token]


MUTATIONS: list[Any] = [
    pytest.param("pod-security-restricted", lambda res: _web(res)["containers"][0]["securityContext"].update(
        allowPrivilegeEscalation=True), "Deployment erpops-prod/odoo-web: container odoo",
        "allowPrivilegeEscalation: false", id="privilege-escalation"),
    pytest.param("pod-security-restricted", lambda res: _web(res).update(hostNetwork=True),
                 "Deployment erpops-prod/odoo-web", "hostNetwork is true: remove it", id="host-network"),
    pytest.param("container-resources", lambda res: _web(res)["containers"][0]["resources"].pop("limits"),
                 "container odoo has no resources limits.cpu, limits.memory", "set requests and limits",
                 id="no-limits"),
    pytest.param("stack-namespace-only", lambda res: _find(res, "kubernetes:batch/v1:CronJob", "erpops-drill").props[
        "metadata"].update(namespace="erpops-staging"), "CronJob erpops-staging/erpops-drill",
        "set metadata.namespace to erpops-prod", id="other-namespace"),
    pytest.param("default-deny-network-policy", lambda res: res.remove(_find(
        res, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "default-deny-all")), "no default-deny NetworkPolicy",
        "add one", id="no-default-deny"),
    pytest.param("no-secret-literals", lambda res: _web(res)["containers"][0].setdefault("env", []).append(
        {"name": "SMTP_PASSWORD", "value": "hunter2-hunter2"}), "container odoo env SMTP_PASSWORD",
        "use valueFrom.secretKeyRef", id="env-literal"),
    pytest.param("no-secret-literals", lambda res: _find(res, "kubernetes:core/v1:ConfigMap", "odoo-config").props[
        "data"].update({"odoo.conf": "[options]\nadmin_passwd = s3cr3t-value\n"}),
        "ConfigMap erpops-prod/odoo-config: key odoo.conf", "move the value into a Secret", id="configmap-value"),
    pytest.param("images-pinned", lambda res: _web(res)["containers"][0].update(image="odoo:17.0"),
                 "image odoo:17.0 tag 17.0 moves", "pin it by a dated tag", id="moving-tag"),
    pytest.param("images-pinned", lambda res: _find(res, "kubernetes:batch/v1:CronJob", "erpops-drill").props["spec"][
        "jobTemplate"]["spec"]["template"]["spec"]["containers"][0].update(image="erpops:latest"),
        "CronJob erpops-prod/erpops-drill: container drill image erpops:latest is :latest", "or a digest",
        id="latest"),
    pytest.param("buckets-private-encrypted", lambda res: _drop(
        res, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"),
        "bucket acme-erpops-prod-backups: public access is not blocked", "add a BucketPublicAccessBlock",
        id="public-access"),
    pytest.param("buckets-private-encrypted", lambda res: _drop(
        res, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"),
        "bucket acme-erpops-prod-filestore: no default encryption", "add a BucketServerSideEncryptionConfiguration",
        id="no-encryption"),
    pytest.param("backup-bucket-not-reachable-by-odoo", lambda res: _odoo_policy_reaches_backups(res),
                 "UserPolicy erpops-prod-filestore-bucket: Odoo's identity reaches the backup bucket",
                 "scope it to the filestore bucket only", id="iam"),
    pytest.param("backup-bucket-not-reachable-by-odoo", lambda res: _web(res)["containers"][0].setdefault(
        "envFrom", []).append({"secretRef": {"name": "object-storage-credentials"}}),
        "Deployment erpops-prod/odoo-web: an Odoo pod references the backup credentials",
        "give Odoo its own Secret", id="pod-secret"),
]


def _odoo_policy_reaches_backups(res: list[PolicyResource]) -> None:
    p = _find(res, "aws:iam/userPolicy:UserPolicy", "erpops-prod-filestore-bucket")
    doc = json.loads(p.props["policy"])
    doc["Statement"][1]["Resource"].append("arn:aws:s3:::acme-erpops-prod-backups/*")
    p.props = {**p.props, "policy": json.dumps(doc)}


@pytest.mark.parametrize(("rule", "mutate", "names", "fix"), MUTATIONS)
def test_each_rule_fires_naming_the_resource_and_the_fix(rendered: dict[str, Path], rule: str,
                                                         mutate: Callable[[list[PolicyResource]], None], names: str,
                                                         fix: str) -> None:
    res = copy.deepcopy(resources(rendered["prod"], "prod"))
    mutate(res)
    found = violations(res)
    assert found, f"{rule} did not fire"
    assert {r for r, _ in found} == {rule}, found
    assert any(names in m and fix in m for _, m in found), found


def test_the_own_namespace_and_allowed_ones_come_from_the_stack_config(rendered: dict[str, Path]) -> None:
    res = copy.deepcopy(resources(rendered["prod"], "prod"))
    _find(res, "kubernetes:batch/v1:CronJob", "erpops-drill").props["metadata"]["namespace"] = "cnpg-system"
    assert [r for r, _ in violations(res)] == ["stack-namespace-only"]
    assert violations(res, {"stack-namespace-only": {"allowedNamespaces": ["cnpg-system"]}}) == []


def test_every_rule_is_mandatory_unless_a_stack_config_relaxes_it() -> None:
    assert set(rules.INITIAL_CONFIG) == set(rules.RULES) and len(rules.RULES) == 8
    assert set(rules.INITIAL_CONFIG.values()) == {EnforcementLevel.MANDATORY}
    levels = {e.value for e in EnforcementLevel}
    for stack in STACKS:
        config = json.loads((ROOT / "policy" / "config" / f"{stack}.json").read_text())
        for name, value in config.items():
            assert name in rules.RULES, f"policy/config/{stack}.json: {name} is not a rule"
            level = value if isinstance(value, str) else value.get("enforcementLevel", "mandatory")
            assert level in levels, f"policy/config/{stack}.json: {name}: {level}"
    assert json.loads((ROOT / "policy" / "config" / "prod.json").read_text()) == {}  # prod relaxes nothing
