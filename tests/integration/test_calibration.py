"""Calibrated sizing: `erpops loadtest capacity` against the Odoo double with known service times.

The double serves W requests at once (its `workers`), each for S ms (no jitter), and the simulated users
barely think (1-2 ms), so each user always has one request in flight: a closed queue of N users on W
servers. Below W users a request takes S; from W on it takes (N / W) x S. The p50 doubles over the
first step's when N = 2W: about 2 users per worker, and the throughput tops out at 1000 / S req/s per
worker. The recorded calibration must say that, `erpops size --users` and odoo.web.target_users must
use it, and a calibration from another Odoo version or persona mix must be refused with the reason.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from erpops import spec
from erpops.errors import SpecError
from erpops.local._proc import free_port, port_open
from loadtests.testing.odoo_double import DB, PASSWORD

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WORKERS, SERVICE_MS = 2, 50
WEIGHTS = {"planner": 2, "shop_floor": 4, "buyer": 1, "sales": 2, "warehouse": 3}
THINK = [0.001, 0.002]
# the closed-queue arithmetic of the module docstring
PREDICTED_USERS_PER_WORKER = 2.0
PREDICTED_RPS_PER_WORKER = 1000 / SERVICE_MS


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("calibration")
    (root / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    doc = yaml.safe_load((REPO / "Pulumi.dev.yaml").read_text())
    doc["config"]["erpops:spec"]["slo"] = {"think_time_seconds": THINK, "persona_weights": WEIGHTS}
    (root / "Pulumi.dev.yaml").write_text(yaml.safe_dump(doc))
    return root


@pytest.fixture(scope="module")
def double() -> Iterator[str]:
    """The double in its own process, so the memory sampler finds it by its listening port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "loadtests.testing.odoo_double", "--port", str(port),
                             "--workers", str(WORKERS), "--base-ms", str(SERVICE_MS), "--jitter-ms", "0"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", port):
            assert proc.poll() is None and time.monotonic() < deadline, "the double did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(timeout=30)


