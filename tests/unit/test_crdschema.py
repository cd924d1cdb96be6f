"""infra.crdschema: CloudNativePG objects validated strictly, with the shared CRDs and with our own schema.

kubernetes-validate passes unknown kinds with a warning, so a typo in a Cluster would otherwise reach the
API server (or worse, be pruned silently). Each schema source must accept what erpops renders and reject
an unknown field.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from erpops import spec
from erpops.naming import refs_for, stack_labels
from infra import crdschema, derive
from tests import paths

ROOT = Path(__file__).resolve().parents[2]
STACKS = ["dev", "staging", "prod"]
# without the CRDs (../shared/crds), the project's own used-fields schema is still tested
SOURCES = [pytest.param("crds", marks=pytest.mark.needs_shared("crds")), "used-fields"]


def objects(stack: str) -> dict[str, dict[str, Any]]:
    """The Cluster, Pooler and ScheduledBackup erpops renders for a stack (built by the same functions)."""
    sized = spec.load(stack, ROOT)
    refs = refs_for(sized)

    def obj(kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "postgresql.cnpg.io/v1", "kind": kind,
                "metadata": {"name": name, "namespace": refs.namespace, "labels": stack_labels(refs)},
                "spec": body}

    return {
        "Cluster": obj("Cluster", refs.pg_cluster, derive.cluster_spec(sized, refs)),
        "Pooler": obj("Pooler", refs.pooler, derive.pooler_spec(sized, refs)),
        "ScheduledBackup": obj("ScheduledBackup", refs.scheduled_backup, derive.scheduled_backup_spec(sized, refs)),
    }


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("kind", crdschema.KINDS)
def test_what_erpops_renders_is_valid(source: str, stack: str, kind: str) -> None:
    assert crdschema.validate(objects(stack)[kind], source) == []


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(("path", "typo"), [
    (("spec", "postgresql"), "paramters"),
    (("spec",), "instance"),
    (("spec", "backup", "barmanObjectStore"), "endpointUrl"),
    (("metadata",), "lables"),
])
def test_an_unknown_field_in_a_cluster_fails(source: str, path: tuple[str, ...], typo: str) -> None:
    cluster = copy.deepcopy(objects("prod")["Cluster"])
    node = cluster
    for key in path:
        node = node[key]
    node[typo] = {}
    errors = crdschema.validate(cluster, source)
    assert errors, f"{'.'.join(path)}.{typo} passed the {source} schema"
    assert any(typo in e and ".".join(path) in e for e in errors), errors


@pytest.mark.parametrize("source", SOURCES)
def test_a_wrong_value_fails(source: str) -> None:
    cluster = copy.deepcopy(objects("prod")["Cluster"])
    cluster["spec"]["backup"]["barmanObjectStore"]["wal"]["compression"] = "zstandard"
    cluster["spec"]["instances"] = "three"
    errors = crdschema.validate(cluster, source)
    assert any("compression" in e for e in errors) and any("instances" in e for e in errors), errors


@pytest.mark.parametrize("source", SOURCES)
def test_an_unknown_field_in_the_pooler_pod_template_fails(source: str) -> None:
    pooler = copy.deepcopy(objects("prod")["Pooler"])
    pooler["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    assert crdschema.validate(pooler, source)
    pooler = copy.deepcopy(objects("prod")["Pooler"])
    pooler["spec"]["pgbouncer"]["poolmode"] = "session"
    assert crdschema.validate(pooler, source)


@pytest.mark.needs_shared("crds")
def test_the_committed_used_fields_schema_is_current() -> None:
    """infra/schemas/cnpg-used-fields.json equals what the generator makes from the CRDs and today's objects."""
    _, crds = crdschema.schemas("crds")
    rendered = [obj for stack in STACKS for obj in objects(stack).values()]
    expected = crdschema.used_fields_document(rendered, crds)
    committed = json.loads(crdschema.USED_FIELDS_SCHEMA.read_text())
    assert committed == json.loads(json.dumps(expected)), (
        "infra/schemas/cnpg-used-fields.json is stale: run `erpops render --out /tmp/r` then "
        "`python -m infra.crdschema --write-used-fields /tmp/r/*`")


def test_without_the_crds_the_own_schema_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERPOPS_CRDS_DIR", str(tmp_path))
    source, by_kind = crdschema.schemas()
    assert source == "used-fields" and set(by_kind) == set(crdschema.KINDS)
    with pytest.raises(FileNotFoundError, match="ERPOPS_CRDS_DIR"):
        crdschema.schemas("crds")


def test_non_cnpg_objects_are_left_to_kubernetes_validate() -> None:
    assert crdschema.validate({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}}) == []
    unknown = {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Backup", "metadata": {"name": "x"}, "spec": {}}
    assert crdschema.validate(unknown, "used-fields") == [
        "kind 'Backup' of postgresql.cnpg.io has no schema here (known: Cluster, Pooler, ScheduledBackup)"]


# --------------------------------------------------------------------------------------------
# convert(): the OpenAPI -> JSON Schema rules
# --------------------------------------------------------------------------------------------

def _ok(schema: dict[str, Any], value: Any) -> bool:
    import jsonschema

    return jsonschema.Draft202012Validator(schema).is_valid(value)


def test_properties_become_closed() -> None:
    s = crdschema.convert({"type": "object", "properties": {"a": {"type": "string"}}})
    assert _ok(s, {"a": "x"}) and not _ok(s, {"b": "x"})


def test_preserve_unknown_fields_stays_open() -> None:
    s = crdschema.convert({"type": "object", "properties": {"a": {"type": "string"}},
                           "x-kubernetes-preserve-unknown-fields": True})
    assert _ok(s, {"b": 1})


def test_int_or_string_takes_both_and_nothing_else() -> None:
    s = crdschema.convert({"x-kubernetes-int-or-string": True})
    assert _ok(s, 5) and _ok(s, "50%") and not _ok(s, 1.5) and not _ok(s, None)
    s = crdschema.convert({"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True})
    assert _ok(s, 5) and _ok(s, "1Gi") and not _ok(s, [])


def test_nullable_also_takes_null() -> None:
    s = crdschema.convert({"type": "string", "nullable": True, "enum": ["a"]})
    assert _ok(s, "a") and _ok(s, None) and not _ok(s, "b")
    assert not _ok(crdschema.convert({"type": "string"}), None)


def test_maps_keep_their_value_schema() -> None:
    s = crdschema.convert({"type": "object", "additionalProperties": {"type": "string"}})
    assert _ok(s, {"work_mem": "4MB"}) and not _ok(s, {"work_mem": 4})


def test_the_tests_look_for_the_crds_where_the_schema_code_does(monkeypatch: pytest.MonkeyPatch) -> None:
    assert crdschema.crds_dir() == paths.crds_dir()
    monkeypatch.setenv("ERPOPS_CRDS_DIR", "/elsewhere/crds")
    assert crdschema.crds_dir() == paths.crds_dir() == Path("/elsewhere/crds")
