"""helm/odoo's optional ServiceMonitor: off by default, strict values, and it scrapes a port that serves metrics.

Odoo has no /metrics: the ServiceMonitor selects the chart's headless `<fullname>-metrics` Service, whose
only port leads to the exporter sidecar's named container port in the web and cron pods. The rendered
ServiceMonitor is checked against the project's strict schema of the fields it uses
(infra/schemas/servicemonitor-used-fields.json, via infra.crdschema, as the PodMonitor and PrometheusRule are);
the Service against Kubernetes' own schema.
"""

from __future__ import annotations

import copy
from typing import Any

import helm_python as helm
import pytest

from infra import crdschema
from tests.k8s import ODOO_CHART, deep_merge, find, pod_spec, render_chart, validate_k8s

SMALL = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}
RESTRICTED = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
              "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
EXPORTER = {"name": "odoo-exporter", "image": "registry.example.com/odoo-exporter:1.0", "resources": SMALL,
            "securityContext": RESTRICTED, "ports": [{"name": "metrics", "containerPort": 9273}]}
# web and cron pods, both carrying the sidecar (cron pods need a shared filestore: S3)
VALUES: dict[str, Any] = {
    "image": {"addons": ["fs_storage", "fs_attachment", "session_db"]},
    "cron": {"enabled": True},
    "sessionDb": {"enabled": True},
    "s3": {"enabled": True, "region": "eu-west-1", "bucket": "erp-{db}", "existingSecret": "s3-creds"},
    "persistence": {"enabled": False},
    "sidecars": [EXPORTER],
    "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
}


def test_no_service_monitor_and_no_metrics_service_by_default() -> None:
    objs = render_chart({})
    assert not [o for o in objs if o["kind"] == "ServiceMonitor"]
    assert [o["metadata"]["name"] for o in objs if o["kind"] == "Service"] == ["odoo-web"]


def test_the_service_monitor_scrapes_the_exporter_sidecar_through_its_own_service() -> None:
    objs = render_chart(VALUES, namespace="erpops-prod")
    monitor = find(objs, "ServiceMonitor")
    assert crdschema.validate(monitor) == []
    validate_k8s([o for o in objs if not crdschema.is_custom(o)], "1.30.0")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["erpops-prod"]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "metrics", "path": "/metrics", "interval": "30s"}

    # the Services it selects: the metrics Service only, never Odoo's own (http/websocket serve no metrics)
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [s for s in objs if s["kind"] == "Service" and selector.items() <= s["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in selected] == ["odoo-metrics"]
    [service] = selected
    assert service["spec"]["clusterIP"] == "None"
    [port] = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    assert (port["port"], port["targetPort"]) == (9273, "metrics")

    # ... whose endpoints are the web and cron pods, where the named port is the exporter's container port
    for name in ("odoo-web", "odoo-cron"):
        deployment = find(objs, "Deployment", name)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items(), name
        serving = [c["name"] for c in pod_spec(deployment)["containers"]
                   for p in c.get("ports", []) if p["name"] == port["targetPort"]]
        assert serving == ["odoo-exporter"], name


def test_scrape_timeout_is_rendered_when_set() -> None:
    objs = render_chart(deep_merge(VALUES, {"serviceMonitor": {"interval": "1m", "scrapeTimeout": "20s"}}))
    monitor = find(objs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0] == {"port": "metrics", "path": "/metrics", "interval": "1m",
                                               "scrapeTimeout": "20s"}
    assert crdschema.validate(monitor) == []


def test_lint_strict_is_clean_with_the_service_monitor() -> None:
    report = helm.lint(str(ODOO_CHART), VALUES, strict=True, kube_version="v1.30.0")
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == [], report


@pytest.mark.parametrize(("values", "says"), [
    ({"serviceMonitor": {"enabled": True}}, "serviceMonitor.enabled=true scrapes the container port named"),
    (deep_merge(VALUES, {"serviceMonitor": {"port": "prom"}}), 'port named "prom", but no sidecar declares it'),
    (deep_merge(VALUES, {"podMonitor": {"enabled": True}}), "would both scrape the exporter of every pod"),
], ids=["no-exporter", "port-not-declared", "with-pod-monitor"])
def test_a_service_monitor_that_would_scrape_nothing_or_twice_is_refused(values: dict[str, Any], says: str) -> None:
    with pytest.raises(helm.HelmRenderError, match="problem\\(s\\) in the values") as err:
        render_chart(values)
    assert says in str(err.value)


@pytest.mark.parametrize("override", [
    {"serviceMonitor": {"enabeld": True}},
    {"serviceMonitor": {"interval": "often"}},
    {"serviceMonitor": {"path": "metrics"}},
    {"serviceMonitor": {"port": "Metrics_Port"}},
    {"serviceMonitor": {"labels": {"release": 1}}},
], ids=["typo", "interval", "path", "port-name", "label-value"])
def test_the_values_schema_is_strict(override: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        render_chart(deep_merge(VALUES, override))


@pytest.mark.parametrize(("path", "value"), [
    (("spec", "endpoints", 0, "intervall"), "30s"),
    (("spec", "endpoints", 0, "port"), ""),
    (("spec", "selector", "matchLabels"), {}),
    (("spec", "namespaceSelector", "matchName"), ["x"]),
    (("spec", "endpoint"), []),
], ids=["typo-in-endpoint", "empty-port", "empty-selector", "typo-in-namespace-selector", "typo-in-spec"])
def test_the_object_schema_catches_a_wrong_service_monitor(path: tuple[Any, ...], value: Any) -> None:
    """The strict schema is what stands between a typo and a ServiceMonitor the operator silently ignores."""
    monitor = copy.deepcopy(find(render_chart(VALUES), "ServiceMonitor"))
    node: Any = monitor
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert crdschema.validate(monitor) != []
