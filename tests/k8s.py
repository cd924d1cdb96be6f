"""Shared helpers for tests that render Kubernetes objects and validate them.

`render_chart` renders a chart offline through helm-python-sdk (the real Helm engine, no binary,
no cluster), `validate_k8s` checks objects against the Kubernetes OpenAPI schemas strictly.
Import the SDK as `helm_python`: a bare `import helm` resolves to the repository's helm/ directory.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml

from tests.paths import ODOO_CHART

KUBE_VERSION = "1.30.0"
# libyaml's loader when PyYAML was built with it: ten times faster on rendered charts
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class K8sValidationError(AssertionError):
    """A rendered object is not valid for the target Kubernetes version."""


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `override` into a copy of `base`, recursing into dicts (as Helm merges values)."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_manifests(rendered: Mapping[str, str]) -> list[dict[str, Any]]:
    """Split Helm's {template path: text} output into objects, dropping NOTES.txt and empty documents."""
    objs: list[dict[str, Any]] = []
    for path in sorted(rendered):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.load_all(rendered[path], Loader=_YAML_LOADER):
            if doc:
                objs.append(doc)
    return objs


def render_chart(
    values: Mapping[str, Any] | None = None,
    version: str | None = "17.0",
    namespace: str = "erpops-test",
    *,
    chart_dir: Path = ODOO_CHART,
    release: str = "odoo",
    upgrade: bool = False,
) -> list[dict[str, Any]]:
    """Render the chart with `values` and return its objects.

    `version` sets `odoo.version` (None leaves the values alone). `upgrade=True` renders as
    `helm upgrade` does (`.Release.IsUpgrade`), otherwise as a first install.
    Raises helm_python.HelmValuesError (schema) or HelmRenderError (template, `fail`).
    """
    merged = dict(values or {})
    if version is not None:
        merged = deep_merge(merged, {"odoo": {"version": version}})
    with helm.Chart.load(chart_dir) as chart:
        rendered = chart.render(
            values=merged,
            name=release,
            namespace=namespace,
            is_install=not upgrade,
            is_upgrade=upgrade,
        )
    return parse_manifests(rendered)


def describe(obj: Mapping[str, Any]) -> str:
    """`Kind/name` of an object, for messages."""
    return f"{obj.get('kind', '?')}/{obj.get('metadata', {}).get('name', '?')}"


def validate_k8s(objs: Iterable[Mapping[str, Any]], kube_version: str = KUBE_VERSION) -> None:
    """Validate every object strictly (unknown fields are errors) against `kube_version`.

    kubernetes-validate only warns about kinds it has no schema for (CRDs); here that is an error
    too, so a CRD cannot pass silently: validate those with a JSON Schema of your own.
    Raises K8sValidationError naming the object (kind/name) and the problem.
    """
    problems: list[str] = []
    for obj in objs:
        try:
            kubernetes_validate.validate(dict(obj), kube_version, strict=True)
        except kubernetes_validate.ValidationError as err:
            where = "/".join(str(p) for p in err.path) or "(root)"
            problems.append(f"{describe(obj)}: at {where}: {err.message}")
        except kubernetes_validate.SchemaNotFoundError as err:
            problems.append(f"{describe(obj)}: no schema in Kubernetes {kube_version}: {err}")
    if problems:
        raise K8sValidationError(
            f"{len(problems)} invalid object(s) for Kubernetes {kube_version}:\n  " + "\n  ".join(problems)
        )


def kubelet_expand(text: str, env: Mapping[str, str]) -> str:
    """Expand `$(VAR)` in a command or args item the way the kubelet does.

    A port of Kubernetes' third_party/forked/golang/expansion: `$(NAME)` becomes the value of NAME
    when the container defines it and stays as written otherwise; `$$` is a literal `$`.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                close = text.find(")", i + 2)
                if close >= 0:
                    name = text[i + 2 : close]
                    out.append(env.get(name, f"$({name})"))
                    i = close + 1
                    continue
                out.append("$(")
                i += 2
                continue
            out.append("$" + nxt)
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def find(objs: Iterable[Mapping[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The single object of `kind` (and `name`, if given); fails the test when there is not exactly one."""
    matches = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    if len(matches) != 1:
        found = sorted(describe(o) for o in objs)
        raise AssertionError(f"expected one {kind} {name or ''}, found {len(matches)} among {found}")
    return dict(matches[0])


def pod_spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The pod spec inside a workload object (Pod, Deployment, Job, CronJob, ...)."""
    if obj["kind"] == "Pod":
        return dict(obj["spec"])
    if obj["kind"] == "CronJob":
        return dict(obj["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(obj["spec"]["template"]["spec"])


def container(obj: Mapping[str, Any], name: str = "odoo") -> dict[str, Any]:
    """A container of a workload by name."""
    for c in pod_spec(obj)["containers"]:
        if c["name"] == name:
            return dict(c)
    raise AssertionError(f"{describe(obj)} has no container {name!r}")
