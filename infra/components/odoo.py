"""Odoo: the local helm/odoo chart, with values derived from the spec by erpops.helm_values.odoo_values,
and its module install/upgrade Job applied ahead of it.

Pulumi's helm.v4.Chart ignores Helm hooks (it applies what `helm template` prints): the chart's
pre-install/pre-upgrade Job would start together with the Deployments, its delete policy would be
ignored and its ttlSecondsAfterFinished would make it vanish (drift). So the chart is installed with
`moduleJob.enabled=false`, and this component renders the chart's own templates/job-modules.yaml with
`moduleJob.hook=false` (same pod spec, plain objects, no TTL, a Job name hashed over image, database
and modules) and registers those objects itself. Pulumi waits for a Job to complete (the provider's Job
await: the `Complete` condition, failure on `Failed`), and the chart depends on the Job: web and cron
roll only after the modules were installed or updated.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from erpops.helm_values import chart_values
from erpops.naming import Refs
from infra.chart import CHART_DIR, module_job_manifests
from infra.components._k8s import child_opts, meta

_KINDS = {
    "ConfigMap": k8s.core.v1.ConfigMap,
    "ServiceAccount": k8s.core.v1.ServiceAccount,
    "Job": k8s.batch.v1.Job,
}


def chart_path() -> str:
    """The chart's path relative to the working directory, so the state holds no machine's absolute path."""
    return os.path.relpath(CHART_DIR, Path.cwd())


class Odoo(pulumi.ComponentResource):
    chart: k8s.helm.v4.Chart
    module_job: k8s.batch.v1.Job
    values: dict[str, Any]

    def __init__(self, name: str, refs: Refs, values: dict[str, Any], provider: k8s.Provider,
                 admin_password: pulumi.Output[str], depends_on: list[pulumi.Resource],
                 opts: pulumi.ResourceOptions | None = None, *,
                 smtp_password: pulumi.Output[str] | None = None,
                 redis_password: pulumi.Output[str] | None = None) -> None:
        super().__init__("erpops:k8s:Odoo", name, None, opts)
        self.values = values
        self.admin_secret = k8s.core.v1.Secret(
            f"{name}-admin",
            metadata=meta(refs.odoo_admin_secret, refs),
            type="Opaque",
            string_data={refs.odoo_admin_key: admin_password},
            opts=child_opts(self, provider, depends_on),
        )
        depends_on = [*depends_on, self.admin_secret]
        if smtp_password is not None:
            depends_on.append(k8s.core.v1.Secret(
                f"{name}-smtp", metadata=meta(refs.smtp_secret, refs), type="Opaque",
                string_data={refs.smtp_password_key: smtp_password}, opts=child_opts(self, provider, depends_on)))
        if redis_password is not None:
            # redis.mode managed: the managed service's password, from Pulumi secret config
            depends_on.append(k8s.core.v1.Secret(
                f"{name}-redis-auth", metadata=meta(refs.redis_secret, refs), type="Opaque",
                string_data={refs.redis_password_key: redis_password}, opts=child_opts(self, provider, depends_on)))

        # The module Job and what it mounts. `depends_on` holds the CloudNativePG Cluster and Pooler, the
        # Secrets and the ServiceAccounts; the Job's init container also waits until the database answers.
        job_deps = list(depends_on)
        self.module_job_objects: list[pulumi.CustomResource] = []
        for obj in module_job_manifests(values, refs):
            kind, metadata = obj["kind"], obj["metadata"]
            body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
            # a stable Pulumi name: a new Job name (new image or modules) shows as a replacement, created
            # (and awaited) before the chart is updated; the old Job is deleted at the end of the update
            resource = _KINDS[kind](
                f"{name}-modules-{kind.lower()}",
                metadata=metadata,
                **{_snake(k): v for k, v in body.items()},
                opts=child_opts(self, provider, job_deps if kind == "Job" else list(depends_on)),
            )
            if kind == "Job":
                self.module_job = resource
            else:
                job_deps.append(resource)
            self.module_job_objects.append(resource)

        self.chart = k8s.helm.v4.Chart(
            f"{name}-chart",
            chart=chart_path(),
            name=refs.odoo_release,
            namespace=refs.namespace,
            values=chart_values(values),
            opts=child_opts(self, provider, [*depends_on, self.admin_secret, self.module_job]),
        )
        self.register_outputs({
            "release": refs.odoo_release,
            "adminSecret": self.admin_secret.metadata["name"],
            "moduleJob": self.module_job.metadata["name"],
        })


def _snake(key: str) -> str:
    """automountServiceAccountToken -> automount_service_account_token (the SDK's keyword names)."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)
