"""Small helpers shared by the components: object metadata and resource options."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from erpops.naming import Refs, stack_labels


def labels(refs: Refs, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**stack_labels(refs), **(extra or {})}


def meta(name: str, refs: Refs, extra_labels: dict[str, str] | None = None,
         annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """Namespaced metadata with an explicit name: nothing is auto-named."""
    out: dict[str, Any] = {"name": name, "namespace": refs.namespace, "labels": labels(refs, extra_labels)}
    if annotations:
        out["annotations"] = annotations
    return out


def child_opts(parent: pulumi.Resource, provider: k8s.Provider | None = None,
               depends_on: list[pulumi.Resource] | None = None) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, provider=provider, depends_on=depends_on or [])
