"""Odoo: the local helm/odoo chart, with values derived from the spec by erpops.helm_values.odoo_values."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from erpops.helm_values import Refs
from infra.components._k8s import child_opts, meta

CHART_DIR = Path(__file__).resolve().parents[2] / "helm" / "odoo"


def chart_path() -> str:
    """The chart's path relative to the working directory, so the state holds no machine's absolute path."""
    return os.path.relpath(CHART_DIR, Path.cwd())


class Odoo(pulumi.ComponentResource):
    chart: k8s.helm.v4.Chart
    values: dict[str, Any]

    def __init__(self, name: str, refs: Refs, values: dict[str, Any], provider: k8s.Provider,
                 admin_password: pulumi.Output[str], depends_on: list[pulumi.Resource],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("erpops:k8s:Odoo", name, None, opts)
        self.values = values
        self.admin_secret = k8s.core.v1.Secret(
            f"{name}-admin",
            metadata=meta(refs.odoo_admin_secret, refs),
            type="Opaque",
            string_data={refs.odoo_admin_key: admin_password},
            opts=child_opts(self, provider, depends_on),
        )
        self.chart = k8s.helm.v4.Chart(
            f"{name}-chart",
            chart=chart_path(),
            name=refs.odoo_release,
            namespace=refs.namespace,
            values=values,
            opts=child_opts(self, provider, [*depends_on, self.admin_secret]),
        )
        self.register_outputs({"release": refs.odoo_release, "adminSecret": self.admin_secret.metadata["name"]})
