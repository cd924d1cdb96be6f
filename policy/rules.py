"""The rules of the erpops policy pack, importable without starting the pack (PolicyPack() serves forever).

Each rule checks one promise of the project on what a stack would create, and every violation names the
resource and the fix. All are mandatory by default (INITIAL_CONFIG); a stack relaxes one to advisory with
`--policy-pack-config policy/config/<stack>.json` ({"<rule>": "advisory"}).

Self-contained on purpose (no erpops import): the pack may run in its own virtualenv.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

K8S = "kubernetes:"
# kind -> path of the pod spec inside the object
POD_SPEC_PATHS = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"), "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"), "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"), "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "StorageClass",
                  "PersistentVolume", "PriorityClass", "MutatingWebhookConfiguration",
                  "ValidatingWebhookConfiguration"}
SECRET_WORDS = re.compile(r"(passw|secret|token|private.?key|access.?key|api.?key|credential)", re.I)
CREDENTIAL_SHAPES = (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY"),
                     re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{20,}|glpat-[A-Za-z0-9_-]{20,}|xox[abp]-[A-Za-z0-9-]+)"),
                     re.compile(r"://[^/\s:@]+:[^/\s@]+@"))
DIGEST = re.compile(r"@sha256:[a-f0-9]{64}$")
DATED = re.compile(r"(19|20)\d{2}-?[01]\d-?[0-3]\d")
FULL_VERSION = re.compile(r"^v?\d+\.\d+\.\d+([-.][A-Za-z0-9.]+)?$")


def stack_of(urn: str) -> str:
    """urn:pulumi:<stack>::<project>::<type>::<name> -> <stack>."""
    return urn.split(":", 3)[2].split("::", 1)[0] if urn.startswith("urn:pulumi:") else ""


def kind_of(resource_type: str) -> str:
    return resource_type.rsplit(":", 1)[-1]


def _name(props: Mapping[str, Any]) -> str:
    meta = props.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


def _dig(node: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def pod_spec(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    path = POD_SPEC_PATHS.get(kind_of(resource_type)) if resource_type.startswith(K8S) else None
    spec = _dig(props, path) if path else None
    return spec if isinstance(spec, Mapping) else None


def containers(spec: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for key in ("initContainers", "containers"):
        yield from spec.get(key) or []


# --------------------------------------------------------------------------------------------
# Resource rules
# --------------------------------------------------------------------------------------------

def pod_security_restricted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    spec = pod_spec(args.resource_type, args.props)
    if spec is None:
        return
    what = f"{kind_of(args.resource_type)} {_name(args.props)}"
    pod_ctx = spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            report(f"{what}: {flag} is true: remove it (Pod Security restricted)", args.urn)
    for volume in spec.get("volumes") or []:
        if "hostPath" in volume:
            report(f"{what}: volume {volume.get('name')} is a hostPath: use an emptyDir or a PVC", args.urn)
    for c in containers(spec):
        ctx = c.get("securityContext") or {}
        where = f"{what}: container {c.get('name')}"
        if ctx.get("allowPrivilegeEscalation") is not False:
            report(f"{where}: set securityContext.allowPrivilegeEscalation: false", args.urn)
        if ctx.get("privileged"):
            report(f"{where}: privileged: remove securityContext.privileged", args.urn)
        if "ALL" not in ((ctx.get("capabilities") or {}).get("drop") or []):
            report(f"{where}: set securityContext.capabilities.drop: [ALL]", args.urn)
        if not (ctx.get("runAsNonRoot") or pod_ctx.get("runAsNonRoot")) or 0 in (ctx.get("runAsUser"),
                                                                                  pod_ctx.get("runAsUser")):
            report(f"{where}: set runAsNonRoot: true (and no runAsUser 0) in the pod or container securityContext",
                   args.urn)
        seccomp = (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            report(f"{where}: set seccompProfile.type: RuntimeDefault in the pod or container securityContext",
                   args.urn)


def container_resources(args: ResourceValidationArgs, report: ReportViolation) -> None:
    spec = pod_spec(args.resource_type, args.props)
    if spec is None:
        return
    for c in containers(spec):
        res = c.get("resources") or {}
        missing = [f"{part}.{r}" for part in ("requests", "limits") for r in ("cpu", "memory")
                   if not (res.get(part) or {}).get(r)]
        if missing:
            report(f"{kind_of(args.resource_type)} {_name(args.props)}: container {c.get('name')} has no "
                   f"resources {', '.join(missing)}: set requests and limits for cpu and memory", args.urn)


def stack_namespace_only(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not args.resource_type.startswith(K8S) or args.resource_type.startswith("kubernetes:helm.sh"):
        if args.resource_type.startswith("kubernetes:helm.sh"):
            ns = args.props.get("namespace")
            own = _own_namespace(args)
            if ns and ns != own and ns not in _allowed(args):
                report(f"Chart {args.props.get('name')}: namespace {ns} is not the stack's {own}: install it into "
                       f"{own}, or list {ns} in allowedNamespaces of the stack's policy config", args.urn)
        return
    kind, meta = kind_of(args.resource_type), args.props.get("metadata") or {}
    if "apiVersion" not in args.props and kind in ("Provider",):
        return
    own = _own_namespace(args)
    ns = meta.get("name") if kind == "Namespace" else meta.get("namespace")
    if kind in CLUSTER_SCOPED - {"Namespace"}:
        report(f"{kind} {meta.get('name')}: cluster-scoped objects are outside the stack: remove it", args.urn)
    elif ns != own and ns not in _allowed(args):
        report(f"{kind} {_name(args.props)}: namespace {ns or '(none)'} is not the stack's {own}: set "
               f"metadata.namespace to {own}", args.urn)


def _own_namespace(args: Any) -> str:
    return str(args.get_config().get("namespace") or f"erpops-{stack_of(args.urn)}")


def _allowed(args: Any) -> list[str]:
    return list(args.get_config().get("allowedNamespaces") or [])


def _looks_secret(key: str, value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    if any(p.search(value) for p in CREDENTIAL_SHAPES):
        return "holds what looks like a credential"
    if SECRET_WORDS.search(key) and not value.startswith("<secret") and "\n" not in value and len(value) >= 6:
        return "is named like a secret and holds a literal value"
    return None


def no_secret_literals(args: ResourceValidationArgs, report: ReportViolation) -> None:
    kind = kind_of(args.resource_type)
    if args.resource_type.startswith(K8S) and kind == "ConfigMap":
        for key, value in (args.props.get("data") or {}).items():
            why = _looks_secret(key, value)
            if why is None and isinstance(value, str):
                for line in value.splitlines():  # odoo.conf and other key = value files
                    k, sep, v = line.partition("=")
                    v = v.strip()
                    if sep and v and v not in ("False", "True", "None"):
                        why = _looks_secret(k.strip(), v)
                        if why:
                            break
            if why:
                report(f"ConfigMap {_name(args.props)}: key {key} {why}: move the value into a Secret and reference "
                       "it (secretKeyRef), its value in Pulumi secret config", args.urn)
    spec = pod_spec(args.resource_type, args.props)
    for c in containers(spec) if spec is not None else ():
        for env in c.get("env") or []:
            why = _looks_secret(env.get("name", ""), env.get("value"))
            if why:
                report(f"{kind} {_name(args.props)}: container {c.get('name')} env {env.get('name')} {why}: use "
                       "valueFrom.secretKeyRef instead of a literal", args.urn)


# PostgreSQL 10+ versions have two parts: 15.18 is a complete release (CloudNativePG's images)
PG_VERSION = re.compile(r"^\d{2}\.\d{1,2}$")


def _image_problem(image: str, postgres: bool = False) -> str | None:
    if DIGEST.search(image):
        return None
    tail = image.rsplit("/", 1)[-1]
    if ":" not in tail:
        return "has no tag"
    tag = tail.rsplit(":", 1)[1]
    if tag == "latest":
        return "is :latest"
    if DATED.search(tag) or FULL_VERSION.match(tag) or (postgres and PG_VERSION.match(tag)):
        return None
    return f"tag {tag} moves (no date, no full x.y.z version)"


def images_pinned(args: ResourceValidationArgs, report: ReportViolation) -> None:
    spec = pod_spec(args.resource_type, args.props)
    images = [(f"container {c.get('name')}", c.get("image", "")) for c in containers(spec)] if spec else []
    if args.resource_type == "kubernetes:postgresql.cnpg.io/v1:Cluster":
        images.append(("imageName", (args.props.get("spec") or {}).get("imageName", "")))
    for where, image in images:
        why = _image_problem(str(image), postgres=where == "imageName")
        if why:
            report(f"{kind_of(args.resource_type)} {_name(args.props)}: {where} image {image} {why}: pin it by a "
                   "dated tag (odoo:17.0-20241010) or a digest (@sha256:...)", args.urn)


# --------------------------------------------------------------------------------------------
# Stack rules (they look across resources)
# --------------------------------------------------------------------------------------------

def default_deny_present(args: StackValidationArgs, report: ReportViolation) -> None:
    policies = [r for r in args.resources if r.resource_type == "kubernetes:networking.k8s.io/v1:NetworkPolicy"]
    workloads = [r for r in args.resources if pod_spec(r.resource_type, r.props) is not None]
    if not workloads:
        return
    for r in policies:
        spec = r.props.get("spec") or {}
        if (spec.get("podSelector") in ({}, None) or spec.get("podSelector") == {"matchLabels": {}}) and \
                set(spec.get("policyTypes") or []) >= {"Ingress", "Egress"} and not spec.get("ingress") \
                and not spec.get("egress"):
            return
    report("the stack has no default-deny NetworkPolicy (podSelector {}, policyTypes [Ingress, Egress], no rules): "
           "add one so every flow must be allowed by name", None)


def _bucket_refs(r: Any) -> set[str]:
    out = set()
    if isinstance(r.props.get("bucket"), str):
        out.add(r.props["bucket"])
    for dep in (r.property_dependencies or {}).get("bucket", []):
        out.add(dep.urn)
    return out


def buckets_private_encrypted(args: StackValidationArgs, report: ReportViolation) -> None:
    buckets = [r for r in args.resources if r.resource_type == "aws:s3/bucket:Bucket"]
    blocks = [r for r in args.resources if r.resource_type == "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"]
    sse = [r for r in args.resources if r.resource_type
           == "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"]
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    for b in buckets:
        ids = {b.props.get("bucket"), b.urn} - {None}
        mine = [x for x in blocks if _bucket_refs(x) & ids]
        if not any(all(x.props.get(f) is True for f in flags) for x in mine):
            report(f"bucket {b.props.get('bucket')}: public access is not blocked: add a BucketPublicAccessBlock with "
                   f"{', '.join(flags)} all true", b.urn)
        enc = [x for x in sse if _bucket_refs(x) & ids]
        if not any(rule.get("applyServerSideEncryptionByDefault", {}).get("sseAlgorithm")
                   for x in enc for rule in x.props.get("rules") or []):
            report(f"bucket {b.props.get('bucket')}: no default encryption: add a "
                   "BucketServerSideEncryptionConfiguration (sseAlgorithm AES256 or aws:kms)", b.urn)


def _policy_resources(doc: Any) -> list[str]:
    if isinstance(doc, str):
        try:
            doc = json.loads(doc)
        except ValueError:
            return []
    out = []
    for st in (doc or {}).get("Statement") or []:
        res = st.get("Resource") or []
        out += [res] if isinstance(res, str) else list(res)
    return out


def backup_bucket_unreachable_by_odoo(args: StackValidationArgs, report: ReportViolation) -> None:
    """Neither Odoo's IAM user nor Odoo's pods can reach the backup bucket or its credentials."""
    config = args.get_config()
    backup = [r for r in args.resources if r.resource_type == "aws:s3/bucket:Bucket"
              and (r.props.get("tags") or {}).get("erpops:purpose") == "backup"]
    names = {str(b.props.get("bucket")) for b in backup}
    odoo_users = {r.urn: r.props.get("name") for r in args.resources if r.resource_type == "aws:iam/user:User"
                  and str(r.props.get("name", "")).endswith(str(config.get("odooUserSuffix") or "-filestore"))}
    for p in (r for r in args.resources if r.resource_type == "aws:iam/userPolicy:UserPolicy"):
        owner = {d.urn for d in (p.property_dependencies or {}).get("user", [])} | {
            urn for urn, name in odoo_users.items() if p.props.get("user") == name}
        if not owner & set(odoo_users):
            continue
        reached = [res for res in _policy_resources(p.props.get("policy")) if any(
            res == f"arn:aws:s3:::{n}" or res.startswith(f"arn:aws:s3:::{n}/") or res in ("*", "arn:aws:s3:::*")
            for n in names)]
        if reached:
            report(f"UserPolicy {p.props.get('name')}: Odoo's identity reaches the backup bucket ({reached[0]}): "
                   "scope it to the filestore bucket only", p.urn)
    secret = str(config.get("backupSecret") or "object-storage-credentials")
    for r in args.resources:
        spec = pod_spec(r.resource_type, r.props)
        labels = _dig(r.props, (*POD_SPEC_PATHS.get(kind_of(r.resource_type), ("spec",))[:-1], "metadata",
                                "labels")) or {}
        if spec is None or labels.get("app.kubernetes.io/name") != "odoo":
            continue
        text = json.dumps(spec)
        if f'"name": "{secret}"' in text or f'"secretName": "{secret}"' in text:
            report(f"{kind_of(r.resource_type)} {_name(r.props)}: an Odoo pod references the backup credentials "
                   f"Secret {secret}: give Odoo its own Secret for the filestore bucket", r.urn)


def _resource(name: str, description: str, validate: Callable[..., None]) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(name=name, description=description, validate=validate)


def _stack(name: str, description: str, validate: Callable[..., None]) -> StackValidationPolicy:
    return StackValidationPolicy(name=name, description=description, validate=validate)


POLICIES = [
    _resource("pod-security-restricted", "Every pod meets Pod Security 'restricted'", pod_security_restricted),
    _resource("container-resources", "Every container sets cpu and memory requests and limits", container_resources),
    _resource("stack-namespace-only", "Nothing outside the stack's own namespace", stack_namespace_only),
    _resource("no-secret-literals", "No secret value in a ConfigMap or an env literal", no_secret_literals),
    _resource("images-pinned", "Images pinned by dated tag or digest", images_pinned),
    _stack("default-deny-network-policy", "A default-deny NetworkPolicy is present", default_deny_present),
    _stack("buckets-private-encrypted", "Buckets block public access and encrypt by default",
           buckets_private_encrypted),
    _stack("backup-bucket-not-reachable-by-odoo", "Odoo's identity cannot reach the backup bucket",
           backup_bucket_unreachable_by_odoo),
]
RULES = {p.name: p for p in POLICIES}
INITIAL_CONFIG: dict[str, Any] = {p.name: EnforcementLevel.MANDATORY for p in POLICIES}
