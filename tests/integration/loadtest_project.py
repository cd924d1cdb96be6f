"""The project root the load-test integration tests run against: the dev stack with short think times."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.paths import REPO

WEIGHTS = {"planner": 2, "shop_floor": 4, "buyer": 1, "sales": 2, "warehouse": 3}


def fast_dev_project(root: Path) -> Path:
    """Write Pulumi.yaml and a dev stack with think times of 20-50 ms and a 0.5% error budget into `root`."""
    (root / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    doc = yaml.safe_load((REPO / "Pulumi.dev.yaml").read_text())
    doc["config"]["erpops:spec"]["slo"] = {"think_time_seconds": [0.02, 0.05], "error_ratio": 0.005,
                                           "min_rps": 5, "persona_weights": WEIGHTS}
    (root / "Pulumi.dev.yaml").write_text(yaml.safe_dump(doc))
    return root