def erpops(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ERPOPS_ODOO_PASSWORD": PASSWORD, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "erpops.cli", "--root", str(project), *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def calibration(project: Path, double: str) -> dict:
    done = erpops(project, "loadtest", "capacity", "--stack", "dev", "--host", double, "--db", DB,
                  "--workers", str(WORKERS), "--factor", "1.5", "--max-users", "24", "--duration", "3s",
                  "--warmup", "1s")
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    path = project / "loadtests" / "baselines" / "dev.calibration.json"
    return json.loads(path.read_text())


def test_the_calibration_gives_the_numbers_the_queue_predicts(calibration: dict) -> None:
    assert calibration["version"] == 1 and calibration["workers"] == WORKERS
    assert calibration["criterion"].startswith("p50")
    assert PREDICTED_USERS_PER_WORKER * 0.8 <= calibration["users_per_worker"] <= PREDICTED_USERS_PER_WORKER * 1.4, \
        calibration["arithmetic"]
    assert PREDICTED_RPS_PER_WORKER * 0.75 <= calibration["rps_per_worker"] <= PREDICTED_RPS_PER_WORKER * 1.05, \
        calibration["steps"]


def test_the_calibration_records_what_it_was_measured_on(calibration: dict, double: str) -> None:
    assert (calibration["odoo_serie"], calibration["host"], calibration["persona_weights"],
            calibration["think_time_seconds"]) == ("17.0", double, WEIGHTS, THINK)
    assert calibration["recorded_at"] and calibration["read_only"] is False
    # read from the double's own process, found by its listening port
    assert calibration["memory_source"].startswith("measured")
    assert 5 < calibration["worker_rss_mib"] < calibration["worker_vms_mib"]


def test_size_for_users_uses_the_calibration_and_shows_the_arithmetic(project: Path, calibration: dict) -> None:
    done = erpops(project, "size", "--stack", "dev", "--users", "40", "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    workers = spec.load("dev", project).odoo.workers
    upw = calibration["users_per_worker"]
    assert plan["source"].startswith("calibration")
    assert plan["workers_per_pod"] == workers
    assert plan["replicas"] == max(math.ceil(math.ceil(40 / upw) / workers), 1)
    assert plan["hpa_max"] == max(math.ceil(plan["replicas"] * 1.5), plan["replicas"] + 1)
    assert plan["pod_memory_mib"] == math.ceil((workers + 1) * calibration["worker_rss_mib"] / 0.8 / 64) * 64
    formulas = {s["name"]: s["formula"] for s in plan["settings"]}
    assert f"ceil(40 users / {upw:g} users per worker)" in formulas["workers_needed"]
    text = erpops(project, "size", "--stack", "dev", "--users", "40")
    assert text.returncode == 0 and "calibration" in text.stdout and "max_connections" in text.stdout


def test_target_users_in_the_spec_sizes_the_deployment(project: Path, calibration: dict) -> None:
    raw = yaml.safe_load((project / "Pulumi.dev.yaml").read_text())["config"]["erpops:spec"]
    raw.setdefault("odoo", {}).setdefault("web", {})["target_users"] = 40
    sized = spec.validate(raw, "dev", root=project)
    expected = max(math.ceil(math.ceil(40 / calibration["users_per_worker"]) / sized.odoo.workers), 1)
    assert sized.spec.odoo.web.replicas == expected
    assert sized.budget.web_processes == expected * (sized.odoo.workers + 1)


@pytest.mark.parametrize(("change", "reason"), [
    ({"odoo_serie": "16.0"}, "measured on Odoo 16.0 and the stack runs 17.0"),
    ({"persona_weights": {**WEIGHTS, "buyer": 5}}, "persona weights"),
])
def test_a_calibration_from_another_version_or_persona_mix_is_refused(
        project: Path, calibration: dict, tmp_path: Path, change: dict, reason: str) -> None:
    other = tmp_path / "project"
    (other / "loadtests" / "baselines").mkdir(parents=True)
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml"):
        (other / name).write_text((project / name).read_text())
    (other / "loadtests" / "baselines" / "dev.calibration.json").write_text(json.dumps({**calibration, **change}))
    done = erpops(other, "size", "--stack", "dev", "--users", "40")
    assert done.returncode == 2 and reason in done.stderr and "refused" in done.stderr, done.stderr
    raw = yaml.safe_load((other / "Pulumi.dev.yaml").read_text())["config"]["erpops:spec"]
    raw.setdefault("odoo", {}).setdefault("web", {})["target_users"] = 40
    with pytest.raises(SpecError) as caught:
        spec.validate(raw, "dev", root=other)
    assert caught.value.problems[0][0] == "odoo.web.target_users" and reason in caught.value.problems[0][1]


def test_the_ansible_module_records_a_calibration(project: Path, double: str, tmp_path: Path) -> None:
    venv_bin = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "ERPOPS_"))}
    env.update(PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(REPO),
               ANSIBLE_CONFIG=str(REPO / "playbooks" / "ansible.cfg"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.oneline")
    path = tmp_path / "dev.calibration.json"
    args = {"project_root": str(project), "stack": "dev", "host": double, "db": DB, "odoo_password": PASSWORD,
            "workers": WORKERS, "factor": 1.5, "max_users": 24, "duration": "3s", "calibration": str(path)}

    def module(*flags: str) -> dict:
        proc = subprocess.run(
            [str(venv_bin / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-m",
             "erpops.ops.erpops_calibrate", "-a", json.dumps(args), "-e",
             json.dumps({"ansible_python_interpreter": sys.executable}), *flags],
            cwd=REPO / "playbooks", env=env, capture_output=True, text=True, timeout=600, check=False)
        head, _, payload = proc.stdout.strip().splitlines()[-1].partition("=> ")
        return {**json.loads(payload), "failed": "FAILED" in head}

    planned = module("--check")
    assert not planned["failed"] and planned["changed"] and not path.exists(), planned
    assert PASSWORD not in json.dumps(planned["command"])
    done = module()
    assert not done["failed"] and done["changed"], done
    assert done["calibration"] == json.loads(path.read_text())
    assert done["calibration"]["workers"] == WORKERS and done["calibration"]["users_per_worker"] > 0
