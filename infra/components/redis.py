"""Redis: the session store of the Odoo web pods, one StatefulSet per stack, password-protected."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from erpops.naming import REDIS_PORT, Refs
from erpops.spec import Sized
from infra import derive
from infra.components._k8s import child_opts, meta


class Redis(pulumi.ComponentResource):
    service: k8s.core.v1.Service
    secret: k8s.core.v1.Secret

    def __init__(self, name: str, sized: Sized, refs: Refs, provider: k8s.Provider,
                 depends_on: list[pulumi.Resource], rotation: str,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("erpops:k8s:Redis", name, None, opts)
        # Changing `rotation` (pulumi config set erpops:redisPasswordRotation <date>) replaces the password
        self.password = random.RandomPassword(
            f"{name}-password",
            length=40,
            special=False,
            keepers={"rotation": rotation},
            opts=pulumi.ResourceOptions(parent=self),
        )
        in_ns = child_opts(self, provider, depends_on)
        self.secret = k8s.core.v1.Secret(
            f"{name}-auth",
            metadata=meta(refs.redis_secret, refs, derive.redis_labels()),
            type="Opaque",
            string_data={refs.redis_password_key: self.password.result},
            opts=in_ns,
        )
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=meta(refs.redis_service, refs, derive.redis_labels()),
            spec={
                "type": "ClusterIP",
                "selector": derive.redis_labels(),
                "ports": [{"name": "redis", "port": REDIS_PORT, "targetPort": "redis", "protocol": "TCP"}],
            },
            opts=in_ns,
        )
        self.statefulset = k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata=meta("redis", refs, derive.redis_labels()),
            spec=derive.redis_statefulset_spec(sized, refs, rotation),
            opts=child_opts(self, provider, [*depends_on, self.secret, self.service]),
        )
        # One replica: the budget cannot keep it up, it keeps evictions of it visible and one at a time
        self.pdb = k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=meta("redis", refs, derive.redis_labels()),
            spec={"maxUnavailable": 1, "selector": {"matchLabels": derive.redis_labels()}},
            opts=in_ns,
        )
        self.register_outputs({"service": self.service.metadata["name"], "secret": self.secret.metadata["name"]})
