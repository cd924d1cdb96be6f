"""The unit tier's guard (tests/unit/conftest.py) catches what it says it catches, and only in tests/unit.

A throwaway project with a copy of the guard, run by pytest in a child process (a fresh interpreter, so
that the first import of a tool SDK is the test's own): every way across the border fails its test, a
swallowed violation too; a pure test passes; the same code under tests/tool is left alone.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

GUARD = Path(__file__).resolve().parents[1] / "unit" / "conftest.py"

CASES = '''
import os
import socket
import subprocess

import pytest


@pytest.fixture(scope="session")
def started_once():
    return subprocess.run(["true"], check=False).returncode


def test_pure():
    assert sum(range(4)) == 6


def test_subprocess_run():
    subprocess.run(["true"], check=False)


def test_os_system():
    os.system("true")


def test_a_swallowed_violation_still_fails():
    try:
        subprocess.run(["true"], check=False)
    except Exception:
        pass


def test_a_session_fixture_that_starts_a_process(started_once):
    pass


def test_importing_a_tool_sdk():
    import helm_python  # noqa: F401


def test_binding_a_server_socket():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
'''


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("border")
    (root / "pytest.ini").write_text("[pytest]\n")
    unit, tool = root / "tests" / "unit", root / "tests" / "tool"
    unit.mkdir(parents=True)
    tool.mkdir()
    shutil.copy(GUARD, unit / "conftest.py")
    (unit / "test_cases.py").write_text(CASES)
    (unit / "test_at_import.py").write_text("import subprocess\nsubprocess.run(['true'])\n\ndef test_x():\n    pass\n")
    (tool / "test_free.py").write_text(textwrap.dedent('''
        import subprocess

        def test_a_tool_test_may_start_a_process():
            assert subprocess.run(["true"], check=False).returncode == 0
    '''))
    argv = [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", "--continue-on-collection-errors",
            "tests/unit", "tests/tool"]
    done = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=300, check=False)
    found = dict((name, state) for state, name in
                 re.findall(r"^(PASSED|FAILED|ERROR) (\S+)", done.stdout, flags=re.MULTILINE))
    assert found, done.stdout + done.stderr
    return {**found, "_output": done.stdout}


@pytest.mark.parametrize(("test", "state"), [
    ("tests/unit/test_cases.py::test_pure", "PASSED"),
    ("tests/unit/test_cases.py::test_subprocess_run", "FAILED"),
    ("tests/unit/test_cases.py::test_os_system", "FAILED"),
    ("tests/unit/test_cases.py::test_a_swallowed_violation_still_fails", "FAILED"),
    ("tests/unit/test_cases.py::test_a_session_fixture_that_starts_a_process", "ERROR"),
    ("tests/unit/test_cases.py::test_importing_a_tool_sdk", "FAILED"),
    ("tests/unit/test_cases.py::test_binding_a_server_socket", "FAILED"),
    ("tests/unit/test_at_import.py", "ERROR"),
    ("tests/tool/test_free.py::test_a_tool_test_may_start_a_process", "PASSED"),
])
def test_the_border_holds(outcomes: dict[str, str], test: str, state: str) -> None:
    assert outcomes.get(test) == state, outcomes["_output"]


def test_a_violation_says_what_and_where_it_belongs(outcomes: dict[str, str]) -> None:
    out = outcomes["_output"]
    assert "test_subprocess_run starts a process (subprocess.Popen: true); the test belongs in tests/tool" in out
    assert "test_importing_a_tool_sdk imports helm_python: a tool SDK; the test belongs in tests/tool" in out
    assert "binds a socket (('127.0.0.1', 0)): a server; the test belongs in tests/integration" in out
