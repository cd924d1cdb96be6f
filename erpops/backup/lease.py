"""Backups and prune's filestore GC on one target, with no server-side locking (plain S3).

The filestore is content-addressed and shared: a backup *skips* an object that is already
stored, and prune's GC *deletes* objects no complete set references. Without coordination a GC
that is deleting while a backup starts lets the backup skip objects that vanish a moment later,
and the backup then writes a manifest over missing objects (a "complete" set that cannot
restore). The protocol, in the order each side acts:

    backup                                   GC (prune --apply)
    1. write sets/<id>/in_progress.json      1. write locks/gc-lease.json (token, pid, host, expiry)
    2. read locks/gc-lease.json; while a     2. list in-progress markers; any live one: release the
       live lease exists, wait                  lease, skip GC
    3. list filestore/, decide what to skip  3. delete in batches; before each batch refresh the
    4. copy; list filestore/ again and          lease and list the markers again: a new live
       re-upload any skipped object that        marker stops the GC
       is gone                               4. delete the lease (only if it is still ours)
    5. write the manifest, drop the marker

S3 has been strongly consistent for PUT, GET and LIST since December 2020 (and so are MinIO and
Ceph RGW): of two writers that each write their own key and then read the other's, at least one
sees the other. So either the GC sees the backup's marker and stops before its next batch, or
the backup sees the lease and waits until the GC is done: it never lists the filestore while a
GC that missed it is deleting. Step 4 of the backup covers what the protocol cannot: a GC that
stalled past its lease's expiry.

A marker is live while its heartbeat is younger than MARKER_TTL, and dead at once when it names
a pid gone on this host. A lease is live until it expires (dead at once when its pid is gone
here). Prune and health say which.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from erpops.errors import BackupError, ErpopsError, UsageError

LEASE_KEY = "locks/gc-lease.json"
LEASE_TTL = timedelta(minutes=10)
# A backup rewrites its in-progress marker this often; a marker older than MARKER_TTL is dead.
HEARTBEAT = timedelta(minutes=1)
MARKER_TTL = timedelta(minutes=15)
WAIT_POLL_SECONDS = 1.0


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_state(info: dict[str, Any] | None, *, now: datetime | None = None,
                modified: datetime | None = None, ttl: timedelta = MARKER_TTL) -> str:
    """'live', 'dead' (its pid is gone on this host) or 'stale' (no heartbeat within ttl) for a marker/lease."""
    now = now or _now()
    info = info or {}
    beat = _parse(info.get("heartbeat_at")) or _parse(info.get("started_at")) or modified
    expires = _parse(info.get("expires_at"))
    host, pid = info.get("host"), info.get("pid")
    here = host == socket.gethostname() and isinstance(pid, int)
    if here and not pid_alive(pid):
        return "dead"
    if expires is not None:  # a lease: live until it expires, however alive its owner
        return "live" if now < expires else "stale"
    # A marker: its backup beats while it runs. A process that lives on after its backup failed
    # (a long-lived caller) stops beating, so a live pid alone does not keep the marker live.
    if beat is None or now - beat > ttl:
        return "stale"
    return "live"


def read_json(target: Any, key: str) -> dict[str, Any] | None:
    try:
        data = json.loads(target.get_bytes(key))
    except UsageError:
        return None
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# ------------------------------------------------------------------------------------------------
# The GC side
# ------------------------------------------------------------------------------------------------


@dataclass
class GcLease:
    target: Any
    token: str
    ttl: timedelta = LEASE_TTL

    def _body(self) -> bytes:
        now = _now()
        return json.dumps({"token": self.token, "pid": os.getpid(), "host": socket.gethostname(),
                           "heartbeat_at": _iso(now), "expires_at": _iso(now + self.ttl)}).encode()

    def refresh(self) -> bool:
        """Extend the lease; False when it is no longer ours (taken over after it expired)."""
        current = read_json(self.target, LEASE_KEY)
        if not current or current.get("token") != self.token:
            return False
        self.target.put_bytes(LEASE_KEY, self._body())
        return True

    def release(self) -> None:
        current = read_json(self.target, LEASE_KEY)
        if current is not None and current.get("token") == self.token:
            self.target.delete(LEASE_KEY)


def acquire_gc_lease(target: Any, ttl: timedelta = LEASE_TTL) -> GcLease | None:
    """Write the GC lease; None when another live GC holds it."""
    current = read_json(target, LEASE_KEY)
    if current and owner_state(current) == "live":
        return None
    lease = GcLease(target, secrets.token_hex(8), ttl)
    target.put_bytes(LEASE_KEY, lease._body())
    return lease


# ------------------------------------------------------------------------------------------------
# The backup side
# ------------------------------------------------------------------------------------------------


def wait_for_gc(target: Any, *, note: Callable[[str], None] | None = None,
                timeout: float = 2 * LEASE_TTL.total_seconds()) -> float:
    """Block while a live GC lease exists (call after writing the in-progress marker); seconds waited.

    A GC sees the marker before its next batch and ends; a GC that died leaves a lease that goes
    stale at its expiry (at once if it ran on this host). BackupError after timeout.
    """
    started = time.monotonic()
    told = False
    while True:
        current = read_json(target, LEASE_KEY)
        if not current or owner_state(current) != "live":
            return time.monotonic() - started
        if not told and note is not None:
            note(f"prune's filestore GC is running on {current.get('host')} (pid {current.get('pid')}): "
                 "waiting for it to see this backup and stop")
            told = True
        if time.monotonic() - started > timeout:
            raise BackupError(f"prune's filestore GC on {current.get('host')} (pid {current.get('pid')}) has held "
                              f"{target.child(LEASE_KEY)} for over {timeout:.0f} s; the backup did not start its "
                              "filestore copy. Wait for the prune to end, or delete that key if no prune runs")
        time.sleep(WAIT_POLL_SECONDS)


class Heartbeat:
    """Rewrites a backup's in-progress marker every `every` so that others can tell it is alive."""

    def __init__(self, target: Any, key: str, info: dict[str, Any], every: timedelta = HEARTBEAT) -> None:
        self.target, self.key, self.info = target, key, dict(info)
        self.every = every.total_seconds()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="erpops-heartbeat", daemon=True)

    def body(self) -> bytes:
        return json.dumps({**self.info, "heartbeat_at": _iso(_now())}).encode()

    def start(self) -> Heartbeat:
        self.target.put_bytes(self.key, self.body())
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.target.put_bytes(self.key, self.body())
            except ErpopsError:
                continue  # a missed beat is harmless; the marker stays live until MARKER_TTL

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)


__all__ = ["HEARTBEAT", "LEASE_KEY", "LEASE_TTL", "MARKER_TTL", "GcLease", "Heartbeat", "acquire_gc_lease",
           "owner_state", "pid_alive", "read_json", "wait_for_gc"]
