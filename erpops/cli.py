"""The `erpops` command line. Thin: it parses flags, calls the library, prints, sets the exit code."""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from erpops import __version__, jsonout, plugins, spec
from erpops.errors import EXIT_INTERNAL, ErpopsError, ServiceError, SpecError, UsageError

# Off a terminal (CI logs, pipes) rich would wrap at 80 columns: give tables room instead.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


def _root(ctx: click.Context) -> Path:
    root: Path | None = ctx.obj.get("root") if ctx.obj else None
    return root or spec.find_root()


def _stacks(root: Path, stack: str | None) -> list[str]:
    if stack:
        return [stack]
    stacks = spec.list_stacks(root)
    if not stacks:
        raise SpecError([("stack", f"no Pulumi.<stack>.yaml in {root}: create one, e.g. Pulumi.dev.yaml")])
    return stacks


class Commands(click.Group):
    """The `erpops` group: its commands are the `erpops.commands` entry points (erpops.plugins), loaded on use.

    One way to assemble the command line: the core's commands and each tool's (health, loadtest, render)
    are all registered in pyproject.toml, so this module imports none of the tool packages.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *plugins.command_names()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None:
            try:
                command = plugins.command(name)
            except ImportError as exc:  # its package is not installed here (an image without infra/, ...)
                command = _unavailable(name, exc)
            if command is not None:
                self.add_command(command, name)
        return command


def _unavailable(name: str, exc: ImportError) -> click.Command:
    """A command whose package is absent: listed as such, and running it says what is missing (exit 3)."""
    missing = exc.name or str(exc)

    def fail() -> None:
        raise ServiceError(f"`erpops {name}` is not available in this installation: {missing} cannot be "
                           f"imported ({exc}); install the package that provides it")

    return click.Command(name, callback=fail, help=f"(not available here: {missing} is not installed)",
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True})


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="erpops")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Project root holding Pulumi.yaml and the stack files (default: found upwards).")
@click.pass_context
def cli(ctx: click.Context, root: Path | None) -> None:
    """erpops: run Odoo in production, one governed environment per Pulumi stack."""
    ctx.ensure_object(dict)
    ctx.obj["root"] = root


@click.group("spec")
def spec_group() -> None:
    """Read and check environment specs (Pulumi.<stack>.yaml, key erpops:spec)."""


@spec_group.command("validate")
@click.option("--stack", "-s", default=None, help="Stack to validate (default: every stack file).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (docs/json-output.md).")
@click.pass_context
@jsonout.json_errors
def spec_validate(ctx: click.Context, stack: str | None, as_json: bool) -> None:
    """Validate stack specs; every problem is listed with its key and the fix (exit 2)."""
    sized = _validated(ctx, stack)
    if as_json:
        click.echo(json.dumps(jsonout.envelope({"stacks": [
            {"stack": s.stack, "tier": s.spec.tier, "odoo_version": s.spec.odoo.version,
             "web_replicas": s.spec.odoo.web.replicas, "workers": s.odoo.workers,
             "postgres_major_version": s.spec.postgres.major_version, "postgres_instances": s.spec.postgres.instances,
             "max_connections": s.budget.max_connections} for s in sized]}), indent=2))
        return
    for s in sized:
        out.print(f"[green]ok[/green] {s.stack}: tier {s.spec.tier}, Odoo {s.spec.odoo.version}, "
                  f"{s.spec.odoo.web.replicas} web x {s.odoo.workers} workers, PostgreSQL "
                  f"{s.spec.postgres.major_version} x{s.spec.postgres.instances}, "
                  f"max_connections {s.budget.max_connections}")


def _validated(ctx: click.Context, stack: str | None) -> list[spec.Sized]:
    root = _root(ctx)
    problems: list[tuple[str, str]] = []
    sized: list[spec.Sized] = []
    for name in _stacks(root, stack):
        try:
            sized.append(spec.load(name, root))
        except SpecError as exc:
            where = f"{name}: " if stack is None else ""
            problems += [(f"{where}{path}", msg) for path, msg in exc.problems]
    if problems:
        raise SpecError(problems, None if stack is None else str(spec.stack_file(root, stack)))
    return sized


def _size_report(s: spec.Sized) -> dict[str, Any]:
    def rows(settings: list) -> list[dict[str, Any]]:
        return [{"name": x.name, "value": x.value, "conf": x.conf, "formula": x.formula, "source": x.source}
                for x in settings]

    return {
        "stack": s.stack,
        "tier": s.spec.tier,
        "odoo": rows(s.odoo.settings),
        "connections": rows(s.budget.settings),
        "postgres": rows(s.postgres),
        "concurrent_users": s.odoo.concurrent_users_per_pod * s.spec.odoo.web.replicas,
    }


def _capacity_plan(root: Path, stack: str, users: int, as_json: bool) -> None:
    from erpops import capacity

    sized = spec.load(stack, root)
    doc, path = capacity.stack_calibration(sized, root)
    plan = capacity.plan(sized, users, doc, path)
    if as_json:
        click.echo(json.dumps(jsonout.envelope({"stack": stack, "users": users, "source": plan.source,
                                                "replicas": plan.replicas,
                               "workers_per_pod": plan.workers_per_pod, "hpa_min": plan.hpa_min,
                               "hpa_max": plan.hpa_max, "pod_memory_mib": plan.pod_memory_mib,
                               "client_connections": plan.budget.client_connections,
                               "default_pool_size": plan.budget.pool_size,
                               "max_connections": plan.budget.max_connections,
                               "pooler_instances": plan.budget.pooler_instances, "notes": plan.notes,
                               "settings": [{"name": x.name, "value": x.value, "formula": x.formula,
                                             "source": x.source} for x in plan.settings]}), indent=2))
        return
    table = Table(title=f"{stack}: {users} concurrent users, from the {plan.source}", title_justify="left")
    for col, kw in (("setting", {"style": "bold"}), ("value", {"justify": "right"}), ("formula", {}),
                    ("source", {"style": "dim"})):
        table.add_column(col, **kw)
    for row in plan.settings:
        table.add_row(row.name, row.conf, row.formula, row.source)
    out.print(table)
    for note in plan.notes:
        err.print(f"[yellow]note[/yellow]: {note}", highlight=False)
    b = plan.budget
    out.print(f"{stack}: {plan.replicas} replicas x {plan.workers_per_pod} workers (HPA {plan.hpa_min}-"
              f"{plan.hpa_max}), {plan.pod_memory_mib}Mi per pod, {b.pool_size} pool x {b.pooler_instances} "
              f"poolers, max_connections {b.max_connections}; set odoo.web.target_users: {users} to deploy it")


@click.command("size")
@click.option("--stack", "-s", default=None, help="Stack to size (default: every stack file).")
@click.option("--users", "-u", type=click.IntRange(1), default=None,
              help="Size for this many concurrent users: replicas, HPA bounds, pod memory, connections "
                   "(from the stack's calibration, else the Odoo docs' rules).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.pass_context
@jsonout.json_errors
def size(ctx: click.Context, stack: str | None, users: int | None, as_json: bool) -> None:
    """Print every Odoo and PostgreSQL setting of a stack with the formula that produced it."""
    root = _root(ctx)
    if users is not None:
        if not stack:
            raise UsageError("--users needs --stack: the pod shape and persona mix are the stack's")
        _capacity_plan(root, stack, users, as_json)
        return
    reports = [_size_report(spec.load(name, root)) for name in _stacks(root, stack)]
    if as_json:
        click.echo(json.dumps(jsonout.envelope({"stacks": reports}), indent=2))
        return
    for report in reports:
        for section, title in (("odoo", "Odoo (odoo.conf)"), ("connections", "Connection budget"),
                               ("postgres", "PostgreSQL (postgresql.parameters)")):
            table = Table(title=f"{report['stack']}: {title}", title_justify="left")
            table.add_column("setting", style="bold")
            table.add_column("value", justify="right")
            table.add_column("formula")
            table.add_column("source", style="dim")
            for row in report[section]:
                table.add_row(row["name"], row["conf"], row["formula"], row["source"])
            out.print(table)
        out.print(f"{report['stack']}: serves about {report['concurrent_users']} concurrent users "
                  "at the configured replicas\n")


def run(command: click.Command, args: list[str] | None = None, prog_name: str | None = None,
        obj: dict[str, Any] | None = None) -> None:
    """Run a command with erpops' exit codes: `erpops` itself, and the commands run alone
    (`python -m healthchecks`, `python -m loadtests`, `python -m erpops.patch`)."""
    from erpops.backup.leftovers import Terminated, handle_termination, one_malloc_arena

    handle_termination()  # SIGTERM unwinds through every cleanup, as Ctrl-C does
    one_malloc_arena()  # before any thread starts: freed transfer buffers are reused, not kept per thread
    try:
        command.main(args, prog_name=prog_name, standalone_mode=False, obj=obj)
    except (click.exceptions.Abort, KeyboardInterrupt):
        err.print("interrupted: what this run had started was cleaned up")
        sys.exit(130)
    except Terminated as exc:
        err.print(f"{exc}: done, what this run had started was cleaned up")
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except ErpopsError as exc:
        err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except Exception:  # not one of ours: a bug, never to be read as a verdict (1) or an unreachable service (3)
        traceback.print_exc()
        err.print(f"internal error in erpops (exit {EXIT_INTERNAL}): please report it with the traceback above",
                  markup=False, highlight=False)
        sys.exit(EXIT_INTERNAL)


def main() -> None:
    run(cli)


if __name__ == "__main__":
    main()
