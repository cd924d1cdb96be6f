"""Pod Security Standards checker: the "baseline" and "restricted" profiles, plus erpops house rules.

Pure Python over plain dicts (as rendered by Helm or captured from Pulumi): no Kubernetes client.
Each finding names the object, the container, the rule and the fix, so a failing test or CI run
says what to change. Rules follow https://kubernetes.io/docs/concepts/security/pod-security-standards/
(Kubernetes 1.30 policy version); the house rules are a read-only root filesystem and resource
requests and limits on every container.

Usage: `python -m devtools.podsecurity manifest.yaml [...]` prints the violations, exit 1 if any.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BASELINE = "baseline"
RESTRICTED = "restricted"
HOUSE = "house"
LEVELS = (BASELINE, RESTRICTED, HOUSE)

# Kinds that embed a pod template, and where its spec lives.
_POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}

BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
RESTRICTED_VOLUME_TYPES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
SECCOMP_ALLOWED = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
REQUIRED_RESOURCES = (("requests", "cpu"), ("requests", "memory"), ("limits", "cpu"), ("limits", "memory"))


@dataclass(frozen=True)
class Violation:
    """One broken rule. `container` is None for pod-level rules."""

    kind: str
    name: str
    container: str | None
    level: str  # baseline, restricted or house
    rule: str
    fix: str

    def __str__(self) -> str:
        where = f"{self.kind}/{self.name}" + (f" container {self.container}" if self.container else "")
        return f"{where}: [{self.level}] {self.rule}: {self.fix}"


def pod_spec_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod spec embedded in `obj`, or None when the kind has no pod template."""
    path = _POD_SPEC_PATHS.get(str(obj.get("kind", "")))
    if path is None:
        return None
    node: Any = obj
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def _pod_annotations(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    kind = obj.get("kind")
    if kind == "Pod":
        meta = obj.get("metadata") or {}
    else:
        path = (*_POD_SPEC_PATHS[str(kind)][:-1], "metadata")
        meta = obj
        for key in path:
            meta = meta.get(key) or {}
    return meta.get("annotations") or {}


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(kind of container, container) for regular, init and ephemeral containers."""
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(field) or []:
            yield field, c


class _Checker:
    def __init__(self, obj: Mapping[str, Any], spec: Mapping[str, Any], levels: frozenset[str]) -> None:
        self.kind = str(obj.get("kind"))
        self.name = str((obj.get("metadata") or {}).get("name", "?"))
        self.obj = obj
        self.spec = spec
        self.levels = levels
        self.found: list[Violation] = []

    def add(self, level: str, container: str | None, rule: str, fix: str) -> None:
        if level in self.levels:
            self.found.append(Violation(self.kind, self.name, container, level, rule, fix))

    def run(self) -> list[Violation]:
        pod_sc: Mapping[str, Any] = self.spec.get("securityContext") or {}
        self.pod_level(pod_sc)
        containers = list(_containers(self.spec))
        for field, c in containers:
            self.container(field, c, pod_sc)
        self.pod_wide_container_rules(pod_sc, [c for _, c in containers])
        return self.found

    # -- pod level ---------------------------------------------------------------------------
    def pod_level(self, sc: Mapping[str, Any]) -> None:
        for field in ("hostNetwork", "hostPID", "hostIPC"):
            if self.spec.get(field):
                self.add(BASELINE, None, f"host namespaces: {field}", f"remove spec.{field} (or set it to false)")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            self.add(BASELINE, None, "HostProcess", "remove securityContext.windowsOptions.hostProcess")
        for volume in self.spec.get("volumes") or []:
            vname = volume.get("name", "?")
            if "hostPath" in volume:
                self.add(
                    BASELINE,
                    None,
                    "hostPath volumes",
                    f"replace hostPath volume {vname!r} with an emptyDir, configMap, secret or PVC",
                )
            types = [k for k in volume if k != "name"]
            bad = [t for t in types if t not in RESTRICTED_VOLUME_TYPES]
            if bad:
                allowed = ", ".join(sorted(RESTRICTED_VOLUME_TYPES))
                self.add(RESTRICTED, None, "volume types", f"volume {vname!r} is {'/'.join(bad)}; use one of {allowed}")
        for sysctl in sc.get("sysctls") or []:
            if sysctl.get("name") not in SAFE_SYSCTLS:
                self.add(
                    BASELINE, None, "sysctls", f"remove sysctl {sysctl.get('name')!r}: only the safe set is allowed"
                )
        self.selinux(None, sc.get("seLinuxOptions"))
        self.apparmor(None, sc.get("appArmorProfile"))
        for key, value in _pod_annotations(self.obj).items():
            if key.startswith(APPARMOR_ANNOTATION) and not _apparmor_annotation_ok(str(value)):
                self.add(
                    BASELINE,
                    key.removeprefix(APPARMOR_ANNOTATION),
                    "AppArmor",
                    f"annotation {key} must be runtime/default or localhost/<profile>, not {value!r}",
                )
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            self.add(BASELINE, None, "seccomp", "set securityContext.seccompProfile.type to RuntimeDefault")
        if sc.get("runAsUser") == 0:
            self.add(RESTRICTED, None, "runAsUser", "set securityContext.runAsUser to a non-zero UID")

    # -- per container -----------------------------------------------------------------------
    def container(self, field: str, c: Mapping[str, Any], pod_sc: Mapping[str, Any]) -> None:
        cname = str(c.get("name", "?"))
        sc: Mapping[str, Any] = c.get("securityContext") or {}
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            self.add(BASELINE, cname, "HostProcess", "remove securityContext.windowsOptions.hostProcess")
        if sc.get("privileged"):
            self.add(BASELINE, cname, "privileged", "set securityContext.privileged to false")
        if sc.get("procMount") not in (None, "Default"):
            self.add(BASELINE, cname, "/proc mount", "remove securityContext.procMount (or set Default)")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                self.add(
                    BASELINE,
                    cname,
                    "host ports",
                    f"remove hostPort {port['hostPort']} (expose the port through a Service)",
                )
        caps: Mapping[str, Any] = sc.get("capabilities") or {}
        added = [str(x) for x in caps.get("add") or []]
        if any(cap not in BASELINE_CAPABILITIES for cap in added):
            extra = sorted(set(added) - BASELINE_CAPABILITIES)
            self.add(BASELINE, cname, "capabilities", f"do not add {', '.join(extra)}")
        if any(cap not in RESTRICTED_CAPABILITIES for cap in added):
            extra = sorted(set(added) - RESTRICTED_CAPABILITIES)
            self.add(RESTRICTED, cname, "capabilities add", f"add only NET_BIND_SERVICE, not {', '.join(extra)}")
        if "ALL" not in [str(x) for x in caps.get("drop") or []]:
            self.add(RESTRICTED, cname, "capabilities drop", "set securityContext.capabilities.drop to [ALL]")
        self.selinux(cname, sc.get("seLinuxOptions"))
        self.apparmor(cname, sc.get("appArmorProfile"))
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            self.add(BASELINE, cname, "seccomp", "set securityContext.seccompProfile.type to RuntimeDefault")
        if sc.get("allowPrivilegeEscalation") is not False:
            self.add(
                RESTRICTED, cname, "allowPrivilegeEscalation", "set securityContext.allowPrivilegeEscalation to false"
            )
        if sc.get("runAsUser") == 0:
            self.add(RESTRICTED, cname, "runAsUser", "set securityContext.runAsUser to a non-zero UID")
        if field == "ephemeralContainers":
            return  # debug containers: no resources, root filesystem is the debugger's business
        if sc.get("readOnlyRootFilesystem") is not True:
            self.add(
                HOUSE,
                cname,
                "readOnlyRootFilesystem",
                "set securityContext.readOnlyRootFilesystem to true and mount an emptyDir where it writes",
            )
        resources: Mapping[str, Any] = c.get("resources") or {}
        missing = [f"{a}.{b}" for a, b in REQUIRED_RESOURCES if not (resources.get(a) or {}).get(b)]
        if missing:
            self.add(HOUSE, cname, "resources", f"set resources {', '.join(missing)}")

    # -- rules satisfied either at pod level or by every container ---------------------------
    def pod_wide_container_rules(self, pod_sc: Mapping[str, Any], containers: list[Mapping[str, Any]]) -> None:
        pod_non_root = pod_sc.get("runAsNonRoot")
        pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
        for c in containers:
            cname = str(c.get("name", "?"))
            sc: Mapping[str, Any] = c.get("securityContext") or {}
            # a container's own setting wins over the pod's, so false there undoes true on the pod
            non_root = sc.get("runAsNonRoot") if sc.get("runAsNonRoot") is not None else pod_non_root
            if non_root is not True:
                self.add(
                    RESTRICTED,
                    cname,
                    "runAsNonRoot",
                    "set securityContext.runAsNonRoot to true on the pod (or on every container) "
                    "and never false on a container",
                )
            seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
            if seccomp not in SECCOMP_ALLOWED:
                self.add(
                    RESTRICTED,
                    cname,
                    "seccompProfile",
                    "set securityContext.seccompProfile.type to RuntimeDefault (or Localhost) "
                    "on the pod (or on every container)",
                )

    def selinux(self, cname: str | None, opts: Mapping[str, Any] | None) -> None:
        if not opts:
            return
        if opts.get("type", "") not in SELINUX_TYPES:
            self.add(
                BASELINE,
                cname,
                "SELinux",
                f"seLinuxOptions.type {opts['type']!r} is not allowed; use container_t or leave it unset",
            )
        for field in ("user", "role"):
            if opts.get(field):
                self.add(BASELINE, cname, "SELinux", f"remove seLinuxOptions.{field}")

    def apparmor(self, cname: str | None, profile: Mapping[str, Any] | None) -> None:
        if profile and profile.get("type") not in (None, "RuntimeDefault", "Localhost"):
            self.add(
                BASELINE,
                cname,
                "AppArmor",
                f"appArmorProfile.type {profile.get('type')!r}: use RuntimeDefault or Localhost",
            )


def _apparmor_annotation_ok(value: str) -> bool:
    return value == "runtime/default" or value.startswith("localhost/")


def check(obj: Mapping[str, Any], levels: Iterable[str] = LEVELS) -> list[Violation]:
    """Violations of the chosen levels (default: baseline, restricted and house rules) in one object.

    Objects without a pod template (Service, ConfigMap, ...) have none.
    """
    spec = pod_spec_of(obj)
    if spec is None:
        return []
    wanted = frozenset(levels)
    unknown = wanted - set(LEVELS)
    if unknown:
        raise ValueError(f"unknown level(s) {sorted(unknown)}; choose from {list(LEVELS)}")
    return _Checker(obj, spec, wanted).run()


def check_all(objs: Iterable[Mapping[str, Any]], levels: Iterable[str] = LEVELS) -> list[Violation]:
    """Violations in every object, in order."""
    levels = tuple(levels)
    return [v for obj in objs for v in check(obj, levels)]


def main(argv: list[str] | None = None) -> int:
    import yaml

    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m devtools.podsecurity MANIFEST.yaml [...]", file=sys.stderr)
        return 2
    objs = [doc for p in paths for doc in yaml.safe_load_all(Path(p).read_text()) if doc]
    violations = check_all(objs)
    for v in violations:
        print(v)
    checked = sum(1 for o in objs if pod_spec_of(o) is not None)
    print(f"{checked} workload(s) checked, {len(violations)} violation(s)", file=sys.stderr)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
