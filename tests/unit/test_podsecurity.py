"""devtools.podsecurity: each Pod Security Standards rule fails on a pod crafted to break it, and only it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools import podsecurity
from devtools.podsecurity import BASELINE, HOUSE, RESTRICTED, Violation, check, check_all


def good_pod() -> dict[str, Any]:
    """A pod that meets baseline, restricted and the house rules."""
    secure = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    resources = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "app"},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "initContainers": [
                {"name": "init", "image": "busybox", "securityContext": dict(secure), "resources": resources}
            ],
            "containers": [
                {
                    "name": "app",
                    "image": "nginx",
                    "securityContext": copy.deepcopy(secure),
                    "resources": copy.deepcopy(resources),
                    "ports": [{"containerPort": 8080}],
                }
            ],
            "volumes": [
                {"name": "tmp", "emptyDir": {}},
                {"name": "conf", "configMap": {"name": "c"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "d"}},
                {"name": "token", "projected": {"sources": []}},
            ],
        },
    }


def wrap(kind: str, pod: dict[str, Any]) -> dict[str, Any]:
    """The pod as the template of a workload of `kind`."""
    template = {"metadata": {"labels": {"app": "x"}, **{k: v for k, v in pod["metadata"].items() if k != "name"}}}
    template["spec"] = pod["spec"]
    meta = {"name": "app"}
    if kind == "Pod":
        return pod
    if kind == "CronJob":
        return {"kind": kind, "metadata": meta, "spec": {"jobTemplate": {"spec": {"template": template}}}}
    return {"kind": kind, "metadata": meta, "spec": {"template": template}}


WORKLOAD_KINDS = ["Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"]


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
def test_good_pod_passes_in_every_workload_kind(kind: str) -> None:
    assert check(wrap(kind, good_pod())) == []


@pytest.mark.parametrize("kind", ["Service", "ConfigMap", "Ingress", "HorizontalPodAutoscaler"])
def test_objects_without_pod_template_have_nothing_to_check(kind: str) -> None:
    assert check({"kind": kind, "metadata": {"name": "x"}, "spec": {"hostNetwork": True}}) == []


def app(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["spec"]["containers"][0]


def app_sc(pod: dict[str, Any]) -> dict[str, Any]:
    return app(pod)["securityContext"]


def pod_sc(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["spec"]["securityContext"]


Mutation = Callable[[dict[str, Any]], None]

# (id, mutation, level, rule, container or None for a pod-level finding)
BAD_PODS: list[tuple[str, Mutation, str, str, str | None]] = [
    ("hostNetwork", lambda p: p["spec"].update(hostNetwork=True), BASELINE, "host namespaces: hostNetwork", None),
    ("hostPID", lambda p: p["spec"].update(hostPID=True), BASELINE, "host namespaces: hostPID", None),
    ("hostIPC", lambda p: p["spec"].update(hostIPC=True), BASELINE, "host namespaces: hostIPC", None),
    ("privileged", lambda p: app_sc(p).update(privileged=True), BASELINE, "privileged", "app"),
    (
        "add-SYS_ADMIN",
        lambda p: app_sc(p)["capabilities"].update(add=["SYS_ADMIN"]),
        BASELINE,
        "capabilities",
        "app",
    ),
    (
        "add-CHOWN",
        lambda p: app_sc(p)["capabilities"].update(add=["CHOWN"]),
        RESTRICTED,
        "capabilities add",
        "app",
    ),
    ("no-drop-ALL", lambda p: app_sc(p).pop("capabilities"), RESTRICTED, "capabilities drop", "app"),
    (
        "hostPath",
        lambda p: p["spec"]["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        BASELINE,
        "hostPath volumes",
        None,
    ),
    (
        "nfs-volume",
        lambda p: p["spec"]["volumes"].append({"name": "n", "nfs": {"server": "s", "path": "/"}}),
        RESTRICTED,
        "volume types",
        None,
    ),
    ("hostPort", lambda p: app(p)["ports"][0].update(hostPort=8080), BASELINE, "host ports", "app"),
    (
        "allowPrivilegeEscalation-true",
        lambda p: app_sc(p).update(allowPrivilegeEscalation=True),
        RESTRICTED,
        "allowPrivilegeEscalation",
        "app",
    ),
    (
        "allowPrivilegeEscalation-unset",
        lambda p: app_sc(p).pop("allowPrivilegeEscalation"),
        RESTRICTED,
        "allowPrivilegeEscalation",
        "app",
    ),
    ("runAsNonRoot-unset", lambda p: pod_sc(p).pop("runAsNonRoot"), RESTRICTED, "runAsNonRoot", "app"),
    (
        "runAsNonRoot-false-on-container",
        lambda p: app_sc(p).update(runAsNonRoot=False),
        RESTRICTED,
        "runAsNonRoot",
        "app",
    ),
    ("runAsUser-0-pod", lambda p: pod_sc(p).update(runAsUser=0), RESTRICTED, "runAsUser", None),
    ("runAsUser-0-container", lambda p: app_sc(p).update(runAsUser=0), RESTRICTED, "runAsUser", "app"),
    ("seccomp-unset", lambda p: pod_sc(p).pop("seccompProfile"), RESTRICTED, "seccompProfile", "app"),
    (
        "seccomp-unconfined-container",
        lambda p: app_sc(p).update(seccompProfile={"type": "Unconfined"}),
        BASELINE,
        "seccomp",
        "app",
    ),
    (
        "unsafe-sysctl",
        lambda p: pod_sc(p).update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
        BASELINE,
        "sysctls",
        None,
    ),
    (
        "apparmor-annotation-unconfined",
        lambda p: p["metadata"].update(
            annotations={"container.apparmor.security.beta.kubernetes.io/app": "unconfined"}
        ),
        BASELINE,
        "AppArmor",
        "app",
    ),
    (
        "apparmor-profile-unconfined",
        lambda p: app_sc(p).update(appArmorProfile={"type": "Unconfined"}),
        BASELINE,
        "AppArmor",
        "app",
    ),
    (
        "selinux-custom-type",
        lambda p: pod_sc(p).update(seLinuxOptions={"type": "spc_t"}),
        BASELINE,
        "SELinux",
        None,
    ),
    (
        "selinux-user",
        lambda p: app_sc(p).update(seLinuxOptions={"user": "system_u"}),
        BASELINE,
        "SELinux",
        "app",
    ),
    ("procMount-unmasked", lambda p: app_sc(p).update(procMount="Unmasked"), BASELINE, "/proc mount", "app"),
    (
        "windows-hostProcess",
        lambda p: pod_sc(p).update(windowsOptions={"hostProcess": True}),
        BASELINE,
        "HostProcess",
        None,
    ),
    (
        "writable-root",
        lambda p: app_sc(p).pop("readOnlyRootFilesystem"),
        HOUSE,
        "readOnlyRootFilesystem",
        "app",
    ),
    ("no-limits", lambda p: app(p)["resources"].pop("limits"), HOUSE, "resources", "app"),
    ("no-cpu-request", lambda p: app(p)["resources"]["requests"].pop("cpu"), HOUSE, "resources", "app"),
    (
        "init-container-privileged",
        lambda p: p["spec"]["initContainers"][0]["securityContext"].update(privileged=True),
        BASELINE,
        "privileged",
        "init",
    ),
    (
        "ephemeral-container-escalates",
        lambda p: p["spec"].update(
            ephemeralContainers=[
                {"name": "debug", "image": "busybox", "securityContext": {"capabilities": {"drop": ["ALL"]}}}
            ]
        ),
        RESTRICTED,
        "allowPrivilegeEscalation",
        "debug",
    ),
]


@pytest.mark.parametrize("kind", ["Pod", "Deployment", "CronJob"])
@pytest.mark.parametrize(
    ("mutate", "level", "rule", "container"),
    [case[1:] for case in BAD_PODS],
    ids=[case[0] for case in BAD_PODS],
)
def test_each_rule_fails_on_a_pod_that_breaks_it(
    kind: str, mutate: Mutation, level: str, rule: str, container: str | None
) -> None:
    pod = good_pod()
    mutate(pod)
    violations = check(wrap(kind, pod))
    matching = [v for v in violations if v.rule == rule and v.level == level and v.container == container]
    assert matching, f"expected [{level}] {rule} on {container}, got {[str(v) for v in violations]}"
    found = matching[0]
    assert (found.kind, found.name) == (kind, "app")
    assert found.fix and str(found).startswith(f"{kind}/app")


def test_net_bind_service_is_the_one_capability_restricted_allows() -> None:
    pod = good_pod()
    app_sc(pod)["capabilities"]["add"] = ["NET_BIND_SERVICE"]
    assert check(pod) == []


def test_container_level_settings_satisfy_pod_wide_rules() -> None:
    pod = good_pod()
    pod["spec"]["securityContext"] = {}
    for c in [*pod["spec"]["containers"], *pod["spec"]["initContainers"]]:
        c["securityContext"].update(runAsNonRoot=True, seccompProfile={"type": "Localhost", "localhostProfile": "p"})
    assert check(pod) == []


@pytest.mark.parametrize(
    ("levels", "expected"),
    [((BASELINE,), set()), ((RESTRICTED,), {"allowPrivilegeEscalation"}), ((HOUSE,), {"readOnlyRootFilesystem"})],
)
def test_levels_can_be_checked_apart(levels: tuple[str, ...], expected: set[str]) -> None:
    pod = good_pod()
    app(pod)["securityContext"] = {"capabilities": {"drop": ["ALL"]}}
    assert {v.rule for v in check(pod, levels)} == expected


def test_unknown_level_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown level"):
        check(good_pod(), ["strict"])


def test_check_all_reports_each_object() -> None:
    bad = good_pod()
    bad["spec"]["hostNetwork"] = True
    violations = check_all([good_pod(), wrap("Deployment", bad), {"kind": "Service", "metadata": {"name": "s"}}])
    assert violations == [
        Violation("Deployment", "app", None, BASELINE, "host namespaces: hostNetwork", violations[0].fix)
    ]


def test_command_line_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(yaml.safe_dump_all([good_pod(), {"kind": "Service", "metadata": {"name": "s"}}]))
    broken = good_pod()
    app_sc(broken)["privileged"] = True
    bad.write_text(yaml.safe_dump(broken))
    assert podsecurity.main([str(good)]) == 0
    assert podsecurity.main([str(good), str(bad)]) == 1
    assert "Pod/app container app: [baseline] privileged" in capsys.readouterr().out
