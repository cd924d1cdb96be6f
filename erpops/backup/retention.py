"""Which sets to keep (grandfather-father-son), and pruning a target accordingly.

The rules are pure functions over (set id, creation time, verified?), so they are unit-tested
without storage:

- daily N: for the N most recent days that have a set, the newest set of each day;
- weekly N: for the N most recent ISO weeks that have a set, the newest set of each week;
- monthly N: for the N most recent calendar months that have a set, the newest set of each;
- the newest *verified* set is always kept, whatever the rules say: a prune can never leave a
  target without a set known to restore.

Days, weeks and months are UTC. prune() deletes what the plan drops (dry run unless apply=True):
the set's objects, then the filestore objects that no remaining set references. It also removes
incomplete sets (no manifest.json) older than `stale_after`, and aborts multipart uploads older
than that. While a backup is in progress (a recent incomplete set), filestore objects are not
collected: that backup may be about to reference objects no finished set references yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from erpops.backup import engine, lease
from erpops.backup import manifest as mf
from erpops.backup.progress import Reporter
from erpops.backup.storage import Target
from erpops.errors import ErpopsError

STALE_AFTER = timedelta(hours=24)


class RetentionRules(Protocol):
    daily: int
    weekly: int
    monthly: int


@dataclass(frozen=True)
class Rules:
    daily: int = 7
    weekly: int = 4
    monthly: int = 0


@dataclass(frozen=True)
class SetEntry:
    set_id: str
    created: datetime
    verified: bool | None = None  # None: never verified


@dataclass
class Decision:
    set_id: str
    created: datetime
    keep: bool = False
    reasons: list[str] = field(default_factory=list)


def _newest_per(entries: list[SetEntry], key: Any, count: int) -> dict[str, str]:
    """{set_id: bucket label} for the newest set in each of the `count` most recent buckets."""
    chosen: dict[str, str] = {}
    seen: set[Any] = set()
    for entry in entries:  # newest first
        bucket = key(entry.created)
        if bucket in seen:
            continue
        if len(seen) == count:
            break
        seen.add(bucket)
        chosen[entry.set_id] = str(bucket)
    return chosen


def plan(sets: Iterable[SetEntry], rules: RetentionRules) -> list[Decision]:
    """Keep/delete for every set, newest first, each kept set with the rules that keep it."""
    entries = sorted(sets, key=lambda e: (e.created, e.set_id), reverse=True)
    decisions = {e.set_id: Decision(e.set_id, e.created) for e in entries}

    def day(t: datetime) -> str:
        return t.astimezone(UTC).strftime("%Y-%m-%d")

    def week(t: datetime) -> str:
        iso = t.astimezone(UTC).isocalendar()
        return f"{iso.year}-W{iso.week:02d}"

    def month(t: datetime) -> str:
        return t.astimezone(UTC).strftime("%Y-%m")

    for name, key, count in (("daily", day, rules.daily), ("weekly", week, rules.weekly),
                             ("monthly", month, rules.monthly)):
        for set_id, bucket in _newest_per(entries, key, count).items():
            decisions[set_id].keep = True
            decisions[set_id].reasons.append(f"{name} {bucket}")
    newest_verified = next((e for e in entries if e.verified), None)
    if newest_verified is not None:
        d = decisions[newest_verified.set_id]
        d.keep = True
        d.reasons.append("newest verified set")
    return [decisions[e.set_id] for e in entries]


def unreferenced(stored: Iterable[str], kept: Iterable[mf.Manifest]) -> set[str]:
    """Filestore keys no kept set references."""
    referenced = {f.key for m in kept for f in m.filestore}
    return set(stored) - referenced


def prune(
    target: Target,
    rules: RetentionRules,
    *,
    apply: bool = False,
    now: datetime | None = None,
    stale_after: timedelta = STALE_AFTER,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Apply the retention plan to a target (dry run unless apply=True); returns what was (or would be) done."""
    reporter = reporter or Reporter()
    now = now or datetime.now(UTC)
    listing = engine.scan_sets(target)
    manifests: dict[str, mf.Manifest] = {}
    unreadable: list[str] = []
    entries = []
    for set_id in listing.complete:
        try:
            m = engine.load_manifest(target, set_id)
        except ErpopsError:
            unreadable.append(set_id)  # never deleted by rule: a human looks at it
            continue
        manifests[set_id] = m
        v = engine.read_verify(target, set_id)
        entries.append(SetEntry(set_id, m.created, None if v is None else bool(v.get("ok"))))
    decisions = plan(entries, rules)
    doomed = [d for d in decisions if not d.keep]
    kept = [manifests[d.set_id] for d in decisions if d.keep]

    backups = classify_incomplete(target, listing.incomplete, now=now, stale_after=stale_after)
    running = sorted(b for b, state in backups.items() if state == "live")
    stale = sorted(b for b, state in backups.items() if state != "live")

    fs_keys: set[str] = set()
    fs_bytes = 0
    stored: dict[str, int] = {}
    gc_note = None
    if running:
        gc_note = f"skipped: backup(s) in progress ({', '.join(running)})"
    elif unreadable:
        gc_note = f"skipped: unreadable manifest(s) ({', '.join(unreadable)}) may reference filestore objects"
    else:
        stored = {o.key: o.size for o in target.list_objects(f"{mf.FILESTORE}/")}
        fs_keys = unreferenced(stored, kept)
        fs_bytes = sum(stored[k] for k in fs_keys)
    # An unfinished upload is abandoned when its backup is dead, or when it is old and no backup is live.
    stale_uploads = [u for u in target.list_incomplete_uploads("") if _upload_abandoned(u, backups, now, stale_after)]

    result: dict[str, Any] = {
        "target": target.url,
        "apply": apply,
        "rules": {"daily": rules.daily, "weekly": rules.weekly, "monthly": rules.monthly},
        "keep": [{"set_id": d.set_id, "created_at": mf.utc_iso(d.created), "reasons": d.reasons}
                 for d in decisions if d.keep],
        "delete": [{"set_id": d.set_id, "created_at": mf.utc_iso(d.created)} for d in doomed],
        "incomplete_delete": sorted(stale),
        "in_progress": running,
        "dead_backups": {b: backups[b] for b in stale},
        "unreadable": unreadable,
        "filestore_delete": len(fs_keys),
        "filestore_bytes_freed": fs_bytes,
        "filestore_gc": gc_note or ("done" if apply else "planned"),
        "uploads_abort": len(stale_uploads),
    }
    if not apply:
        return result
    for set_id in [d.set_id for d in doomed] + stale:
        keys = list(target.list_keys(f"{mf.SETS}/{set_id}/"))
        # manifest.json first: a half-deleted set is then incomplete, never a broken "complete" one
        ordered = sorted(keys, key=lambda k: not k.endswith("/" + mf.MANIFEST))
        target.delete_many(ordered[:1])
        target.delete_many(ordered[1:])
        reporter.note(f"deleted set {set_id} ({len(keys)} objects)")
    if fs_keys:
        deleted, note = collect_filestore(target, sorted(fs_keys), stale_after=stale_after, reporter=reporter)
        if note:
            result["filestore_gc"] = note
        result["filestore_delete"] = len(deleted)
        result["filestore_bytes_freed"] = sum(stored[k] for k in deleted)
    for upload in stale_uploads:
        target.abort_upload(upload)
    return result


