"""The Ansible collection's files, read as files: generated inventories, docs, version (no Ansible run).

What runs ansible, ansible-doc, ansible-lint or the inventory generator is in tests/tool/test_playbooks_static.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "playbooks"
COLLECTION = PLAYBOOKS / "collections" / "ansible_collections" / "erpops" / "ops"
MODULES = sorted(p.stem for p in (COLLECTION / "plugins" / "modules").glob("erpops_*.py"))


def test_generated_inventory_holds_no_secret_values() -> None:
    for path in (PLAYBOOKS / "inventories").rglob("*.yml"):
        text = path.read_text()
        assert "password:" not in text and "secret_access_key:" not in text, path


@pytest.mark.parametrize("doc", ["README.md", "CHANGELOG.md"])
def test_collection_docs_list_every_module(doc: str) -> None:
    text = (COLLECTION / doc).read_text()
    missing = [m for m in MODULES if f"`{m}`" not in text and f"`erpops.ops.{m}`" not in text]
    assert missing == [], f"{doc} does not mention {missing}"


def test_collection_version_matches_its_changelog() -> None:
    import yaml

    version = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())["version"]
    assert f"## {version}" in (COLLECTION / "CHANGELOG.md").read_text()
