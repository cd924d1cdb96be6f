"""The Ansible side without servers: lint, docs, syntax, generated inventories, module plumbing.

ansible-lint (production profile, --offline) and ansible-doc run as an operator runs them: from
playbooks/, whose ansible.cfg puts the erpops.ops collection on the collections path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "playbooks"
COLLECTION = PLAYBOOKS / "collections" / "ansible_collections" / "erpops" / "ops"
VENV_BIN = Path(sys.executable).parent
PLAYBOOK_FILES = sorted(p.name for p in PLAYBOOKS.glob("*.yml"))
MODULES = sorted(p.stem for p in (COLLECTION / "plugins" / "modules").glob("erpops_*.py"))
SECRET_OPTIONS = {"pg_password", "aws_secret_access_key", "aws_session_token", "aws_access_key_id"}


def ansible_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", ANSIBLE_CONFIG=str(PLAYBOOKS / "ansible.cfg"),
               ANSIBLE_NOCOLOR="1", NO_COLOR="1")
    env.update(extra)
    return env


def run(argv: list[str], *, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=PLAYBOOKS, env=ansible_env(**env), capture_output=True, text=True,
                          timeout=timeout, check=False)


# The erpops command(s) each module runs.
COMMANDS = {
    "erpops_backup": [["backup"]],
    "erpops_verify": [["verify"]],
    "erpops_restore": [["restore"]],
    "erpops_prune": [["prune"]],
    "erpops_sets": [["list"]],
    "erpops_rehearse": [["rehearse"], ["list"]],  # list: the set check mode reports
    "erpops_odoo_zip": [["import", "odoo-zip"], ["export", "odoo-zip"]],
    "erpops_patch": [["patch"]],
    "erpops_filestore_migrate": [["filestore", "migrate"]],
    "erpops_calibrate": [["loadtest", "capacity"]],
}
TARGET_FLAGS = {"--target", "--stack", "--endpoint-url", "--region"}


def test_every_module_is_known() -> None:
    assert sorted(COMMANDS) == MODULES


@pytest.mark.parametrize("module", MODULES)
def test_every_flag_a_module_passes_is_one_its_command_takes(module: str) -> None:
    """The modules and the CLI are written apart: each flag a module puts on argv must be in `--help`."""
    source = (COLLECTION / "plugins" / "modules" / f"{module}.py").read_text()
    flags = set(re.findall(r'"(--[a-z][a-z-]*)"', source)) | {"--json"}
    if "TARGET_ARGS" in source:
        flags |= TARGET_FLAGS
    helps, missing = [], []
    for command in COMMANDS[module]:
        proc = subprocess.run([str(VENV_BIN / "erpops"), *command, "--help"], capture_output=True, text=True,
                              timeout=60, check=False)
        if proc.returncode != 0:
            assert "No such command" in proc.stderr, proc.stderr
            missing.append(" ".join(command))
        helps.append(proc.stdout)
    if missing:
        pytest.skip(f"this erpops has no `{'`, `'.join(missing)}` command yet: {module} passes {sorted(flags)}")
    unknown = sorted(f for f in flags if not re.search(rf"(^|[\s/,]){re.escape(f)}\b", "\n".join(helps), re.M))
    assert not unknown, f"{module} passes flags `erpops {' '.join(COMMANDS[module][0])}` does not take: {unknown}"


def test_ansible_lint_production_profile_passes() -> None:
    if not (VENV_BIN / "ansible-lint").exists():
        pytest.fail("ansible-lint is not installed in the venv: pip install ansible-lint", pytrace=False)
    proc = run([str(VENV_BIN / "ansible-lint"), "--offline", "--profile", "production", "--nocolor"], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("playbook", PLAYBOOK_FILES)
def test_playbook_syntax(playbook: str) -> None:
    proc = run([str(VENV_BIN / "ansible-playbook"), "--syntax-check", playbook])
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def docs() -> dict[str, dict]:
    """ansible-doc --json of every module, in one run (each start costs a second)."""
    proc = run([str(VENV_BIN / "ansible-doc"), "--json", "-t", "module", *(f"erpops.ops.{m}" for m in MODULES)])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders_the_module(docs: dict[str, dict], module: str) -> None:
    entry = docs[f"erpops.ops.{module}"]
    doc = entry["doc"]
    assert doc["description"] and doc["short_description"]
    assert entry["examples"].strip() and entry["return"]
    assert doc["attributes"]["check_mode"]["support"] in ("full", "partial")
    for name in SECRET_OPTIONS & set(doc["options"]):
        assert doc["options"][name]["type"] == "str"


@pytest.mark.parametrize("module", MODULES)
def test_secret_options_are_no_log(module: str) -> None:
    """Every secret-looking option is no_log in the argument_spec the module really builds."""
    sys.path.insert(0, str(PLAYBOOKS / "collections"))
    try:
        from ansible_collections.erpops.ops.plugins.module_utils import erpops_cli
    finally:
        sys.path.remove(str(PLAYBOOKS / "collections"))
    source = (COLLECTION / "plugins" / "modules" / f"{module}.py").read_text()
    spec: dict[str, dict[str, Any]] = {}
    for shared in ("CLI_ARGS", "TARGET_ARGS", "PG_ARGS"):
        if shared in source:
            spec.update(getattr(erpops_cli, shared))
    # options the module declares itself: "name": {"type": ..., "no_log": True}
    for name, body in re.findall(r'"(\w+)": (\{[^{}]*\})', source):
        spec[name] = {"no_log": '"no_log": True' in body}
    assert SECRET_OPTIONS & set(spec), f"{module} declares no credential option: is its spec read?"
    for name in SECRET_OPTIONS & set(spec):
        assert spec[name].get("no_log") is True, name


def test_cli_output_with_a_report_then_an_error_is_read_whole() -> None:
    """`erpops verify` of a damaged set prints its report, then the error object."""
    sys.path.insert(0, str(PLAYBOOKS / "collections"))
    try:
        from ansible_collections.erpops.ops.plugins.module_utils.erpops_cli import json_objects
    finally:
        sys.path.remove(str(PLAYBOOKS / "collections"))
    report = {"ok": False, "set_id": "s", "problems": ["dump sha256 differs"]}
    error = {"ok": False, "error": "set s failed verification: 1 problem(s)", "error_type": "IntegrityError",
             "exit_code": 5}
    text = json.dumps(report, indent=2) + "\n" + json.dumps(error, indent=2) + "\n"
    assert json_objects(text) == [report, error]
    assert json_objects("not json {broken\n") == []


def adhoc(module: str, args: str, *, check: bool = False, python: str = sys.executable,
          path: str | None = None) -> dict:
    """Run one module ad hoc on localhost; its result (ansible's oneline callback prints it as JSON)."""
    argv = [str(VENV_BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-m", f"erpops.ops.{module}",
            "-a", args, "-e", json.dumps({"ansible_python_interpreter": python})] + (["--check"] if check else [])
    env = {"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.oneline"}
    if path is not None:
        env["PATH"] = path
    proc = run(argv, **env)
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    head, _, payload = lines[-1].partition("=> ")
    result = json.loads(payload)
    result["failed"] = "FAILED" in head  # oneline keeps the status in the head, not in the result
    return result


def test_missing_cli_is_reported_like_a_missing_library(tmp_path: Path) -> None:
    """No erpops beside the interpreter, none on PATH: missing_required_lib's message, with the fix."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 to run a module without erpops")
    # a local connection hands the controller's PATH to the module: leave the venv out of it
    result = adhoc("erpops_sets", "target=file:///nonexistent", python=python, path="/usr/bin:/bin")
    assert result.get("failed") is True, result
    assert "Failed to import the required Python library (erpops)" in result["msg"]
    assert "erpops_bin" in result["msg"]


def test_erpops_bin_that_is_not_executable_fails_with_the_path(tmp_path: Path) -> None:
    result = adhoc("erpops_sets", f"target=file://{tmp_path} erpops_bin={tmp_path / 'nope'}")
    assert result.get("failed") is True
    assert f"erpops_bin {tmp_path / 'nope'} is not an executable file" in result["msg"]


def test_cli_errors_come_back_with_message_and_exit_code(tmp_path: Path) -> None:
    """A real CLI failure (usage, exit 2) surfaces its message and exit code in the task result."""
    result = adhoc("erpops_sets", f"target=file://{tmp_path}/absent")
    assert result.get("failed") is True, result
    assert (result["exit_code"], result["error_type"]) == (2, "UsageError")
    assert result["msg"] == f"backup target file://{tmp_path}/absent does not exist (no directory {tmp_path}/absent)"
    assert "--json" in result["command"]


def test_a_set_that_does_not_exist_fails_the_module_before_the_cli_acts(tmp_path: Path) -> None:
    result = adhoc("erpops_restore", f"target=file://{tmp_path} set_id=no-such-set db=x", check=True)
    assert result.get("failed") is True, result
    assert "no complete backup set 'no-such-set'" in result["msg"]


def test_prune_check_mode_is_the_cli_dry_run(tmp_path: Path) -> None:
    result = adhoc("erpops_prune", f"target=file://{tmp_path}", check=True)
    assert result.get("failed") is not True, result
    assert result["changed"] is False and result["deleted"] == []
    assert "--apply" not in result["command"]
    assert result["prune"]["apply"] is False


def test_inventories_match_the_spec() -> None:
    proc = subprocess.run([sys.executable, str(PLAYBOOKS / "inventory_from_spec.py"), "--check"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


def test_inventory_drift_is_caught(tmp_path: Path) -> None:
    out = tmp_path / "inventories"
    shutil.copytree(PLAYBOOKS / "inventories", out)
    spec_vars = out / "dev" / "hosts.yml"
    spec_vars.write_text(spec_vars.read_text().replace("erpops_tier: dev", "erpops_tier: prod"))
    (out / "gone").mkdir()
    # the older layout's generated file, which silently overrode group_vars/all/local.yml
    stale = out / "staging" / "group_vars" / "all" / "spec.yml"
    stale.parent.mkdir(parents=True)
    stale.write_text("# Generated by playbooks/inventory_from_spec.py from Pulumi.staging.yaml: do not edit.\n")
    proc = subprocess.run([sys.executable, str(PLAYBOOKS / "inventory_from_spec.py"), "--check", "--out", str(out)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert f"{spec_vars}: differs from the spec" in proc.stderr
    assert "gone: no Pulumi.gone.yaml" in proc.stderr
    assert f"{stale}: generated by an older version and overrides group_vars/all/local.yml" in proc.stderr


def test_group_vars_local_yml_overrides_the_generated_values(tmp_path: Path) -> None:
    """runbooks/backup-restore.md: a port-forwarded PostgreSQL set in group_vars/all/local.yml is the one used."""
    out = tmp_path / "inventories"
    shutil.copytree(PLAYBOOKS / "inventories", out)
    local = out / "dev" / "group_vars" / "all" / "local.yml"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text("---\nerpops_pg_host: 127.0.0.1\nerpops_pg_port: 15432\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               ANSIBLE_CONFIG=str(PLAYBOOKS / "ansible.cfg"))
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(out / "dev" / "hosts.yml"),
                           "--host", "localhost"], cwd=PLAYBOOKS, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert (got["erpops_pg_host"], got["erpops_pg_port"]) == ("127.0.0.1", 15432)
    assert (got["erpops_db"], got["erpops_stack"]) == ("odoo_dev", "dev")  # the rest still comes from the spec
