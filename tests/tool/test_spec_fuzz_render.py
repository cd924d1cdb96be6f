"""The fuzzed and the edge-case specs of tests/unit/test_spec_fuzz.py, through `render`: the Pulumi program
under mocks and the helm/odoo chart in the real Helm engine. A spec the validator lets through must render;
one it refuses must be refused by render with a key path, never a traceback.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from erpops.errors import SpecError
from tests.unit.test_spec_fuzz import _FUZZ, RENDER_EXAMPLES, ROOT, mutated, project, shipped


@settings(_FUZZ, max_examples=RENDER_EXAMPLES)
@given(case=mutated())
def test_render_answers_a_spec_error_or_renders(case: tuple[str, dict[str, Any]]) -> None:
    from infra import render

    stack, raw = case
    with tempfile.TemporaryDirectory() as tmp:
        root = project(Path(tmp), stack, raw)
        for linked in ("infra", "helm", "images"):
            (root / linked).symlink_to(ROOT / linked)
        try:
            rendered = render.render(stack, root)
        except SpecError as exc:
            assert exc.problems and all(path for path, _ in exc.problems), str(exc)
        else:
            assert rendered.manifests, "rendered nothing"


# Values at the documented bounds: the validator lets them through, so render (the program and the chart)
# must build them; a refusal here would be a rule the validator is missing.
EDGES = [("postgres.storage", "64Ti"), ("odoo.web.cpu", "250m"), ("kubernetes.host", "a" * 63 + ".example.com")]


@pytest.mark.parametrize(("path", "value"), EDGES, ids=[p for p, _ in EDGES])
def test_a_value_at_its_bound_renders(path: str, value: str, tmp_path: Path) -> None:
    from infra import render

    raw = copy.deepcopy(shipped("prod"))
    node = raw
    *parents, leaf = path.split(".")
    for key in parents:
        node = node[key]
    node[leaf] = value
    root = project(tmp_path, "prod", raw)
    for linked in ("infra", "helm", "images"):
        (root / linked).symlink_to(ROOT / linked)
    rendered = render.render("prod", root)
    objects = json.dumps([*rendered.manifests, *rendered.chart_objects])
    assert f'"{value}"' in objects, f"{path} {value} is not in what would be applied"
