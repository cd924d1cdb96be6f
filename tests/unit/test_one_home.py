"""One home for each fact of a stack: each test finds the fact's single definition and, where it can, checks
that every reader gets the same answer from it."""

from __future__ import annotations

import ast
import inspect
from functools import cache
from pathlib import Path

import pytest

from erpops import spec
from erpops.helm_values import odoo_resources, odoo_values
from erpops.naming import refs_for, stack_backup_target
from tests.sources import nodes

ROOT = Path(__file__).resolve().parents[2]
STACKS = ["dev", "staging", "prod"]
# the project's runtime code: where a fact may be defined (tests, benchmarks and devtools only read it)
RUNTIME = ("erpops", "infra", "healthchecks", "loadtests", "playbooks")


def _sources() -> list[Path]:
    return sorted(p for d in RUNTIME for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts)


@cache
def _strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string in the code, docstrings left out (f-strings by their literal parts)."""
    docstrings = {id(node.body[0].value) for node in nodes(path)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in nodes(path)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def _where(predicate: object) -> list[str]:
    """Files (and lines) of the runtime code where predicate(node) holds."""
    found = []
    for path in _sources():
        found += [f"{path.relative_to(ROOT)}:{node.lineno}" for node in nodes(path) if predicate(node)]  # type: ignore[operator]
    return found


def _defines(name: str) -> list[str]:
    return [f.rsplit(":", 1)[0] for f in _where(
        lambda n: isinstance(n, ast.FunctionDef | ast.ClassDef) and n.name == name)]


@pytest.fixture(scope="module", params=STACKS)
def sized(request: pytest.FixtureRequest) -> spec.Sized:
    return spec.load(request.param, ROOT)


# ---- naming contract and labels ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["Refs", "refs_for", "stack_labels", "BackupTarget", "stack_backup_target"])
def test_the_naming_contract_is_defined_in_erpops_naming_only(name: str) -> None:
    assert _defines(name) == ["erpops/naming.py"]


def test_the_stack_labels_are_written_in_one_place() -> None:
    found = [f"{p.relative_to(ROOT)}:{line}" for p in _sources()
             for line, text in _strings(p) if text == "app.kubernetes.io/managed-by"]
    assert [f.split(":")[0] for f in found] == ["erpops/naming.py"], found


# ---- the stack's backup target ------------------------------------------------------------------------

def test_the_backup_target_url_is_built_in_one_place() -> None:
    """No other `f"s3://{...backup_bucket}/{stack}"`: the CNPG WAL archive (`/postgres/`) is another place."""
    def builds_it(node: ast.AST) -> bool:
        if not isinstance(node, ast.JoinedStr) or not node.values:
            return False
        head = node.values[0]
        names = {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
        tail = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
        return (isinstance(head, ast.Constant) and head.value == "s3://" and "backup_bucket" in names
                and "postgres" not in tail)
    assert [f.split(":")[0] for f in _where(builds_it)] == ["erpops/naming.py"]


def test_every_reader_of_the_backup_target_gets_the_same_one(sized: spec.Sized) -> None:
    import sys

    sys.path.insert(0, str(ROOT / "playbooks"))
    try:
        from inventory_from_spec import group_vars
    finally:
        sys.path.remove(str(ROOT / "playbooks"))
    target = stack_backup_target(sized.spec, sized.stack)
    assert target.url == f"s3://{sized.spec.object_storage.backup_bucket}/{sized.stack}"
    inventory = group_vars(sized)
    assert (inventory["erpops_backup_target"], inventory["erpops_s3_endpoint_url"], inventory["erpops_s3_region"]) \
        == (target.url, target.endpoint_url, target.region)


# ---- the module Job -------------------------------------------------------------------------------

def test_the_module_job_template_is_rendered_from_one_module() -> None:
    found = [f"{p.relative_to(ROOT)}:{line}" for p in _sources()
             for line, text in _strings(p) if "job-modules.yaml" in text]
    assert [f.split(":")[0] for f in found] == ["infra/chart.py"], found


# ---- the namespace quota reads the spec, not the chart's values ------------------------------------------

def test_the_quota_takes_the_spec_only() -> None:
    from infra import derive

    for fn in (derive.pod_groups, derive.resource_quota, derive.limit_range):
        assert list(inspect.signature(fn).parameters) == ["sized"], fn.__name__


def test_the_quota_and_the_chart_size_the_odoo_pods_alike(sized: spec.Sized) -> None:
    from infra import derive

    values = odoo_values(sized, refs_for(sized))
    resources = odoo_resources(sized)
    assert values["web"]["resources"] == resources["web"]
    assert values["cron"]["resources"] == resources["cron"]
    assert values["moduleJob"]["resources"] == resources["module_job"]
    web = next(g for g in derive.pod_groups(sized) if g.name == "odoo-web")
    limits = resources["web"]["limits"]
    from erpops.units import mib, parse_cpu

    assert (web.cpu_limit_m, web.memory_limit_mib) == (round(parse_cpu(limits["cpu"]) * 1000), mib(limits["memory"]))


# ---- the image reference pattern ----------------------------------------------------------------------

def test_the_image_pattern_is_written_once() -> None:
    found = [f"{p.relative_to(ROOT)}:{line}" for p in _sources()
             for line, text in _strings(p) if "sha256:[a-f0-9]{64}" in text]
    assert [f.split(":")[0] for f in found] == ["erpops/spec_types.py"], found


@pytest.mark.parametrize(("image", "pinned"), [
    ("odoo:17.0-20261120", True), ("registry.example.com:5000/acme/odoo:17.0-20261120", True),
    ("odoo@sha256:" + "a" * 64, True), ("odoo", False), ("odoo:latest", False), ("odoo@sha256:abc", False),
    ("Odoo:17.0", False),
])
def test_the_spec_and_patch_agree_on_what_pins_an_image(image: str, pinned: bool) -> None:
    import copy

    from erpops.errors import SpecError, UsageError
    from erpops.patch import check_image

    path = spec.stack_file(ROOT, "dev")
    raw = copy.deepcopy(spec.read_raw(path))
    raw["odoo"]["image"] = image
    try:
        spec.validate(raw, "dev", str(path), root=ROOT)
        spec_accepts = True
    except SpecError as exc:
        assert "odoo.image" in str(exc), str(exc)
        spec_accepts = False
    try:
        check_image(image)
        patch_accepts = True
    except UsageError:
        patch_accepts = False
    assert (spec_accepts, patch_accepts) == (pinned, pinned)


# ---- shared options, exit codes, database create/drop, the local servers' start loop --------------------

@pytest.mark.parametrize("flag", ["--target", "--endpoint-url", "--region"])
def test_the_backup_target_options_are_declared_once(flag: str) -> None:
    def declares(node: ast.AST) -> bool:
        return (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "option"
                and bool(node.args) and isinstance(node.args[0], ast.Constant) and node.args[0].value == flag)
    assert [f.split(":")[0] for f in _where(declares)] == ["erpops/options.py"]


def test_exit_codes_are_numbered_in_erpops_errors_only() -> None:
    def numbers_one(node: ast.AST) -> bool:
        targets = node.targets if isinstance(node, ast.Assign) else []
        names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        return any(name.startswith("EXIT_") for name in names)
    assert sorted({f.split(":")[0] for f in _where(numbers_one)}) == ["erpops/errors.py"]


def test_databases_are_created_and_dropped_in_one_place() -> None:
    found = [f"{p.relative_to(ROOT)}:{line}" for p in _sources() if p.is_relative_to(ROOT / "erpops")
             for line, text in _strings(p)
             if text.lstrip().upper().startswith(("CREATE DATABASE ", "DROP DATABASE "))]
    assert sorted({f.split(":")[0] for f in found}) == ["erpops/pg.py"], found


def test_the_local_servers_share_one_start_loop() -> None:
    for name in ("postgres", "redis", "s3"):
        source = (ROOT / "erpops" / "local" / f"{name}.py").read_text()
        assert "_start_on_free_port(" in source and "for attempt in range" not in source, name
