"""Finding backup sets on a target and reading their manifests (complete = manifest.json present)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from erpops.backup import manifest as mf
from erpops.backup.storage import Target
from erpops.errors import IntegrityError, UsageError


@dataclass
class SetListing:
    complete: list[str] = field(default_factory=list)
    incomplete: dict[str, datetime | None] = field(default_factory=dict)  # id -> in-progress marker time


def scan_sets(target: Target) -> SetListing:
    """Every set id under sets/, split into complete (manifest present) and incomplete."""
    keys: dict[str, set[str]] = {}
    times: dict[str, datetime] = {}
    for obj in target.list_objects(f"{mf.SETS}/"):
        parts = obj.key.split("/")
        if len(parts) == 3:
            keys.setdefault(parts[1], set()).add(parts[2])
            if parts[2] == mf.IN_PROGRESS:
                times[parts[1]] = obj.modified
    listing = SetListing()
    for set_id, names in keys.items():
        if mf.MANIFEST in names:
            listing.complete.append(set_id)
        else:
            listing.incomplete[set_id] = times.get(set_id)
    listing.complete.sort(key=lambda s: (mf.set_time(s) or datetime.min.replace(tzinfo=UTC), s), reverse=True)
    return listing


def load_manifest(target: Target, set_id: str) -> mf.Manifest:
    """The parsed manifest of a complete set; UsageError naming how to find sets otherwise."""
    key = mf.set_key(set_id, mf.MANIFEST)
    if len(set_id) > 200:
        raise UsageError(f"{set_id[:40]}... ({len(set_id)} characters) is not a backup set id: set ids look like "
                         f"prod-mfg-20261129T181500Z-3fa2b1; list them with `erpops list --target {target.url}`")
    if "/" in set_id or not set_id or target.head(key) is None:
        if set_id and "/" not in set_id and any(True for _ in target.list_keys(f"{mf.SETS}/{set_id}/")):
            raise UsageError(f"set {set_id} in {target.url} is incomplete (no manifest.json): its backup failed "
                             "or is still running; it cannot be restored. List restorable sets with "
                             f"`erpops list --target {target.url}`")
        raise UsageError(f"no backup set {set_id!r} in {target.url}: list the sets with "
                         f"`erpops list --target {target.url}`")
    raw = target.get_bytes(key)
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise IntegrityError(f"{target.child(key)} is not valid JSON ({exc})") from exc
    manifest = mf.Manifest.from_dict(data, target.child(key))
    if manifest.set_id != set_id:
        raise IntegrityError(f"{target.child(key)} describes set {manifest.set_id}, not {set_id}")
    return manifest


def read_verify(target: Target, set_id: str) -> dict[str, Any] | None:
    key = mf.set_key(set_id, mf.VERIFY)
    if target.head(key) is None:
        return None
    try:
        data = json.loads(target.get_bytes(key))
    except ValueError:
        return {"ok": False, "problems": ["verify.json is not valid JSON"]}
    return data if isinstance(data, dict) else None


def list_sets(target: Target, *, now: datetime | None = None, db: str | None = None) -> list[dict[str, Any]]:
    """Complete sets, newest first, each with its verified status and age."""
    now = now or datetime.now(UTC)
    out = []
    for set_id in scan_sets(target).complete:
        try:
            m = load_manifest(target, set_id)
        except IntegrityError as exc:
            out.append({"set_id": set_id, "ok": False, "error": str(exc)})
            continue
        if db and m.db_name != db:
            continue
        v = read_verify(target, set_id)
        out.append({
            "set_id": set_id,
            "db": m.db_name,
            "stack": m.stack,
            "created_at": m.created_at,
            "age_hours": round((now - m.created).total_seconds() / 3600, 2),
            "odoo_version": m.odoo_version,
            "pg_server_version": m.pg_server_version,
            "dump_bytes": m.dump.size,
            "filestore_files": len(m.filestore),
            "filestore_bytes": m.filestore_bytes,
            "neutralized": m.neutralized,
            "verified": None if v is None else bool(v.get("ok")),
            "verified_at": None if v is None else v.get("verified_at"),
            "verified_deep": None if v is None else bool(v.get("deep")),
        })
    out.sort(key=lambda s: s.get("created_at") or "", reverse=True)
    return out