GC_BATCH = 1000


def classify_incomplete(target: Target, incomplete: dict[str, datetime | None], *, now: datetime,
                        stale_after: timedelta = STALE_AFTER) -> dict[str, str]:
    """{set id: 'live' | 'dead' | 'stale'} for every incomplete set, from its in-progress marker.

    'dead': the marker's pid is gone on this host; 'stale': no heartbeat within MARKER_TTL (or
    stale_after, when shorter; without a marker: older than stale_after). Only a live backup holds
    the GC back.
    """
    states = {}
    for set_id, marker_time in incomplete.items():
        info = lease.read_json(target, mf.set_key(set_id, mf.IN_PROGRESS)) if marker_time is not None else None
        if info is None:
            when = marker_time or mf.set_time(set_id)
            states[set_id] = "stale" if when is None or now - when > stale_after else "live"
        else:
            states[set_id] = lease.owner_state(info, now=now, modified=marker_time,
                                               ttl=min(lease.MARKER_TTL, stale_after))
    return states


def _upload_abandoned(upload: Any, backups: dict[str, str], now: datetime, stale_after: timedelta) -> bool:
    parts = upload.key.split("/")
    if len(parts) >= 3 and parts[0] == mf.SETS and parts[1] in backups:
        return backups[parts[1]] != "live"
    if any(state == "live" for state in backups.values()):
        return False  # a filestore upload may belong to a running backup
    return bool(now - upload.initiated > stale_after)


def collect_filestore(target: Target, keys: list[str], *, stale_after: timedelta = STALE_AFTER,
                      reporter: Reporter | None = None) -> tuple[list[str], str | None]:
    """Delete unreferenced filestore keys under the GC lease (erpops.backup.lease); (deleted, note or None).

    Before each batch the lease is refreshed and the in-progress markers are read again: a backup
    that started meanwhile stops the GC before it can lose an object that backup skipped.
    """
    gc = lease.acquire_gc_lease(target)
    if gc is None:
        held = lease.read_json(target, lease.LEASE_KEY) or {}
        return [], f"skipped: another prune's GC holds {target.child(lease.LEASE_KEY)} (pid {held.get('pid')} on " \
                  f"{held.get('host')})"
    deleted: list[str] = []
    note = None
    try:
        for start in range(0, len(keys), GC_BATCH):
            if not gc.refresh():
                note = "stopped: the GC lease was taken over (this prune stalled past its expiry)"
                break
            states = classify_incomplete(target, engine.scan_sets(target).incomplete, now=datetime.now(UTC),
                                         stale_after=stale_after)
            live = sorted(b for b, state in states.items() if state == "live")
            if live:
                note = f"stopped: a backup started during the prune ({', '.join(live)}); the rest goes next time"
                break
            batch = keys[start:start + GC_BATCH]
            target.delete_many(batch)
            deleted += batch
    finally:
        gc.release()
    if reporter is not None and deleted:
        reporter.note(f"deleted {len(deleted)} unreferenced filestore objects")
    return deleted, note
