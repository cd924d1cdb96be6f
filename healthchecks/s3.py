"""S3 checks (boto3): the backup bucket answers, the newest complete set is within the RPO, and
no multipart upload was left half-done.

A backup set is complete when `<prefix>/sets/<set_id>/manifest.json` exists: the manifest is
written last. Its age is `erpops.created_at` (ISO 8601 UTC) inside it, or else the manifest
object's LastModified.
"""

from __future__ import annotations

import json
import os
import re
import threading
from datetime import UTC, datetime
from typing import Any

from healthchecks.core import Check, State, Targets, Thresholds, Unknown

Outcome = tuple[State, str, dict[str, float]]
_MANIFEST = re.compile(r"sets/(?P<set_id>[^/]+)/manifest\.json$")
_clients: dict[tuple[str | None, str | None, float], Any] = {}
_lock = threading.Lock()


def _client(t: Targets, th: Thresholds) -> Any:
    if not t.s3_bucket:
        raise Unknown("no S3 bucket given (--s3-bucket)")
    key = (t.s3_endpoint, t.s3_region, th.timeout)
    with _lock:  # boto3 session creation is not thread-safe; one client serves every S3 check
        if key not in _clients:
            import boto3
            from botocore.config import Config

            os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
            config = Config(connect_timeout=th.timeout, read_timeout=th.timeout,
                            retries={"max_attempts": 1, "mode": "standard"},
                            s3={"addressing_style": "path"} if t.s3_endpoint else {})
            _clients[key] = boto3.session.Session().client(
                "s3", endpoint_url=t.s3_endpoint, region_name=t.s3_region, config=config)
        return _clients[key]


def _call(what: str, fn: Any, **kwargs: Any) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(**kwargs)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise Unknown(f"{what}: {err.get('Code', '?')} {err.get('Message', '')}".strip()) from exc
    except BotoCoreError as exc:
        raise Unknown(f"{what}: {exc}") from exc


def _prefix(t: Targets) -> str:
    return f"{t.s3_prefix.strip('/')}/" if t.s3_prefix.strip("/") else ""


def bucket(t: Targets, th: Thresholds) -> Outcome:
    client = _client(t, th)
    _call(f"head_bucket {t.s3_bucket}", client.head_bucket, Bucket=t.s3_bucket)
    return State.OK, f"bucket {t.s3_bucket} reachable", {}


def _get_json(client: Any, t: Targets, key: str) -> Any:
    """The object's JSON, or None when it is not valid JSON (the caller says what that means)."""
    body = _call(f"get_object {key}", client.get_object, Bucket=t.s3_bucket, Key=key)["Body"].read()
    try:
        return json.loads(body)
    except ValueError:
        return None


def _created_at(doc: Any, last_modified: datetime) -> tuple[datetime, str] | None:
    """(erpops.created_at, or LastModified for a manifest without it), None when the manifest is not JSON."""
    if not isinstance(doc, dict):
        return None
    erpops = doc.get("erpops", {})
    stamp = erpops.get("created_at") if isinstance(erpops, dict) else None
    stamp = stamp or doc.get("erpops.created_at")
    if stamp:
        try:
            when = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
            return (when if when.tzinfo else when.replace(tzinfo=UTC)), "created_at"
        except ValueError:
            return None
    return last_modified, "LastModified (manifest has no erpops.created_at)"


# At most this many manifests are read (newest first) looking for one that is complete and not known bad.
_MAX_MANIFESTS_READ = 20


