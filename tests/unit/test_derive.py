"""infra/derive.py's pure builders, called directly: no Pulumi program, no mocks, no Helm engine.

What the program registers with them is checked under Pulumi's mocks in tests/tool/test_infra.py.
"""

from __future__ import annotations

import copy
from pathlib import Path

from erpops import spec
from erpops.naming import refs_for
from infra import derive

ROOT = Path(__file__).resolve().parents[2]


def test_odoo_health_may_be_probed_from_the_monitoring_namespace_only_when_asked() -> None:
    raw = copy.deepcopy(spec.read_raw(spec.stack_file(ROOT, "prod")))
    sized = spec.validate(raw, "prod")
    assert "odoo-web-from-monitoring" not in dict(derive.network_policies(sized, refs_for(sized)))
    raw["monitoring"]["scrape_odoo_health"] = True
    sized = spec.validate(raw, "prod")
    policy = dict(derive.network_policies(sized, refs_for(sized)))["odoo-web-from-monitoring"]
    assert policy["ingress"] == [{"from": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring"}}}], "ports": [{"protocol": "TCP", "port": 8069}]}]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "web"
