"""Every command of runbooks/*.md is checked against the tool it calls, so a runbook cannot drift from the CLI.

The commands are read out of the Markdown (tests/runbooks.py), placeholders filled. Ours are checked
here without servers: an `erpops ...` line parses with erpops' own click commands (the command exists,
every option is one of its options, the values have the right type), an `ansible-playbook X.yml` line
names a playbook that uses every `-e` variable it sets, `locust -f` accepts the options given,
`python inventory_from_spec.py --check` and `ansible-inventory ... | grep` run and show what the runbook
shows. tests/integration/test_runbook_backup_restore.py runs the backup and restore procedure itself
against local PostgreSQL and S3. Commands of tools this machine has no cluster or cloud for are listed
in NOT_HERE with the reason; a runbook command of any other program fails the test until it is placed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import click
import pytest

from tests.runbooks import ROOT, Command, all_commands

VENV_BIN = Path(sys.executable).parent
PLAYBOOKS = ROOT / "playbooks"
# Not run or parsed here, and why.
NOT_HERE = {
    "kubectl": "needs a cluster",
    "pulumi": "needs the Pulumi CLI and a backend (the program is tested under mocks in tests/tool)",
    "psql": "run against local PostgreSQL by tests/integration/test_runbook_backup_restore.py",
    "odoo": "needs an Odoo installation",
    "mc": "needs a MinIO server",
    "curl": "needs a live Odoo",
    "$EDITOR": "a person edits the file",
    "export": "shell state, not a command",
    "cd": "shell state, not a command",
    "source": "shell state, not a command",
    "echo": "prints the exit code of the command before it",
    "cat": "shows a file another command wrote",
    "tail": "shows a file another command wrote",
    "git": "shows the change a command made",
    "cp": "copies a stack file before editing it",
}
CHECKED = ("erpops", "ansible-playbook", "ansible-inventory", "python", "locust")
COMMANDS = all_commands()
# A value for each placeholder that a command's option type accepts ("1" for every other one).
VALUES = {"stack": "dev", "to stack": "staging", "set id": "dev-odoo_dev-20261129T183918Z-5baa60",
          "pre_patch_set": "dev-odoo_dev-20261129T183918Z-5baa60", "db": "odoo_dev", "playbook": "backup"}


def _of(*programs: str) -> list[Command]:
    return [c for c in COMMANDS if c.program in programs]


def test_the_runbooks_hold_commands_and_every_program_is_placed() -> None:
    assert len(COMMANDS) > 50, "fewer runbook commands than expected: is the extraction broken?"
    unplaced = [str(c) for c in COMMANDS if c.program not in CHECKED and c.program not in NOT_HERE]
    assert unplaced == [], "a runbook command of a program this test does not know: check it here or say why not"


def _parse_erpops(argv: list[str]) -> click.Context:
    """Parse as `erpops` would, down to the leaf command, invoking nothing; raises click's usage errors."""
    from erpops.cli import cli

    ctx = cli.make_context("erpops", argv[1:], resilient_parsing=False)
    command: click.Command = cli
    while isinstance(command, click.Group):
        with warnings.catch_warnings():  # click 8.2 deprecates protected_args; 8.1 needs it
            warnings.simplefilter("ignore", DeprecationWarning)
            pending = [*ctx.protected_args, *ctx.args]
        name, sub, rest = command.resolve_command(ctx, pending)
        assert sub is not None, name
        ctx = sub.make_context(name or sub.name or "", rest, parent=ctx)
        command = sub
    return ctx


@pytest.mark.parametrize("command", _of("erpops"), ids=str)
def test_an_erpops_command_of_a_runbook_parses(command: Command) -> None:
    argv = command.argv(VALUES)
    try:
        ctx = _parse_erpops(argv)
    except click.UsageError as exc:
        pytest.fail(f"{command}\n  does not parse: {exc.format_message()}")
    except click.BadParameter as exc:
        pytest.fail(f"{command}\n  has a bad value: {exc.format_message()}")
    assert ctx.command.name == argv[argv.index(ctx.command.name)], argv


def _playbook_variables(path: Path) -> set[str]:
    return set(re.findall(r"\berpops_\w+", path.read_text()))


@pytest.mark.parametrize("command", _of("ansible-playbook"), ids=str)
def test_an_ansible_playbook_command_names_a_playbook_and_its_variables(command: Command) -> None:
    argv = command.argv(VALUES)
    [playbook] = [a for a in argv[1:] if a.endswith(".yml") and not a.startswith("inventories/")]
    path = PLAYBOOKS / playbook
    assert path.is_file(), f"{command}: no playbook {path}"
    inventory = argv[argv.index("-i") + 1] if "-i" in argv else "inventories/dev/hosts.yml"
    assert (PLAYBOOKS / inventory).is_file(), f"{command}: no inventory {inventory}"
    given = [argv[i + 1].split("=", 1)[0] for i, a in enumerate(argv) if a in ("-e", "--extra-vars")]
    unknown = [name for name in given if name not in _playbook_variables(path)]
    assert unknown == [], f"{command}: {playbook} never uses {unknown}"


def test_the_inventory_check_of_the_runbook_passes() -> None:
    [command] = [c for c in _of("python") if "inventory_from_spec.py" in c.text]
    done = subprocess.run([sys.executable, *command.argv(VALUES)[1:]], cwd=PLAYBOOKS, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(line.strip() in done.stdout for line in command.output), (command.output, done.stdout)


@pytest.mark.parametrize("command", _of("ansible-inventory"), ids=str)
def test_the_inventory_shows_the_variables_the_runbook_greps(command: Command) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", ANSIBLE_CONFIG=str(PLAYBOOKS / "ansible.cfg"))
    done = subprocess.run([str(VENV_BIN / "ansible-inventory"), *command.argv(VALUES)[1:]], cwd=PLAYBOOKS, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    pattern = re.search(r"grep -E '([^']+)'", command.text)
    assert pattern, command
    shown = {m.group(1) for m in re.finditer(r'"(erpops_\w+)":', done.stdout) if re.search(pattern[1], m.group(0))}
    expected = {m.group(1) for line in command.output for m in [re.search(r'"(erpops_\w+)"', line)] if m}
    assert expected and expected <= shown, (expected, shown)


def test_the_locust_command_of_the_runbook_takes_its_options() -> None:
    """`--list` makes Locust parse every option (its own and the locustfile's), list the users and stop."""
    [command] = _of("locust")
    done = subprocess.run([str(VENV_BIN / "locust"), *command.argv(VALUES)[1:], "--list"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "unrecognized arguments" not in done.stderr, done.stderr
    assert {"Planner", "ShopFloor", "Buyer", "Sales", "Warehouse"} <= set(done.stdout.split()), done.stdout
