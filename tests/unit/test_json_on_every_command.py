"""Every erpops command takes --json (issue 15: "--json on every command"), found by walking the CLI itself."""

from __future__ import annotations

import click

from erpops.cli import cli


def _leaves(command: click.Command, path: tuple[str, ...] = ("erpops",)) -> list[tuple[str, click.Command]]:
    if isinstance(command, click.Group):
        return [leaf for name, sub in sorted(command.commands.items()) for leaf in _leaves(sub, (*path, name))]
    return [(" ".join(path), command)]


def test_every_command_takes_json() -> None:
    leaves = _leaves(cli)
    assert len(leaves) >= 20, [name for name, _ in leaves]
    missing = [name for name, cmd in leaves if "--json" not in {o for p in cmd.params for o in getattr(p, "opts", [])}]
    assert missing == [], f"commands without --json (docs/json-output.md): {missing}"
