"""The patch drivers where they run something: the command driver's shell steps, and the module Job
rendered from the helm/odoo chart by the real Helm engine (the kubectl side is still a fake).

The drivers' pure rules and the kubectl command lines are in tests/unit/test_patch_rules.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from erpops import spec
from erpops.errors import PreflightError
from erpops.patch_drivers import CommandDriver, PatchContext
from infra.chart import stack_module_job
from tests.unit.test_patch_rules import KC, ROOT, FakeKubectl, ctx, k8s


def test_command_driver_passes_the_patch_to_each_command() -> None:
    driver = CommandDriver.from_dict({"env": {"EXTRA": "1"}, "steps": {
        "freeze": "true", "apply": "true", "roll": "true",
        "current_image": 'echo "$ERPOPS_PATCH_IMAGE|$ERPOPS_PATCH_MODULES|$ERPOPS_DB|$EXTRA|$PGHOST"'}},
        log=lambda _m: None)
    ctx = PatchContext(stack="dev", db="odoo_dev", to_image="odoo:17.0-20261120", from_image="odoo:17.0-20261001",
                       modules=["mrp", "stock"], run_id="r1", pg_env={"PGHOST": "db.example"})
    assert driver.current_image(ctx) == "odoo:17.0-20261120|mrp,stock|odoo_dev|1|db.example"
    ctx.modules = []
    env = driver.environment(ctx, "roll", "odoo:17.0-20261001", rollback=True)
    assert (env["ERPOPS_PATCH_IMAGE"], env["ERPOPS_PATCH_MODULES"], env["ERPOPS_PATCH_ROLLBACK"]) == (
        "odoo:17.0-20261001", "all", "1")


@pytest.fixture(scope="module")
def prod_job() -> dict[str, Any]:
    return stack_module_job(spec.load("prod", ROOT))


def test_freeze_with_a_maintenance_command_leaves_web_running(tmp_path: Path) -> None:
    fake = FakeKubectl()
    flag = tmp_path / "maintenance"
    driver = k8s(fake, web_mode="command", maintenance_cmd=f"touch {flag}", unmaintenance_cmd=f"rm {flag}")
    driver.freeze(ctx())
    assert flag.exists()
    assert not any("odoo-web" in call for call in fake.calls)
    driver.roll(ctx(web_replicas=3), "odoo:17.0-20261120")
    assert not flag.exists()


def test_apply_creates_the_charts_module_job_with_the_new_image(prod_job: dict[str, Any]) -> None:
    fake = FakeKubectl(job_status=["/", "/", "1/"])
    k8s(fake, prod_job).apply(ctx())
    name = "odoo-patch-20261129t220500z-3fa2b1"
    assert fake.calls == [f"{KC} apply -f -"] + [f"{KC} get job/{name} -o "
                                                 "'jsonpath={.status.succeeded}/{.status.failed}'"] * 3
    job = json.loads(fake.stdin[0] or "")
    assert job["kind"] == "Job" and job["metadata"]["name"] == name
    assert job["metadata"]["labels"]["erpops.io/patch-run"] == "20261129t220500z-3fa2b1"
    pod = job["spec"]["template"]["spec"]
    assert {c["image"] for c in (*pod.get("initContainers", []), *pod["containers"])} == {"odoo:17.0-20261120"}
    args = next(c for c in pod["containers"] if c["name"] == "odoo")["args"]
    assert args[-1] == "--update=mrp,stock"
    assert not [a for a in args if a.startswith("--init=")]
    assert "--stop-after-init" in args and "--database=odoo_prod" in args
    assert job["spec"]["backoffLimit"] == 0


def test_apply_all_modules(prod_job: dict[str, Any]) -> None:
    job = k8s(FakeKubectl(), prod_job).patch_job(ctx(modules=[]))
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][-1] == "--update=all"


def test_failed_module_job_fails_the_step_with_its_logs(prod_job: dict[str, Any]) -> None:
    from erpops.errors import OperationFailed

    fake = FakeKubectl(job_status=["/", "/1"])
    with pytest.raises(OperationFailed, match=r"module update Job odoo-patch-\S+ failed"):
        k8s(fake, prod_job).apply(ctx())
    assert fake.calls[-1].startswith(f"{KC} logs job/odoo-patch-")


def test_plan_lists_the_commands_without_running_any(prod_job: dict[str, Any]) -> None:
    fake = FakeKubectl()
    plan = k8s(fake, prod_job).plan(ctx(web_replicas=3))
    assert fake.calls == []
    assert plan["freeze"][0] == f"{KC} scale deploy/odoo-cron --replicas=0"
    assert f"{KC} set image deploy/odoo-web odoo=odoo:17.0-20261120" in plan["roll"]


def test_check_mode_on_prod_prints_the_kubectl_plan_and_refuses_without_approval(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from erpops.patch import patch

    state_dir = tmp_path / "state"
    (tmp_path / "backups").mkdir()
    result = CliRunner().invoke(patch, [
        "--stack", "prod", "--image", "odoo:17.0-20261120", "--modules", "mrp,stock", "--from-image",
        "odoo:17.0-20261001", "--target", f"file://{tmp_path / 'backups'}", "--state-dir", str(state_dir),
        "--health-check", "pg.connect", "--odoo-url", "http://127.0.0.1:1", "--no-smoke", "--check", "--json"],
        obj={"root": ROOT},
        env={"PGHOST": "127.0.0.1", "PGPORT": "1"})
    assert isinstance(result.exception, PreflightError), result.output
    plan, end = json.JSONDecoder().raw_decode(result.stdout)
    error = json.loads(result.stdout[end:])  # then the error object, as every erpops --json command prints
    assert (error["error_type"], error["exit_code"]) == ("PreflightError", 6)
    assert plan["check"] is True and plan["tier"] == "prod" and plan["db"] == "odoo_prod"
    assert any("--approved-by" in p for p in plan["problems"])
    assert any("--window" in p for p in plan["problems"])
    steps = {s["step"]: s for s in plan["steps"]}
    assert f"{KC} scale deploy/odoo-cron --replicas=0" in steps["freeze"]["commands"]
    assert f"{KC} set image deploy/odoo-cron odoo=odoo:17.0-20261120" in steps["roll"]["commands"]
    assert not state_dir.exists()
    assert any("health checks fail" in p for p in plan["problems"])  # nothing listens on port 1
    assert list((tmp_path / "backups").iterdir()) == []
