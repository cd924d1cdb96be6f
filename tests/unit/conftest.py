"""The unit tier's border, enforced: a unit test starts no process, binds no socket, imports no tool.

tests/unit is pure logic (the default of a plain `pytest`, seconds on a laptop). What needs the
Helm engine, Pulumi's mocks, ansible-lint, checkov, a console script or any other child process
belongs in tests/tool; what needs a real server belongs in tests/integration.

The check is a CPython audit hook (PEP 578), not a monkeypatch: every way of starting a process
(subprocess, os.system, os.posix_spawn, os.exec*, os.fork, multiprocessing) and every `bind`
goes through an audit event, and a hook cannot be removed once added. While a unit module is
being collected or a unit test runs (fixtures included), such an event raises TierViolation and
is recorded; a recorded violation fails the test or the module's collection even when the code
under test catches the exception. Importing a tool SDK (pulumi*, helm_python, ...) is caught the
same way, on its first import in the process; `./run test` and a plain `pytest` run the unit
tier in a process of its own, where that first import is the unit test's.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

# croniter and urllib3 probe the machine when first imported: croniter calls platform.architecture(),
# which runs `file -b <python>`; urllib3 binds ('::1', 0) to learn whether IPv6 works. Imported here,
# before the border opens, so that probe is not charged to the first unit test that imports them.
import croniter  # noqa: F401
import pytest
import urllib3.util.connection  # noqa: F401

UNIT_DIR = Path(__file__).resolve().parent

# Top-level packages a unit test must not import (directly or through the code it calls).
TOOL_MODULES = frozenset({
    "pulumi", "pulumi_kubernetes", "pulumi_random", "pulumi_aws", "pulumi_policy", "pulumi_docker_build",
    "helm_python", "kubernetes_validate", "ansible", "ansiblelint", "ansible_lint", "checkov",
    "locust", "gevent", "moto", "testinfra",
})
PROCESS_EVENTS = frozenset({
    "subprocess.Popen", "os.system", "os.posix_spawn", "os.spawn", "os.exec", "os.fork", "os.forkpty",
})
SERVER_EVENTS = frozenset({"socket.bind"})
WATCHED = PROCESS_EVENTS | SERVER_EVENTS | {"import"}


class TierViolation(RuntimeError):
    """A unit test did something that belongs to tests/tool or tests/integration."""


class _Border:
    """Who is running now (a unit test's nodeid, or None) and what each one did across the border."""

    current: str | None = None
    violations: dict[str, list[str]] = {}  # noqa: RUF012 (one process-wide record, by design)


def _describe(event: str, args: tuple[Any, ...]) -> str | None:
    if event == "import":
        name = str(args[0])
        top = name.partition(".")[0]
        if top in TOOL_MODULES or top.startswith("pulumi_"):
            return f"imports {name}: a tool SDK; the test belongs in tests/tool"
        return None
    if event in PROCESS_EVENTS:
        what = args[0] if args else ""
        if isinstance(what, list | tuple):
            what = " ".join(map(str, what))
        return f"starts a process ({event}: {str(what)[:120]}); the test belongs in tests/tool"
    return f"binds a socket ({args[1] if len(args) > 1 else ''}): a server; the test belongs in tests/integration"


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event not in WATCHED or _Border.current is None:
        return
    problem = _describe(event, args)
    if problem is None:
        return
    who = _Border.current
    _Border.violations.setdefault(who, []).append(problem)
    raise TierViolation(f"{who} {problem} (tests/unit is pure logic: see tests/unit/conftest.py)")


if not getattr(sys, "_erpops_unit_border", False):  # one hook per process, even if this file is imported twice
    sys.addaudithook(_audit)
    sys._erpops_unit_border = True  # type: ignore[attr-defined]


def _in_unit_tier(path: Path) -> bool:
    return path.resolve().is_relative_to(UNIT_DIR)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """Importing a unit module (its top-level imports) is watched too."""
    watch = isinstance(collector, pytest.Module) and _in_unit_tier(collector.path)
    if watch:
        _Border.current = collector.nodeid
    try:
        report = yield
    finally:
        if watch:
            _Border.current = None
    problems = _Border.violations.pop(collector.nodeid, []) if watch else []
    if problems and report.outcome != "failed":
        report.outcome = "failed"
        report.longrepr = f"{collector.nodeid} " + "; ".join(problems)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    """Setup (higher-scoped fixtures included), call and teardown of a unit test are watched."""
    watch = _in_unit_tier(item.path)
    if watch:
        _Border.current = item.nodeid
    try:
        return (yield)
    finally:
        if watch:
            _Border.current = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None],
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A violation the test swallowed (`except Exception`) still fails it, in the phase it happened."""
    report = yield
    problems = _Border.violations.pop(item.nodeid, [])
    if problems and _in_unit_tier(item.path):
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid} " + "; ".join(problems)
    return report
