"""Never a traceback on input: the shipped stack files, mutated, answer exit 0 or exit 2 with a key path.

Hypothesis mutates `Pulumi.{dev,staging,prod}.yaml` (types, signs, sizes, unicode, missing and extra
keys) and runs `erpops spec validate --stack S` and `erpops size --stack S` (in process, through the
console entry point's `main`); tests/tool/test_spec_fuzz_render.py feeds the same cases to `render`
(fewer examples: it runs the Pulumi program and the chart). Derandomized, with a bounded number of
examples, so `./run test` stays quick and the same on every run; ERPOPS_FUZZ_EXAMPLES=500
ERPOPS_FUZZ_RANDOM=1 makes a longer, random hunt.
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erpops import cli, spec

ROOT = Path(__file__).resolve().parents[2]
STACKS = ("dev", "staging", "prod")
EXAMPLES = int(os.environ.get("ERPOPS_FUZZ_EXAMPLES", "40"))
RENDER_EXAMPLES = max(3, EXAMPLES // 15)
DELETE = object()
EXTRA = object()


def shipped(stack: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"][spec.SPEC_KEY]


def key_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += key_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += key_paths(value, (*prefix, i))
    return out


PATHS = {stack: key_paths(shipped(stack)) for stack in STACKS}

odd_strings = st.sampled_from([
    "", " ", "0", "-1", "1e9", "1e-9", "0m", "-500m", "1Pi", "9999999Ti", "99 99 * * *", "@daily", "* * * * * *",
    "Ünïcødé", "ﬀ", "a" * 300, "erpops-prod", "kube-system", "Fast_SSD", "^(", "%d", "null", "17.0", "[]",
    "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "https://u:p@x.example.com",
    "203.0.113.1/33", "host:99999", "0 0 30 2 *",
])
values = st.one_of(
    st.just(DELETE), st.just(EXTRA), st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40), odd_strings,
    st.lists(st.one_of(st.integers(-5, 5), st.text(max_size=5)), max_size=3),
    st.dictionaries(st.text(max_size=6), st.one_of(st.integers(-5, 5), st.text(max_size=5)), max_size=2),
)


def walk(node: Any, path: tuple[Any, ...]) -> Any:
    """The node at `path`, or None when an earlier mutation removed or replaced part of the way."""
    for key in path:
        present = (key in node) if isinstance(node, dict) else (
            isinstance(node, list) and isinstance(key, int) and key < len(node))
        if not present:
            return None
        node = node[key]
    return node


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    stack = draw(st.sampled_from(STACKS))
    raw = copy.deepcopy(shipped(stack))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS[stack]))
        value = draw(values)
        node = walk(raw, path[:-1])
        if not isinstance(node, dict | list):
            continue
        leaf = path[-1]
        if isinstance(node, list):
            if not isinstance(leaf, int) or leaf >= len(node):
                continue
            if value is DELETE:
                node.pop(leaf)
            else:
                node[leaf] = "extra" if value is EXTRA else value
        elif value is DELETE:
            node.pop(leaf, None)
        elif value is EXTRA:
            node[f"{leaf}_extra"] = draw(st.integers(0, 3))
        else:
            node[leaf] = value
    return stack, raw


def write(root: Path, stack: str, raw: Any) -> None:
    (root / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": {spec.SPEC_KEY: raw}}, allow_unicode=True))


def project(directory: Path, stack: str, raw: Any) -> Path:
    (directory / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    for other in STACKS:
        if other != stack:
            (directory / f"Pulumi.{other}.yaml").write_text((ROOT / f"Pulumi.{other}.yaml").read_text())
    write(directory, stack, raw)
    return directory


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    argv = sys.argv
    sys.argv = ["erpops", *args]
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return code, captured.err


def assert_answered(code: int, err: str, what: str) -> None:
    assert "Traceback" not in err, f"{what}: a traceback\n{err}"
    assert code in (0, 2), f"{what}: exit {code}\n{err}"
    if code == 2:
        assert "invalid erpops spec" in err, f"{what}: exit 2 without the spec's report\n{err}"
        lines = [line for line in err.splitlines() if line.startswith("  - ")]
        assert lines and all(":" in line[4:] for line in lines), f"{what}: a problem without a key path\n{err}"


_FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="ERPOPS_FUZZ_RANDOM" not in os.environ,
                 database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@_FUZZ
@given(case=mutated())
def test_validate_and_size_answer_exit_0_or_2_with_a_key_path(case: tuple[str, dict[str, Any]],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    stack, raw = case
    with tempfile.TemporaryDirectory() as tmp:
        root = project(Path(tmp), stack, raw)
        for command in (["spec", "validate", "--stack", stack], ["size", "--stack", stack, "--json"]):
            code, err = run(["--root", str(root), *command], capsys)
            assert_answered(code, err, " ".join(command))
