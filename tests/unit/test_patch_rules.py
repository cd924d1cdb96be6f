"""erpops patch without servers: governance rules, the resume rule, the state file, and the exact
kubectl command lines the kubernetes driver runs (it cannot run here: a fake runner records them)."""

from __future__ import annotations

import shlex
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

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


def test_cancel_deletes_a_killed_runs_job() -> None:
    fake = FakeKubectl()
    k8s(fake).cancel(ctx(), {})
    assert fake.calls == [f"{KC} delete job/odoo-patch-20261129t220500z-3fa2b1 --ignore-not-found "
                          "--cascade=foreground --wait=true"]


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
