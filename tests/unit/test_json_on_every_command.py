"""Every erpops command takes --json (issue 15: "--json on every command"), found by walking the CLI itself."""

from __future__ import annotations

import click

from erpops.cli import cli


def _leaves(command: click.Command, ctx: click.Context, path: tuple[str, ...]) -> list[tuple[str, click.Command]]:
    """Every leaf command, through list_commands/get_command: the group loads its commands on use."""
    if isinstance(command, click.Group):
        found = []
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, name
            found += _leaves(sub, click.Context(sub, parent=ctx, info_name=name), (*path, name))
        return found
    return [(" ".join(path), command)]


def test_every_command_takes_json() -> None:
    leaves = _leaves(cli, click.Context(cli, info_name="erpops"), ("erpops",))
    assert len(leaves) >= 20, [name for name, _ in leaves]
    missing = [name for name, cmd in leaves if "--json" not in {o for p in cmd.params for o in getattr(p, "opts", [])}]
    assert missing == [], f"commands without --json (docs/json-output.md): {missing}"
