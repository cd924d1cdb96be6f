"""Where the packages beside the core plug into it, without the core importing them.

The arrow points one way: healthchecks/, infra/ and loadtests/ import erpops, never the reverse. What
the core needs from them it asks for through two entry-point groups, which each package fills in
pyproject.toml (`[project.entry-points."erpops.commands"]`, `[project.entry-points."erpops.providers"]`):

  erpops.commands    every command of the `erpops` group, the core's own included: one way to assemble
                     the command line (erpops.cli loads them on first use)
  erpops.providers   implementations of the protocols below, by name:
                       health      a HealthProbe (healthchecks.probe:probe), for patch and rehearse
                       module_job  a ModuleJobSource (infra.chart:stack_module_job), for patch's
                                   kubernetes driver

Run from the source checkout, the lists are read from its pyproject.toml (the same tables); installed,
from the distribution's metadata. Library callers may pass their own implementation instead (tests,
another scheduler).
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from erpops.errors import ServiceError

COMMANDS_GROUP = "erpops.commands"
PROVIDERS_GROUP = "erpops.providers"
STALE_FIX = ("the package metadata is missing or stale: run `pip install --no-deps -e .` in the project "
             "(`./run` does it whenever pyproject.toml changes)")


@dataclass(frozen=True)
class HealthRequest:
    """Which health checks to run, against what. `selected(name)` picks among the checks that apply."""

    pg: Any  # erpops.pg.Pg, or None
    pg_db: str | None = None
    odoo_url: str | None = None
    odoo_db: str | None = None
    sized: Any = None  # erpops.spec.Sized: the stack's thresholds (defaults when None)
    selected: Callable[[str], bool] = field(default=lambda _name: True)


@dataclass(frozen=True)
class HealthFinding:
    check: str
    state: str  # OK, WARN, CRIT, UNKNOWN
    passed: bool  # OK and WARN pass; CRIT and UNKNOWN fail
    message: str
    metrics: dict[str, Any] = field(default_factory=dict)


class HealthProbe(Protocol):
    def __call__(self, request: HealthRequest) -> list[HealthFinding]: ...


class ModuleJobSource(Protocol):
    def __call__(self, sized: Any) -> dict[str, Any]:
        """The stack's module Job, as `pulumi up` applies it."""
        ...


def _checkout_entry_points() -> dict[str, dict[str, str]] | None:
    """The entry-point tables of pyproject.toml when erpops runs from its source checkout, else None.

    In a checkout (tests, `PYTHONPATH=.`, a worktree beside an editable install of another one) the
    checkout's own list is the truth: an install made before the list changed would hide a command.
    """
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    try:
        project = tomllib.loads(pyproject.read_text()).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return project.get("entry-points") if project.get("name") == "erpops" else None


@cache
def _entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    tables = _checkout_entry_points()
    if tables is not None:
        # the checkout's own packages (infra/ ...) load from it even when an older install did not map them;
        # appended, so an installed copy still comes first
        root = str(Path(__file__).resolve().parents[1])
        if root not in sys.path:
            sys.path.append(root)
        return {name: metadata.EntryPoint(name, value, group) for name, value in tables.get(group, {}).items()}
    return {ep.name: ep for ep in metadata.entry_points(group=group)}


def command_names() -> list[str]:
    names = sorted(_entry_points(COMMANDS_GROUP))
    if not names:
        raise ServiceError(f"no erpops command is registered (entry points {COMMANDS_GROUP}): {STALE_FIX}")
    return names


def command(name: str) -> Any:
    """The click command registered as `name`, or None."""
    ep = _entry_points(COMMANDS_GROUP).get(name)
    return ep.load() if ep is not None else None


def provider(name: str) -> Any:
    ep = _entry_points(PROVIDERS_GROUP).get(name)
    if ep is None:
        raise ServiceError(f"no `{name}` provider is registered (entry points {PROVIDERS_GROUP}): {STALE_FIX}")
    return ep.load()


def health_probe() -> HealthProbe:
    probe: HealthProbe = provider("health")
    return probe


def module_job_source() -> ModuleJobSource:
    source: ModuleJobSource = provider("module_job")
    return source
