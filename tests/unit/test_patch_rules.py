"""erpops patch without servers: governance rules, the resume rule, the state file, and the exact
kubectl command lines the kubernetes driver runs (it cannot run here: a fake runner records them)."""

from __future__ import annotations

import json
import shlex
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from erpops import spec
from erpops.errors import PreflightError, UsageError
from erpops.patch import (
    StateStore,
    approval_problems,
    check_image,
    fresh_verified_set,
    odoo_major,
    parse_modules,
    parse_window,
    recovery_action,
)
from erpops.patch_drivers import CommandDriver, KubernetesDriver, PatchContext
from infra.chart import stack_module_job

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)
WINDOW = (datetime(2026, 11, 29, 22, 0, tzinfo=UTC), datetime(2026, 11, 30, 2, 0, tzinfo=UTC))
KC = "kubectl --context prod-cluster -n erpops-prod"


def test_window_parses_utc_start_and_end() -> None:
    assert parse_window("2026-11-29T22:00Z/2026-11-30T02:00Z") == WINDOW


@pytest.mark.parametrize("text", ["2026-11-29T22:00Z", "2026-11-30T02:00Z/2026-11-29T22:00Z",
                                  "2026-11-29T22:00/2026-11-30T02:00", "tonight/tomorrow"])
def test_window_rejects_what_cannot_be_checked(text: str) -> None:
    with pytest.raises(UsageError):
        parse_window(text)


@pytest.mark.parametrize(("tier", "approved_by", "window", "expected"), [
    ("prod", "alice", WINDOW, []),
    ("prod", None, WINDOW, ["--approved-by"]),
    ("prod", "alice", None, ["--window"]),
    ("prod", "", None, ["--approved-by", "--window"]),
    ("prod", "alice", (datetime(2026, 11, 28, 22, tzinfo=UTC), datetime(2026, 11, 29, 2, tzinfo=UTC)),
     ["outside the change window"]),
    ("staging", None, None, []),
    ("dev", None, (datetime(2026, 11, 28, tzinfo=UTC), datetime(2026, 11, 28, 1, tzinfo=UTC)),
     ["outside the change window"]),
])
def test_approval_rules(tier: str, approved_by: str | None, window: Any, expected: list[str]) -> None:
    problems = approval_problems(tier, approved_by, window, NOW)
    assert len(problems) == len(expected)
    for problem, needle in zip(problems, expected, strict=True):
        assert needle in problem


def test_window_end_is_exclusive() -> None:
    assert approval_problems("prod", "alice", WINDOW, WINDOW[1]) != []
    assert approval_problems("prod", "alice", WINDOW, WINDOW[0]) == []


@pytest.mark.parametrize(("text", "expected"), [
    ("mrp,stock", ["mrp", "stock"]), (" mrp , stock,mrp", ["mrp", "stock"]), ("all", []), ("", []), (None, []),
])
def test_modules(text: str | None, expected: list[str]) -> None:
    assert parse_modules(text) == expected


@pytest.mark.parametrize("text", ["mrp;drop", "Stock", "mrp,all x"])
def test_modules_rejects_non_names(text: str) -> None:
    with pytest.raises(UsageError):
        parse_modules(text)


@pytest.mark.parametrize("image", ["odoo:17.0-20261120", "registry.example.com:5000/acme/odoo:17.0-20261120",
                                   "odoo@sha256:" + "a" * 64])
def test_pinned_images_pass(image: str) -> None:
    assert check_image(image) == image


@pytest.mark.parametrize("image", ["odoo", "odoo:latest", "odoo@sha256:abc", "Odoo:17.0"])
def test_unpinned_images_are_refused(image: str) -> None:
    with pytest.raises(UsageError):
        check_image(image)


def test_odoo_major_from_tag() -> None:
    assert odoo_major("odoo:17.0-20261120") == "17.0"
    assert odoo_major("odoo@sha256:" + "a" * 64) is None


