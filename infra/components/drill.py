"""Drill: the scheduled restore drill of the stack (spec drill), `erpops drill` as a CronJob.

Its own everything: a ServiceAccount without an API token, a CloudNativePG managed role that can only create
(and drop) its scratch databases, an S3 identity read-only on the backup sets (made by ObjectStorage), a
NetworkPolicy reaching PostgreSQL, S3 and the Pushgateway only, the stack's spec in a ConfigMap (key names,
no secret values), and the alert rules as a PrometheusRule when the Prometheus Operator's CRDs are installed.
With drill.target: cluster, its own one-instance CloudNativePG cluster (no backups) to restore into; with
drill.odoo_login, the CronJob's pod runs the stack's Odoo image as a sidecar for the login check.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from erpops.naming import Refs
from erpops.spec import SPEC_KEY, Sized
from infra import derive
from infra.components._k8s import child_opts, labels, meta


class Drill(pulumi.ComponentResource):
    cronjob: k8s.batch.v1.CronJob

    def __init__(self, name: str, sized: Sized, refs: Refs, raw_spec: dict[str, Any], provider: k8s.Provider,
                 depends_on: list[pulumi.Resource], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("erpops:k8s:Drill", name, None, opts)
        drill_meta = {"app.kubernetes.io/component": "restore-drill"}
        in_ns = child_opts(self, provider, depends_on)
        self.password = random.RandomPassword(f"{name}-db-password", length=40, special=False,
                                              opts=pulumi.ResourceOptions(parent=self))
        # CloudNativePG reads a managed role's password from a basic-auth Secret (username, password)
        self.db_secret = k8s.core.v1.Secret(
            f"{name}-db", metadata=meta(derive.DRILL_DB_SECRET, refs, drill_meta), type="kubernetes.io/basic-auth",
            string_data={"username": derive.DRILL_DB_ROLE, "password": self.password.result}, opts=in_ns)
        self.service_account = k8s.core.v1.ServiceAccount(
            f"{name}-sa", metadata=meta(derive.DRILL_NAME, refs, drill_meta), automount_service_account_token=False,
            opts=in_ns)
        stack_file = yaml.safe_dump({"config": {SPEC_KEY: raw_spec}}, sort_keys=True)
        self.spec_config = k8s.core.v1.ConfigMap(
            f"{name}-spec", metadata=meta(derive.DRILL_SPEC_CONFIGMAP, refs, drill_meta),
            data={"Pulumi.yaml": "name: erpops\nruntime: python\nmain: infra/\n",
                  f"Pulumi.{sized.stack}.yaml": stack_file},
            opts=in_ns)
        self.scratch_cluster = None
        if sized.spec.drill.target == "cluster":  # the drill's own small CloudNativePG cluster, no backups
            self.scratch_cluster = k8s.apiextensions.CustomResource(
                f"{name}-pg", api_version="postgresql.cnpg.io/v1", kind="Cluster",
                metadata=meta(derive.DRILL_CLUSTER, refs, {"app.kubernetes.io/component": "restore-drill-db"}),
                spec=derive.drill_cluster_spec(sized, refs),
                opts=child_opts(self, provider, [*depends_on, self.db_secret]))
        self.network_policies = [
            k8s.networking.v1.NetworkPolicy(f"{name}-netpol-{policy}", metadata=meta(policy, refs), spec=body,
                                            opts=in_ns)
            for policy, body in derive.drill_network_policies(sized, refs)]
        self.cronjob = k8s.batch.v1.CronJob(
            f"{name}-cronjob", metadata=meta(derive.DRILL_NAME, refs, drill_meta),
            spec=derive.drill_cronjob_spec(sized, refs),
            opts=child_opts(self, provider, [*depends_on, self.db_secret, self.service_account, self.spec_config,
                                             *self.network_policies,
                                             *([self.scratch_cluster] if self.scratch_cluster else [])]))
        self.alert_rules = None
        if sized.spec.monitoring.pod_monitors:  # the Prometheus Operator's CRDs are installed
            self.alert_rules = k8s.apiextensions.CustomResource(
                f"{name}-alerts", api_version="monitoring.coreos.com/v1", kind="PrometheusRule",
                metadata={**meta(derive.DRILL_NAME, refs, drill_meta), "labels": labels(refs, drill_meta)},
                spec=derive.drill_alert_rules(sized, refs), opts=in_ns)
        self.register_outputs({"cronjob": self.cronjob.metadata["name"], "schedule": sized.spec.drill.schedule,
                               "target": sized.spec.drill.target})
