"""Strict JSON Schemas for CloudNativePG objects, because kubernetes-validate passes unknown kinds.

`convert()` turns a CRD's `openAPIV3Schema` into a JSON Schema jsonschema can enforce strictly:
  - `x-kubernetes-int-or-string` -> string or integer
  - `nullable: true`             -> null is allowed too
  - `additionalProperties: false` wherever `properties` are listed and
    `x-kubernetes-preserve-unknown-fields` is not set (so `spec.postgresql.paramters` fails)
  - top-level `metadata` (just `type: object` in a CRD) -> the ObjectMeta fields a manifest may carry.
CEL rules (`x-kubernetes-validations`) are not evaluated: the API server does that.

The CRDs are read from $ERPOPS_CRDS_DIR, else `<project>/../shared/crds/cloudnative-pg`. Where they are
absent, the project's own strict schema of the fields it uses is used instead:
`infra/schemas/cnpg-used-fields.json`, made by `prune()` from the CRDs and the rendered objects
(`python -m infra.crdschema --write-used-fields <rendered dir>...`).
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import yaml

GROUP = "postgresql.cnpg.io"
KINDS = ("Cluster", "Pooler", "ScheduledBackup")
PROJECT_ROOT = Path(__file__).resolve().parents[1]  # infra/ -> the project
USED_FIELDS_SCHEMA = PROJECT_ROOT / "infra" / "schemas" / "cnpg-used-fields.json"
# Prometheus Operator's PodMonitor: no CRD is at hand, so the project's own strict schema of what it renders
PROMETHEUS_GROUP = "monitoring.coreos.com"
POD_MONITOR_SCHEMA = PROJECT_ROOT / "infra" / "schemas" / "podmonitor-used-fields.json"
PROMETHEUS_SCHEMAS = {"PodMonitor": POD_MONITOR_SCHEMA,
                      "ServiceMonitor": PROJECT_ROOT / "infra" / "schemas" / "servicemonitor-used-fields.json",
                      "PrometheusRule": PROJECT_ROOT / "infra" / "schemas" / "prometheusrule-used-fields.json"}

# Keys of an OpenAPI v3 schema that mean the same in JSON Schema and are kept
_KEEP = ("type", "enum", "format", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
         "minLength", "maxLength", "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties",
         "required", "default", "multipleOf")

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
OBJECT_META: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 253},
        "generateName": {"type": "string"},
        "namespace": {"type": "string", "maxLength": 63},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
    },
}


def crds_dir() -> Path:
    env = os.environ.get("ERPOPS_CRDS_DIR")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "crds" / "cloudnative-pg"


def convert(node: Any) -> Any:
    """One OpenAPI v3 (structural) schema node -> a strict JSON Schema node."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {k: copy.deepcopy(node[k]) for k in _KEEP if k in node}
    preserve = bool(node.get("x-kubernetes-preserve-unknown-fields"))
    if "properties" in node:
        out["properties"] = {k: convert(v) for k, v in node["properties"].items()}
        if node.get("x-kubernetes-embedded-resource"):
            for key in ("apiVersion", "kind"):
                out["properties"].setdefault(key, {"type": "string"})
            out["properties"].setdefault("metadata", {"type": "object"})
    if "items" in node:
        out["items"] = convert(node["items"])
    if "additionalProperties" in node:
        ap = node["additionalProperties"]
        out["additionalProperties"] = convert(ap) if isinstance(ap, dict) else ap
    elif "properties" in node and not preserve:
        out["additionalProperties"] = False
    for key in ("anyOf", "allOf", "oneOf"):
        if key in node:
            out[key] = [convert(x) for x in node[key]]
    if "not" in node:
        out["not"] = convert(node["not"])
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        if "anyOf" not in out:
            out["type"] = ["integer", "string"]
    if node.get("nullable"):
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        elif isinstance(kind, list) and "null" not in kind:
            out["type"] = [*kind, "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        for key in ("anyOf", "oneOf"):
            if key in out:
                out[key] = [*out[key], {"type": "null"}]
    return out


def crd_schema(crd: dict[str, Any], version: str = "v1") -> dict[str, Any]:
    """The strict JSON Schema of one served version of a CRD, apiVersion/kind pinned."""
    names = crd["spec"]["names"]
    group = crd["spec"]["group"]
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    if version not in versions:
        raise KeyError(f"{names['kind']} CRD serves no version {version} (has {', '.join(versions)})")
    schema = convert(versions[version]["schema"]["openAPIV3Schema"])
    schema["properties"]["apiVersion"] = {"const": f"{group}/{version}"}
    schema["properties"]["kind"] = {"const": names["kind"]}
    schema["properties"]["metadata"] = copy.deepcopy(OBJECT_META)
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    schema["additionalProperties"] = False
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"{names['kind']}.{group}/{version} (strict, from the CRD)"
    return schema


@cache
def schemas_from_crds(directory: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        # the C loader: the three CRDs are 1 MB of YAML
        for doc in yaml.load_all(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition" \
                    and doc["spec"]["group"] == GROUP:
                out[doc["spec"]["names"]["kind"]] = crd_schema(doc)
    return out


@cache
def schemas_used_fields(path: str = str(USED_FIELDS_SCHEMA)) -> dict[str, dict[str, Any]]:
    return json.loads(Path(path).read_text())["kinds"]


def schemas(source: str = "auto") -> tuple[str, dict[str, dict[str, Any]]]:
    """("crds" | "used-fields", {kind: schema}). `auto` prefers the CRDs and falls back to our own."""
    directory = crds_dir()
    if source in ("auto", "crds") and any(directory.glob("*.yaml")):
        return "crds", schemas_from_crds(str(directory))
    if source == "crds":
        raise FileNotFoundError(f"no CloudNativePG CRDs in {directory}: set ERPOPS_CRDS_DIR")
    return "used-fields", schemas_used_fields()


def is_cnpg(obj: dict[str, Any]) -> bool:
    return str(obj.get("apiVersion", "")).startswith(f"{GROUP}/")


def is_prometheus(obj: dict[str, Any]) -> bool:
    return str(obj.get("apiVersion", "")).startswith(f"{PROMETHEUS_GROUP}/")


def is_custom(obj: dict[str, Any]) -> bool:
    """An object of a CRD this module validates (kubernetes-validate has no schema for it)."""
    return is_cnpg(obj) or is_prometheus(obj)


def validate(obj: dict[str, Any], source: str = "auto") -> list[str]:
    """Every schema violation of one CloudNativePG object, as "path: message"; [] if valid or not CNPG."""
    import jsonschema

    if is_prometheus(obj):
        if obj.get("kind") not in PROMETHEUS_SCHEMAS:
            return [f"kind {obj.get('kind')!r} of {PROMETHEUS_GROUP} has no schema here "
                    f"(known: {', '.join(PROMETHEUS_SCHEMAS)})"]
        schema = json.loads(PROMETHEUS_SCHEMAS[obj["kind"]].read_text())
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(obj), key=lambda e: list(e.absolute_path))
        return [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors]
    if not is_cnpg(obj):
        return []
    _, by_kind = schemas(source)
    kind = obj.get("kind")
    if kind not in by_kind:
        return [f"kind {kind!r} of {GROUP} has no schema here (known: {', '.join(sorted(by_kind))})"]
    validator = jsonschema.Draft202012Validator(by_kind[kind])
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors]


# --------------------------------------------------------------------------------------------
# Our own schema: the CRDs' strict schema pruned to the fields erpops renders
# --------------------------------------------------------------------------------------------

def prune(schema: dict[str, Any], instances: Iterable[Any]) -> dict[str, Any]:
    """`schema` keeping only the properties some instance uses; every kept object stays strict.

    Fields we never set are thereby rejected too, which is what a fallback should do: a new field must be
    added to the schema deliberately (re-run the generator), not slip through.
    """
    instances = list(instances)
    out = {k: v for k, v in schema.items() if k not in ("properties", "items", "anyOf", "allOf", "oneOf")}
    for key in ("anyOf", "allOf", "oneOf"):
        if key in schema:
            out[key] = schema[key]
    if "properties" in schema:
        used = {k for inst in instances if isinstance(inst, dict) for k in inst}
        out["properties"] = {
            k: prune(v, [inst[k] for inst in instances if isinstance(inst, dict) and k in inst])
            for k, v in schema["properties"].items() if k in used
        }
        out["required"] = [k for k in schema.get("required", []) if k in out["properties"]] or None
        if out["required"] is None:
            out.pop("required")
    if "items" in schema:
        items = [x for inst in instances if isinstance(inst, list) for x in inst]
        out["items"] = prune(schema["items"], items)
    return out


def used_fields_document(objects: Iterable[dict[str, Any]], crd_schemas: dict[str, dict[str, Any]]) -> dict:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        if is_cnpg(obj):
            by_kind.setdefault(obj["kind"], []).append(obj)
    kinds = {}
    for kind, instances in sorted(by_kind.items()):
        pruned = prune(crd_schemas[kind], instances)
        pruned["title"] = f"{kind}.{GROUP}/v1: the fields erpops uses (strict; generated by infra.crdschema)"
        pruned["properties"]["metadata"] = copy.deepcopy(OBJECT_META)
        kinds[kind] = pruned
    return {
        "description": "Strict JSON Schemas of the CloudNativePG fields erpops renders, pruned from the CRDs "
                       "(shared/crds/cloudnative-pg). Used when the CRDs are absent. Regenerate with: "
                       "python -m infra.crdschema --write-used-fields <render dir>...",
        "kinds": kinds,
    }


def _rendered_objects(directories: list[Path]) -> list[dict[str, Any]]:
    objects = []
    for directory in directories:
        for path in sorted(directory.rglob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if isinstance(doc, dict) and is_cnpg(doc):
                    objects.append(doc)
    return objects


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m infra.crdschema", description=__doc__.splitlines()[0])
    parser.add_argument("--write-used-fields", nargs="+", type=Path, metavar="RENDER_DIR",
                        help="regenerate infra/schemas/cnpg-used-fields.json from rendered stacks")
    parser.add_argument("--validate", nargs="+", type=Path, metavar="RENDER_DIR",
                        help="validate the CloudNativePG objects of rendered stacks")
    args = parser.parse_args(argv)
    if args.write_used_fields:
        source, crd = schemas("crds")
        doc = used_fields_document(_rendered_objects(args.write_used_fields), crd)
        USED_FIELDS_SCHEMA.parent.mkdir(parents=True, exist_ok=True)
        USED_FIELDS_SCHEMA.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        print(f"wrote {USED_FIELDS_SCHEMA} ({', '.join(doc['kinds'])}) from {source}")
    if args.validate:
        source, _ = schemas()
        failed = 0
        for obj in _rendered_objects(args.validate):
            errors = validate(obj)
            failed += bool(errors)
            for err in errors:
                print(f"{obj['kind']} {obj['metadata'].get('name')}: {err}", file=sys.stderr)
        print(f"validated with the {source} schemas: {failed} invalid object(s)")
        return 1 if failed else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
