"""The module Job has one home (infra/chart.py): `erpops patch` applies the very object the program
registers, stack labels included (rendered by the real Helm engine)."""

from __future__ import annotations

from pathlib import Path

from erpops import spec
from erpops.helm_values import odoo_values
from erpops.naming import refs_for, stack_labels

ROOT = Path(__file__).resolve().parents[2]


def test_the_patchs_module_job_is_the_programs_with_the_stack_labels() -> None:
    from infra.chart import module_job_manifests, stack_module_job

    sized = spec.load("prod", ROOT)
    refs = refs_for(sized)
    job = stack_module_job(sized)
    assert stack_labels(refs).items() <= job["metadata"]["labels"].items()
    assert job in module_job_manifests(odoo_values(sized, refs), refs)
