"""erpops.capacity without servers: the calibration's arithmetic, the plan for N users, target_users, refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from erpops import capacity, sizing, spec
from erpops.errors import SpecError, UsageError

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = {"planner": 2, "shop_floor": 4, "buyer": 1, "sales": 2, "warehouse": 3}


def step(users: int, rps: float, p50: float, **p95: float) -> dict:
    return {"users": users, "rps": rps, "p50": p50, "p95": max(p95.values(), default=p50),
            "fail_ratio": 0.0, "p95_by_name": p95}


def record(steps: list[dict], slo: dict[str, float] | None = None, workers: int = 4) -> dict:
    return capacity.calibration(stack="dev", host="http://h", odoo_serie="17.0", read_only=False, personas=WEIGHTS,
                                think_time_seconds=(1.0, 5.0), workers=workers, steps=steps, slo_p95=slo or {},
                                memory={"rss_mib": 180.0, "vms_mib": 300.0, "source": "given"})


def test_p50_doubling_is_interpolated_between_the_steps() -> None:
    # p50/(2 x 50): 0.5, 0.6, 0.8 at 20 users, 1.2 at 40 users: crosses 1.0 halfway, at 30 users
    doc = record([step(5, 10, 50), step(10, 20, 60), step(20, 38, 80), step(40, 40, 120)])
    assert doc["knee_users"] == 30.0 and doc["knee_rps"] == 40.0
    assert (doc["users_per_worker"], doc["rps_per_worker"]) == (7.5, 10.0)
    assert doc["criterion"].startswith("p50")


def test_a_p95_above_its_slo_breaks_before_the_p50_doubles() -> None:
    slo = {"sale.order:create": 200.0}
    doc = record([step(5, 10, 50, **{"sale.order:create": 100}), step(10, 20, 55, **{"sale.order:create": 150}),
                  step(20, 30, 60, **{"sale.order:create": 250})], slo)
    assert doc["criterion"].startswith("sale.order:create p95")
    # 150/200 = 0.75 at 10 users, 250/200 = 1.25 at 20: crosses at 15
    assert doc["knee_users"] == 15.0


def test_a_ramp_that_never_breaks_records_nothing() -> None:
    with pytest.raises(UsageError, match="raise --max-users"):
        record([step(1, 5, 50), step(2, 10, 52)])


def sized(stack: str = "prod") -> spec.Sized:
    return spec.load(stack, ROOT)


def test_the_docs_rules_when_there_is_no_calibration() -> None:
    s = sized()
    plan = capacity.plan(s, 200, None)
    w = s.odoo.workers
    assert "no calibration" in plan.source
    assert plan.replicas == max(math.ceil(math.ceil(200 / sizing.USERS_PER_WORKER) / w), 2)
    assert plan.hpa_max == max(math.ceil(plan.replicas * 1.5), plan.replicas + 1)
    assert plan.pod_memory_mib == math.ceil((w + 1) * sizing.WORKER_MIB / 0.8 / 64) * 64
    assert plan.budget.web_processes == plan.hpa_max * (w + 1)


def test_a_calibration_drives_the_plan() -> None:
    s = sized()
    doc = {**record([step(5, 10, 50), step(10, 20, 60), step(20, 38, 80), step(40, 40, 120)]),
           "stack": "prod"}
    plan = capacity.plan(s, 200, doc, Path("x.json"))
    assert plan.source.startswith("calibration x.json")
    assert plan.replicas == max(math.ceil(math.ceil(200 / 7.5) / s.odoo.workers), 2)
    assert plan.pod_memory_mib == math.ceil((s.odoo.workers + 1) * 180.0 / 0.8 / 64) * 64


@pytest.mark.parametrize(("change", "says"), [
    ({"odoo_serie": "18.0"}, "measured on Odoo 18.0"),
    ({"persona_weights": {**WEIGHTS, "sales": 9}}, "persona weights"),
    ({"think_time_seconds": [0.5, 1.0]}, "think times"),
])
def test_refusals_say_why(change: dict, says: str) -> None:
    doc = {**record([step(5, 10, 50), step(10, 20, 120)]), **change}
    assert says in (capacity.refusal(doc, "17.0", WEIGHTS, (1.0, 5.0)) or "")


def test_target_users_sets_replicas_and_hpa_bounds(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    raw = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]["erpops:spec"]
    raw.setdefault("odoo", {}).setdefault("web", {})["target_users"] = 120
    base = spec.validate(raw, "prod", root=tmp_path)
    expected = capacity.plan(sized(), 120, None)
    assert base.spec.odoo.web.replicas == expected.replicas
    if base.spec.odoo.web.autoscale.enabled:
        a = base.spec.odoo.web.autoscale
        assert (a.min_replicas, a.max_replicas) == (expected.hpa_min, expected.hpa_max)


def test_a_refused_calibration_is_a_spec_error_at_target_users(tmp_path: Path) -> None:
    (tmp_path / "loadtests" / "baselines").mkdir(parents=True)
    doc = {**record([step(5, 10, 50), step(10, 20, 120)]), "odoo_serie": "16.0"}
    (tmp_path / "loadtests" / "baselines" / "prod.calibration.json").write_text(json.dumps(doc))
    raw = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]["erpops:spec"]
    raw.setdefault("odoo", {}).setdefault("web", {})["target_users"] = 120
    with pytest.raises(SpecError) as caught:
        spec.validate(raw, "prod", root=tmp_path)
    path, message = caught.value.problems[0]
    assert path == "odoo.web.target_users" and "measured on Odoo 16.0" in message
