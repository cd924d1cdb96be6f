"""images/odoo and the pinned versions around it: what can be checked without a Docker engine.

The image itself is not built here (no engine on these machines); these tests prove that the build is
fully pinned, that the spec and the build agree on the addons it carries, that its tag follows its
content, and that the CloudNativePG pins match the CRDs the renders are checked against.
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import pytest
import yaml

from erpops import image as odoo_image
from erpops import spec
from infra import derive
from tests import paths

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)==(?P<version>[0-9][0-9A-Za-z.+-]*) --hash=sha256:[0-9a-f]{64}$")


@pytest.mark.parametrize("series", sorted(spec.BUILT_ADDONS))
def test_every_package_the_image_installs_is_pinned_with_its_hash(series: str) -> None:
    lines = [ln for ln in (odoo_image.IMAGE_DIR / f"requirements-{series}.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines
    bad = [ln for ln in lines if not PIN.match(ln)]
    assert bad == [], f"not pinned to a version and hash: {bad}"
    names = [PIN.match(ln)["name"].lower().replace("_", "-") for ln in lines]
    assert len(names) == len(set(names)), "a package pinned twice"
    # the addons' own Python dependencies (their wheels' Requires-Dist) and s3fs for the s3 protocol
    assert {"fsspec", "s3fs", "python-slugify", "botocore", "aiobotocore"} <= set(names)


@pytest.mark.parametrize("series", sorted(spec.BUILT_ADDONS))
def test_the_spec_and_the_build_agree_on_the_addons(series: str) -> None:
    assert sorted(odoo_image.pinned_addons(series)) == sorted(spec.BUILT_ADDONS[series])
    for line in (odoo_image.IMAGE_DIR / f"requirements-{series}.txt").read_text().splitlines():
        if line.startswith("odoo-addon-"):
            assert f"=={series}." in line, f"{line}: not an addon release for Odoo {series}"


def test_the_dockerfile_floats_nothing() -> None:
    text = (odoo_image.IMAGE_DIR / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms == ["${ODOO_IMAGE}"], "the base must be the spec's pinned odoo.image"
    assert re.search(r"^ARG ODOO_IMAGE$", text, re.M), "no default base that could float"
    pip = re.search(r"pip install ([^\n]*(?:\\\n[^\n]*)*)", text)
    assert pip and all(flag in pip.group(1) for flag in ("--require-hashes", "--no-deps", "--only-binary=:all:"))
    assert "apt-get" not in text and ":latest" not in text
    # the build fails when an addon is missing or a pinned module does not import beside the image's own
    assert "__manifest__.py" in text and "import s3fs" in text
    assert text.rstrip().splitlines()[-1] == "USER odoo"


def test_the_built_tag_follows_the_build_context_and_the_base(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    sized = spec.load("prod", ROOT)
    before = odoo_image.odoo_image(sized)
    assert before.built and before.repository == sized.spec.image.build.repository
    assert before.tag.startswith("17.0-20241010-erpops-")
    copy_dir = tmp_path / "odoo"
    shutil.copytree(odoo_image.IMAGE_DIR, copy_dir)
    monkeypatch.setattr(odoo_image, "IMAGE_DIR", copy_dir)
    assert odoo_image.odoo_image(sized).tag == before.tag
    req = copy_dir / "requirements-17.0.txt"
    req.write_text(req.read_text().replace("python-slugify==9.2.0", "python-slugify==9.1.0"))
    assert odoo_image.odoo_image(sized).tag != before.tag
    monkeypatch.setattr(odoo_image, "IMAGE_DIR", ROOT / "images" / "odoo")
    raw = copy.deepcopy(yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"][spec.SPEC_KEY])
    raw["odoo"]["image"] = "odoo:17.0-20250101"
    assert odoo_image.odoo_image(spec.validate(raw, "prod")).tag.startswith("17.0-20250101-erpops-")


def test_the_cnpg_operator_pin_matches_the_crds_the_renders_are_checked_against() -> None:
    readme = paths.require(paths.CRDS_README, "The CloudNativePG CRDs' README (it names the operator version)")
    (version,) = set(re.findall(r"\bv(\d+\.\d+\.\d+)\b", readme.read_text()))
    assert version == derive.CNPG_OPERATOR_VERSION
    assert derive.CNPG_CHART["version"] == "0.29.0"  # the chart whose appVersion is 1.30.0


def test_postgres_images_and_operator_chart_are_overridable_in_the_spec() -> None:
    raw = copy.deepcopy(yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"][spec.SPEC_KEY])
    sized = spec.validate(raw, "prod")
    assert derive.cluster_spec(sized, _refs(sized))["imageName"] == "ghcr.io/cloudnative-pg/postgresql:15.18"
    assert derive.cnpg_chart(sized)["version"] == derive.CNPG_CHART["version"]
    raw["cnpg"] = {"image": "registry.example.com/pg/postgresql:15.19-standard-trixie",
                   "operator_chart_version": "0.29.1"}
    sized = spec.validate(raw, "prod")
    assert derive.cluster_spec(sized, _refs(sized))["imageName"] == raw["cnpg"]["image"]
    assert derive.cnpg_chart(sized)["version"] == "0.29.1"


def _refs(sized: spec.Sized):
    from erpops.naming import refs_for

    return refs_for(sized)


def test_an_18_0_stack_builds_from_its_own_pinned_set() -> None:
    raw = copy.deepcopy(yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"][spec.SPEC_KEY])
    raw["odoo"].update(version="18.0", image="odoo:18.0-20250101")
    sized = spec.validate(raw, "prod")
    assert odoo_image.build_args(sized) == {"ODOO_IMAGE": "odoo:18.0-20250101", "ODOO_SERIES": "18.0"}
    assert all(p.exists() for p in odoo_image.context_files("18.0"))
    assert odoo_image.odoo_image(sized).tag.startswith("18.0-20250101-erpops-")