def test_fresh_verified_set_is_the_newest_verified_one_under_the_limit() -> None:
    sets = [
        {"set_id": "a", "verified": None, "age_hours": 1.0},
        {"set_id": "b", "verified": False, "age_hours": 2.0},
        {"set_id": "x", "error": "unreadable manifest"},
        {"set_id": "c", "verified": True, "age_hours": 5.0},
        {"set_id": "d", "verified": True, "age_hours": 30.0},
    ]
    assert fresh_verified_set(sets, 24)["set_id"] == "c"  # type: ignore[index]
    assert fresh_verified_set(sets, 4) is None


def _steps(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"name": n, "status": s} for n, s in pairs]


@pytest.mark.parametrize(("state", "action"), [
    (None, None),
    ({"status": "done", "steps": []}, None),
    ({"status": "rolled_back", "steps": []}, None),
    ({"status": "running", "steps": _steps(("preflight", "running"))}, "abandon"),
    ({"status": "running", "steps": _steps(("preflight", "ok"), ("freeze", "running"))}, "unfreeze"),
    ({"status": "running", "steps": _steps(("preflight", "ok"), ("freeze", "ok"), ("backup", "running"))},
     "unfreeze"),
    ({"status": "running", "pre_patch_set": "s", "steps": _steps(("backup", "ok"), ("apply", "running"))},
     "rollback"),
    ({"status": "running", "pre_patch_set": "s", "steps": _steps(("roll", "ok"), ("gate", "running"))},
     "rollback"),
    ({"status": "running", "pre_patch_set": "s", "steps": _steps(("gate", "ok"))}, "finalize"),
    ({"status": "rolling_back", "pre_patch_set": "s", "steps": _steps(("apply", "failed"))}, "rollback"),
])
def test_resume_rule(state: dict[str, Any] | None, action: str | None) -> None:
    assert recovery_action(state) == action


def test_state_is_written_atomically_and_locked(tmp_path: Path) -> None:
    store = StateStore(tmp_path / ".erpops", "dev")
    store.save({"status": "running", "steps": []})
    store.save({"status": "done", "steps": [{"name": "gate"}]})
    assert store.load() == {"status": "done", "steps": [{"name": "gate"}]}
    assert sorted(p.name for p in store.dir.iterdir()) == ["patch-dev.json"]  # no temp file left
    with store.locked(), pytest.raises(PreflightError, match="another erpops patch"), \
            StateStore(tmp_path / ".erpops", "dev").locked():
        pass
    with store.locked():  # released
        pass


def test_corrupt_state_file_is_reported(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "dev")
    store.path.write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        store.load()


# ------------------------------------------------------------------------------------------------
# command driver file
# ------------------------------------------------------------------------------------------------


def test_command_driver_needs_freeze_apply_roll() -> None:
    with pytest.raises(UsageError, match=r"unknown step\(s\) deploy.*missing step\(s\) apply, roll"):
        CommandDriver.from_dict({"steps": {"freeze": "true", "deploy": "x"}})


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


# ------------------------------------------------------------------------------------------------
# kubernetes driver: the command lines
# ------------------------------------------------------------------------------------------------


class FakeKubectl:
    """Records every argv; answers `get` queries like a cluster would."""

    def __init__(self, job_status: list[str] | None = None) -> None:
        self.calls: list[str] = []
        self.stdin: list[str | None] = []
        self.job_status = job_status or ["/", "1/"]

    def __call__(self, argv: list[str], stdin: str | None) -> subprocess.CompletedProcess[str]:
        line = shlex.join(argv)
        self.calls.append(line)
        self.stdin.append(stdin)
        out = ""
        if "jsonpath={.spec.replicas}" in line:
            out = "3"
        elif "jsonpath={.spec.template" in line:
            out = "odoo:17.0-20261001"
        elif "jsonpath={.status.succeeded}" in line:
            out = self.job_status.pop(0)
        return subprocess.CompletedProcess(argv, 0, out, "")


@pytest.fixture(scope="module")
def prod_job() -> dict[str, Any]:
    return stack_module_job(spec.load("prod", ROOT))


