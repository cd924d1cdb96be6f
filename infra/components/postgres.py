"""Postgres: a CloudNativePG Cluster sized by PGTune, its scheduled base backups, and a PgBouncer Pooler.

Optionally installs the CloudNativePG operator itself (one stack per Kubernetes cluster may do so).
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from erpops.naming import Refs
from erpops.spec import Sized
from infra import derive
from infra.components._k8s import child_opts, meta
from infra.components.environment import psa_labels

CNPG_API = "postgresql.cnpg.io/v1"


class Postgres(pulumi.ComponentResource):
    cluster: k8s.apiextensions.CustomResource
    pooler: k8s.apiextensions.CustomResource

    def __init__(self, name: str, sized: Sized, refs: Refs, provider: k8s.Provider,
                 depends_on: list[pulumi.Resource], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("erpops:k8s:Postgres", name, None, opts)
        deps = list(depends_on)
        if sized.spec.kubernetes.install_cnpg_operator:
            deps.append(self._operator(name, sized, provider))

        self.cluster = k8s.apiextensions.CustomResource(
            f"{name}-cluster",
            api_version=CNPG_API,
            kind="Cluster",
            metadata=meta(refs.pg_cluster, refs),
            spec=derive.cluster_spec(sized, refs),
            opts=child_opts(self, provider, deps),
        )
        after_cluster = child_opts(self, provider, [*deps, self.cluster])
        self.scheduled_backup = k8s.apiextensions.CustomResource(
            f"{name}-scheduled-backup",
            api_version=CNPG_API,
            kind="ScheduledBackup",
            metadata=meta(refs.scheduled_backup, refs),
            spec=derive.scheduled_backup_spec(sized, refs),
            opts=after_cluster,
        )
        self.pooler = k8s.apiextensions.CustomResource(
            f"{name}-pooler",
            api_version=CNPG_API,
            kind="Pooler",
            metadata=meta(refs.pooler, refs),
            spec=derive.pooler_spec(sized, refs),
            opts=after_cluster,
        )
        if sized.spec.pooler.instances > 1:
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-pooler-pdb",
                metadata=meta(f"{refs.pooler}-pdb", refs),
                spec={"maxUnavailable": 1, "selector": {"matchLabels": derive.pooler_labels(refs)}},
                opts=after_cluster,
            )
        for monitor_name, monitor_spec in derive.pod_monitor_specs(sized, refs):
            k8s.apiextensions.CustomResource(
                f"{name}-podmonitor-{monitor_name}",
                api_version="monitoring.coreos.com/v1",
                kind="PodMonitor",
                metadata=meta(monitor_name, refs),
                spec=monitor_spec,
                opts=after_cluster,
            )
        self.register_outputs({
            "cluster": self.cluster.metadata["name"],
            "pooler": self.pooler.metadata["name"],
        })

    def _operator(self, name: str, sized: Sized, provider: k8s.Provider) -> pulumi.Resource:
        """The operator, cluster-wide: install it from one stack per Kubernetes cluster only."""
        chart = derive.cnpg_chart(sized)
        namespace = k8s.core.v1.Namespace(
            f"{name}-operator-namespace",
            metadata={"name": derive.CNPG_NAMESPACE,
                      "labels": {"app.kubernetes.io/part-of": "erpops", **psa_labels()}},
            opts=child_opts(self, provider),
        )
        return k8s.helm.v4.Chart(
            f"{name}-operator",
            chart=chart["chart"],
            version=chart["version"],
            repository_opts={"repo": chart["repo"]},
            name="cnpg",
            namespace=derive.CNPG_NAMESPACE,
            opts=child_opts(self, provider, [namespace]),
        )
