"""Issue 13, where a tool answers: the inventory generator (a child process), `render` and the Pulumi
program under mocks must refuse exactly the specs `erpops spec validate` refuses, with the same lines.

The validator's own cases are in tests/unit/test_spec_issue13.py.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from erpops.errors import SpecError
from tests.unit.test_spec_issue13 import AWS_SECRET, ROOT, problem_lines, project, put, raw_spec, run_cli


def test_the_inventory_refuses_a_bucket_shared_with_a_sibling(tmp_path: Path) -> None:
    import subprocess

    raw = copy.deepcopy(raw_spec("dev"))
    put(raw, "object_storage.filestore_bucket", raw_spec("prod")["object_storage"]["backup_bucket"])
    root = project(tmp_path, "dev", raw)
    proc = subprocess.run([sys.executable, str(ROOT / "playbooks" / "inventory_from_spec.py"), "--root", str(root),
                           "--out", str(tmp_path / "inventories")], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 2, proc.stderr
    assert "object_storage.filestore_bucket: 'acme-erpops-prod-backups' is also used by stack prod" in proc.stderr
    assert not (tmp_path / "inventories").exists(), "a refused spec must write nothing"


SAME_REFUSAL = [
    ("prod", "kubernetes.tls_secret", "Erp_TLS"),
    ("dev", "kubernetes.ingress_namespace", "erpops-prod"),
    ("dev", "monitoring.namespace", "kube-system"),
    ("staging", "object_storage.backup_bucket", "acme-erpops-prod-backups"),
    ("prod", "tier", "staging"),
    ("dev", "odoo.web.cpu", -2),
    ("dev", "odoo.dbfilter", "^nope$"),
    ("staging", "kubernetes.context", AWS_SECRET),
]


@pytest.mark.parametrize(("stack", "path", "value"), SAME_REFUSAL, ids=[f"{s}-{p}" for s, p, _ in SAME_REFUSAL])
def test_validate_render_and_the_program_refuse_alike(
    stack: str, path: str, value: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import pulumi

    from infra import render

    raw = copy.deepcopy(raw_spec(stack))
    put(raw, path, value)
    root = project(tmp_path, stack, raw)
    code, _, err = run_cli(["--root", str(root), "spec", "validate", "--stack", stack], monkeypatch, capsys)
    assert code == 2
    refused = problem_lines(err)
    assert any(line.startswith(f"  - {path}: ") for line in refused), err

    with pytest.raises(SpecError) as by_render:
        render.render(stack, root)
    assert problem_lines(str(by_render.value)) == refused

    # the program itself, as `pulumi up` runs it: this project's stack files beside it
    with pytest.raises(pulumi.RunError) as by_program:
        render.run_program(ROOT, stack, {"erpops:spec": json.dumps(raw)}, [])
    assert problem_lines(str(by_program.value)) == refused