def k8s(fake: FakeKubectl, job: dict[str, Any] | None = None, **kw: Any) -> KubernetesDriver:
    return KubernetesDriver(context="prod-cluster", namespace="erpops-prod", job_manifest=job, runner=fake,
                            log=lambda _m: None, poll_seconds=0, **kw)


def ctx(**kw: Any) -> PatchContext:
    return PatchContext(**{"stack": "prod", "db": "odoo_prod", "to_image": "odoo:17.0-20261120",
                           "from_image": "odoo:17.0-20261001", "modules": ["mrp", "stock"],
                           "run_id": "20261129t220500z-3fa2b1", **kw})


def test_freeze_scales_cron_then_web_to_zero_and_waits() -> None:
    fake = FakeKubectl()
    driver, c = k8s(fake), ctx()
    driver.remember(c)
    driver.freeze(c)
    assert c.web_replicas == 3
    assert fake.calls == [
        f"{KC} get deploy/odoo-web -o 'jsonpath={{.spec.replicas}}'",
        f"{KC} scale deploy/odoo-cron --replicas=0",
        f"{KC} wait --for=delete pod -l app.kubernetes.io/instance=odoo,app.kubernetes.io/component=cron "
        "--timeout=1800s",
        f"{KC} scale deploy/odoo-web --replicas=0",
        f"{KC} wait --for=delete pod -l app.kubernetes.io/instance=odoo,app.kubernetes.io/component=web "
        "--timeout=1800s",
    ]


def test_freeze_with_a_maintenance_command_leaves_web_running(tmp_path: Path) -> None:
    fake = FakeKubectl()
    flag = tmp_path / "maintenance"
    driver = k8s(fake, web_mode="command", maintenance_cmd=f"touch {flag}", unmaintenance_cmd=f"rm {flag}")
    driver.freeze(ctx())
    assert flag.exists()
    assert not any("odoo-web" in call for call in fake.calls)
    driver.roll(ctx(web_replicas=3), "odoo:17.0-20261120")
    assert not flag.exists()


def test_current_image_reads_the_odoo_container() -> None:
    fake = FakeKubectl()
    assert k8s(fake).current_image(ctx()) == "odoo:17.0-20261001"
    assert fake.calls == [f"{KC} get deploy/odoo-web -o "
                          "'jsonpath={.spec.template.spec.containers[?(@.name==\"odoo\")].image}'"]


def test_roll_sets_image_scales_back_and_waits_for_rollouts() -> None:
    fake = FakeKubectl()
    k8s(fake).roll(ctx(web_replicas=3), "odoo:17.0-20261120")
    assert fake.calls == [
        f"{KC} set image deploy/odoo-web odoo=odoo:17.0-20261120",
        f"{KC} set image deploy/odoo-cron odoo=odoo:17.0-20261120",
        f"{KC} scale deploy/odoo-web --replicas=3",
        f"{KC} scale deploy/odoo-cron --replicas=1",
        f"{KC} rollout status deploy/odoo-web --timeout=1800s",
        f"{KC} rollout status deploy/odoo-cron --timeout=1800s",
    ]


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


def test_cancel_deletes_a_killed_runs_job() -> None:
    fake = FakeKubectl()
    k8s(fake).cancel(ctx(), {})
    assert fake.calls == [f"{KC} delete job/odoo-patch-20261129t220500z-3fa2b1 --ignore-not-found "
                          "--cascade=foreground --wait=true"]


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


def test_freeze_of_an_already_frozen_stack_passes() -> None:
    """A re-run (rollback of a killed run) freezes again: no pods left is not an error."""

    class NoPods(FakeKubectl):
        def __call__(self, argv: list[str], stdin: str | None) -> subprocess.CompletedProcess[str]:
            super().__call__(argv, stdin)
            if "wait" in argv:
                return subprocess.CompletedProcess(argv, 1, "", "error: no matching resources found\n")
            return subprocess.CompletedProcess(argv, 0, "", "")

    fake = NoPods()
    k8s(fake).freeze(ctx())
    assert len(fake.calls) == 4