def backup_age(t: Targets, th: Thresholds) -> Outcome:
    """Age of the newest set that is complete (readable manifest) and not known bad (verify.json ok false).

    In-progress markers whose backup is dead (no heartbeat within MARKER_TTL, or a pid gone on
    this host) count as failed backups, not as running ones.
    """
    from erpops.backup.lease import owner_state

    client = _client(t, th)
    base = f"{_prefix(t)}sets/"
    manifests: list[tuple[datetime, str]] = []
    sets: set[str] = set()
    markers: dict[str, tuple[str, datetime]] = {}  # the engine keeps sets/<id>/in-progress.json while it writes
    verified: set[str] = set()
    token: dict[str, str] = {}
    while True:
        page = _call(f"list_objects_v2 s3://{t.s3_bucket}/{base}", client.list_objects_v2,
                     Bucket=t.s3_bucket, Prefix=base, **token)
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(base) - len("sets/"):]  # "sets/<set_id>/..."
            set_id = rel.split("/")[1] if rel.count("/") >= 2 else None
            if set_id:
                sets.add(set_id)
            if set_id and rel.endswith("/in-progress.json"):
                markers[set_id] = (obj["Key"], obj["LastModified"])
            if set_id and rel.endswith("/verify.json"):
                verified.add(set_id)
            if _MANIFEST.fullmatch(rel):
                manifests.append((obj["LastModified"], obj["Key"]))
        if not page.get("IsTruncated"):
            break
        token = {"ContinuationToken": page["NextContinuationToken"]}
    complete = {key.rsplit("/", 2)[-2] for _, key in manifests}
    now = datetime.now(UTC)
    running = {s for s, (key, modified) in markers.items() if s not in complete
               and owner_state(_get_json(client, t, key), now=now, modified=modified) == "live"}
    incomplete = len(sets - complete - running)
    metrics: dict[str, float] = {"complete_sets": len(manifests), "incomplete_sets": incomplete,
                                 "running_sets": len(running)}
    note = f"; {len(running)} backup(s) running" if running else ""
    note += f"; {incomplete} incomplete set(s) (failed or dead backups)" if incomplete > 0 else ""
    if not manifests:
        return State.CRIT, f"no complete backup set under s3://{t.s3_bucket}/{base}{note}", metrics
    # A manifest can be rewritten (e.g. verified later): order by created_at, read newest first.
    skipped: list[str] = []
    candidates: list[tuple[datetime, str, str]] = []
    for modified, key in sorted(manifests, reverse=True)[:_MAX_MANIFESTS_READ]:
        set_id = key.rsplit("/", 2)[-2]
        stamp = _created_at(_get_json(client, t, key), modified)
        if stamp is None:
            skipped.append(f"{set_id} (manifest unreadable)")
            continue
        candidates.append((stamp[0], set_id, stamp[1]))
    found = None
    for created, set_id, source in sorted(candidates, reverse=True):
        if set_id in verified:
            report = _get_json(client, t, f"{base}{set_id}/verify.json")
            if isinstance(report, dict) and report.get("ok") is False:
                skipped.append(f"{set_id} (failed verification)")
                continue
        found = (created, set_id, source)
        break
    if skipped:
        note += f"; not counted: {', '.join(skipped[:5])}"
        metrics["bad_sets"] = len(skipped)
    if found is None:
        return (State.CRIT, f"no usable backup set under s3://{t.s3_bucket}/{base}: the newest "
                f"{len(candidates) + len(skipped)} are unreadable or failed verification{note}", metrics)
    created, set_id, source = found
    age_min = (now - created).total_seconds() / 60
    level = th["backup_age_minutes"]
    metrics["age_minutes"] = round(age_min, 1)
    metrics["rpo_minutes"] = th.rpo_minutes
    return (level.grade(age_min),
            f"newest usable set {set_id} is {_human(age_min)} old ({source}); RPO {th.rpo_minutes:g} min "
            f"({level.describe()} min){note}", metrics)


def multipart(t: Targets, th: Thresholds) -> Outcome:
    client = _client(t, th)
    page = _call("list_multipart_uploads", client.list_multipart_uploads, Bucket=t.s3_bucket,
                 Prefix=_prefix(t))
    return grade_uploads(page.get("Uploads", []), datetime.now(UTC), th)


def grade_uploads(uploads: list[dict[str, Any]], now: datetime, th: Thresholds) -> Outcome:
    ages = [((now - u["Initiated"]).total_seconds() / 3600, u["Key"]) for u in uploads]
    level = th["s3_multipart_age_hours"]
    stale = sorted((a for a in ages if a[0] >= level.warn), reverse=True)
    metrics = {"uploads": len(uploads), "stale_uploads": len(stale)}
    if not stale:
        return State.OK, f"{len(uploads)} multipart upload(s) in progress, none older than {level.warn:g} h", metrics
    return (level.grade(stale[0][0]), f"{len(stale)} incomplete multipart upload(s) older than {level.warn:g} h, "
            f"oldest {stale[0][1]} ({stale[0][0]:.1f} h): they cost storage until aborted", metrics)


def _human(minutes: float) -> str:
    if minutes < 120:
        return f"{minutes:.0f} min"
    if minutes < 48 * 60:
        return f"{minutes / 60:.1f} h"
    return f"{minutes / 1440:.1f} days"


CHECKS = [Check("s3.bucket", bucket), Check("s3.backup_age", backup_age), Check("s3.multipart", multipart)]
