"""The layout's rules, read from the source (AST), not from what one import happens to pull in.

- The core package (erpops/) imports no tool SDK and none of the packages beside it: those import erpops,
  and what the core needs from them it receives (erpops/plugins.py: entry points, protocols).
- No cycle between the project's top-level packages.
- The command line is assembled one way: every `erpops` command is an `erpops.commands` entry point, and
  every entry point names an object that exists.
"""

from __future__ import annotations

import ast
import importlib
import itertools
import tomllib
from functools import cache
from pathlib import Path

import click
import pytest

from tests.sources import nodes

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "erpops"
# Imports the core may never make, at any depth (inside functions too): tool SDKs and the tool packages
FORBIDDEN_IN_CORE = ("pulumi", "pulumi_*", "helm_python", "ansible", "ansible_*", "locust", "locust_*",
                     "gevent", "jsonschema", "infra", "loadtests", "healthchecks", "devtools", "policy", "tests")
SKIP_DIRS = {".git", ".venv", ".venv-checkov", "__pycache__", "out", "node_modules", ".erpops"}


def _py_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if not SKIP_DIRS & set(p.relative_to(ROOT).parts))


@cache
def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file; relative imports are the file's own package."""
    out: list[tuple[int, str]] = []
    for node in nodes(path):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            out.append((node.lineno, str(node.args[0].value)))  # importlib.import_module("infra.x") counts too
    return out


def _forbidden(module: str) -> bool:
    top = module.split(".")[0]
    return any(top == rule or (rule.endswith("*") and top.startswith(rule[:-1])) for rule in FORBIDDEN_IN_CORE)


def test_the_core_imports_no_tool_sdk_and_no_package_beside_it() -> None:
    found = [f"{path.relative_to(ROOT)}:{line}: import {module}"
             for path in _py_files(CORE) for line, module in _imports(path) if _forbidden(module)]
    assert found == [], "the core must not import these (inject what it needs, erpops/plugins.py):\n" + "\n".join(found)


def test_the_rule_catches_an_import_hidden_in_a_function(tmp_path: Path) -> None:
    """The AST rule sees what an import-time check would miss (a lazy import inside a function)."""
    sample = tmp_path / "lazy.py"
    sample.write_text("def f():\n    from infra import render\n    import pulumi_kubernetes\n"
                      "    importlib.import_module('healthchecks.core')\n")
    assert [m for _, m in _imports(sample) if _forbidden(m)] == ["infra", "pulumi_kubernetes", "healthchecks.core"]


# ------------------------------------------------------------------------------------------------
# The import graph of the top-level packages
# ------------------------------------------------------------------------------------------------

def _top_level_packages() -> dict[str, Path]:
    """Every top-level folder holding Python (erpops, infra, healthchecks, loadtests, playbooks, policy, ...)."""
    return {d.name: d for d in sorted(ROOT.iterdir())
            if d.is_dir() and d.name not in SKIP_DIRS and not d.name.startswith(".") and _py_files(d)}


def _graph() -> dict[str, dict[str, str]]:
    """package -> {package it imports: the first place it does}."""
    packages = _top_level_packages()
    graph: dict[str, dict[str, str]] = {name: {} for name in packages}
    for name, folder in packages.items():
        for path in _py_files(folder):
            # `from rules import X` beside rules.py (policy/): the file's own folder, not another package
            siblings = {p.stem for p in path.parent.glob("*.py")}
            for line, module in _imports(path):
                top = module.split(".")[0]
                if top in packages and top != name and top not in siblings:
                    graph[name].setdefault(top, f"{path.relative_to(ROOT)}:{line}")
    return graph


def _cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_the_graph_holds_the_packages_it_must_judge() -> None:
    graph = _graph()
    assert {"erpops", "infra", "healthchecks", "loadtests", "playbooks", "policy", "devtools", "tests"} <= set(graph)
    # the arrows that must exist, so the cycle test below is not vacuous
    assert {"infra", "healthchecks", "loadtests"} <= {p for p, deps in graph.items() if "erpops" in deps}


def test_no_cycle_between_top_level_packages() -> None:
    graph = _graph()
    cycles = _cycles(graph)
    described = [" -> ".join(c) + "  (" + "; ".join(graph[a][b] for a, b in itertools.pairwise(c)) + ")"
                 for c in cycles]
    assert cycles == [], "import cycles between top-level packages:\n" + "\n".join(described)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b": ""}, "b": {"c": ""}, "c": {"a": ""}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b": ""}, "b": {}, "c": {"a": ""}}) == []


# ------------------------------------------------------------------------------------------------
# One way to assemble the command line: entry points
# ------------------------------------------------------------------------------------------------

ENTRY_POINTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]


def _load(ref: str) -> object:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


@pytest.mark.parametrize(("name", "ref"), sorted(ENTRY_POINTS["erpops.commands"].items()))
def test_every_registered_command_exists_under_its_name(name: str, ref: str) -> None:
    command = _load(ref)
    assert isinstance(command, click.Command) and command.name == name, ref


@pytest.mark.parametrize(("name", "ref"), sorted(ENTRY_POINTS["erpops.providers"].items()))
def test_every_provider_exists(name: str, ref: str) -> None:
    assert callable(_load(ref)), ref


def test_the_cli_module_defines_no_command_of_its_own_group() -> None:
    """Commands are added by entry points only (not by decorators on the group, nor by add_command lists)."""
    from erpops import cli

    assert set(cli.cli.commands) <= set(ENTRY_POINTS["erpops.commands"])  # only what get_command loaded
    source = (CORE / "cli.py").read_text()
    assert "@cli.command" not in source and "@cli.group" not in source and "cli.add_command" not in source


def test_the_drill_image_holds_every_package_an_entry_point_names() -> None:
    """The image's `erpops --help` lists every command: each one's package must be in the image."""
    import re

    copied = set(re.findall(r"^COPY (\w+) /src/\1$", (ROOT / "images" / "erpops" / "Dockerfile").read_text(), re.M))
    named = {ref.split(":")[0].split(".")[0] for group in ENTRY_POINTS.values() for ref in group.values()}
    assert named <= copied, f"images/erpops/Dockerfile does not COPY {sorted(named - copied)}"


def test_a_command_whose_package_is_absent_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from erpops import cli, plugins
    from erpops.errors import ServiceError

    def absent(name: str) -> object:
        raise ModuleNotFoundError("No module named 'infra'", name="infra")

    group = cli.Commands("erpops")
    monkeypatch.setattr(plugins, "command", absent)
    listing = CliRunner().invoke(group, ["--help"], catch_exceptions=False)
    assert "not available here: infra is not installed" in listing.output
    ran = CliRunner().invoke(group, ["render", "--out", "x"])
    assert isinstance(ran.exception, ServiceError) and ran.exception.exit_code == 3
    assert "`erpops render` is not available in this installation: infra" in str(ran.exception)
