"""Environment: the stack's Kubernetes provider, its namespace, quota, limits, NetworkPolicies and ServiceAccounts."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from erpops.naming import Refs
from erpops.spec import Sized
from infra import derive
from infra.components._k8s import child_opts, labels, meta

PSA_LEVEL = "restricted"


def psa_labels() -> dict[str, str]:
    """Pod Security Admission: reject, audit and warn on anything below "restricted"."""
    out = {}
    for mode in ("enforce", "audit", "warn"):
        out[f"pod-security.kubernetes.io/{mode}"] = PSA_LEVEL
        out[f"pod-security.kubernetes.io/{mode}-version"] = "latest"
    return out


class Environment(pulumi.ComponentResource):
    """One segregated namespace per stack, reached only through an explicit provider for the stack's cluster."""

    provider: k8s.Provider
    namespace: k8s.core.v1.Namespace

    def __init__(self, name: str, sized: Sized, refs: Refs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("erpops:k8s:Environment", name, None, opts)
        spec = sized.spec
        # Explicit provider: a stack only ever talks to the context its spec names, whatever the
        # ambient kubeconfig's current-context is.
        self.provider = k8s.Provider(
            f"{name}-k8s",
            context=spec.kubernetes.context,
            namespace=refs.namespace,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": refs.namespace, "labels": {**labels(refs), **psa_labels()}},
            opts=child_opts(self, self.provider),
        )
        in_ns = child_opts(self, self.provider, [self.namespace])

        self.quota = k8s.core.v1.ResourceQuota(
            f"{name}-quota",
            metadata=meta("erpops-quota", refs),
            spec={"hard": derive.resource_quota(sized)},
            opts=in_ns,
        )
        self.limits = k8s.core.v1.LimitRange(
            f"{name}-limits",
            metadata=meta("erpops-limits", refs),
            spec={"limits": derive.limit_range(sized)},
            opts=in_ns,
        )
        self.network_policies = [
            k8s.networking.v1.NetworkPolicy(
                f"{name}-netpol-{policy_name}",
                metadata=meta(policy_name, refs),
                spec=policy_spec,
                opts=in_ns,
            )
            for policy_name, policy_spec in derive.network_policies(sized, refs)
        ]
        # One ServiceAccount per workload, none with an API token: none of them talks to Kubernetes
        self.service_accounts = {
            sa: k8s.core.v1.ServiceAccount(
                f"{name}-sa-{sa}",
                metadata=meta(sa, refs),
                automount_service_account_token=False,
                opts=in_ns,
            )
            for sa in (refs.odoo_web_sa, refs.odoo_cron_sa, refs.odoo_modules_sa)
            + ((refs.redis_sa,) if spec.redis.enabled and spec.redis.mode == "in-cluster" else ())
        }
        # filestore mode shared-volume: one ReadWriteMany claim for every Odoo pod, made here because the
        # module Job mounts it before the chart exists; kept when the stack is destroyed
        self.filestore_claim: k8s.core.v1.PersistentVolumeClaim | None = None
        volume = spec.filestore.volume
        if spec.filestore.mode == "shared-volume" and volume is not None:
            self.filestore_claim = k8s.core.v1.PersistentVolumeClaim(
                f"{name}-filestore",
                metadata=meta(refs.filestore_claim, refs, {"app.kubernetes.io/component": "filestore"}),
                spec={
                    "accessModes": ["ReadWriteMany"],
                    "storageClassName": volume.storage_class,
                    "resources": {"requests": {"storage": volume.size}},
                },
                opts=pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=[self.namespace],
                                            protect=spec.tier == "prod", retain_on_delete=True),
            )
        self.register_outputs({
            "namespace": self.namespace.metadata["name"],
            "networkPolicies": [p.metadata["name"] for p in self.network_policies],
        })
