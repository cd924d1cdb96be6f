"""`erpops verify`: re-read a set and check it against its manifest; deep: restore it into a scratch database."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zstandard

from erpops.backup import leftovers
from erpops.backup import manifest as mf
from erpops.backup.dump import drop_database, row_counts, side_name
from erpops.backup.filestore import DEFAULT_WORKERS, each_file, where
from erpops.backup.progress import Reporter
from erpops.backup.restore import check_stream, plan_dump_restore, restore_dump_into
from erpops.backup.sets import load_manifest
from erpops.backup.storage import CHUNK, HashingReader, Reader, Target
from erpops.errors import BackupError, ErpopsError, IntegrityError, ServiceError, UsageError
from erpops.pg import Pg


def verify_artifacts(
    target: Target, manifest: mf.Manifest, reporter: Reporter, workers: int = DEFAULT_WORKERS,
    *, filestore: bool = True, artifacts: bool = True,
) -> tuple[list[str], int]:
    """Re-read every artifact (decompressing it) and filestore object; (problems, bytes read).

    filestore=False checks the database dump only (a restore that skips the filestore);
    artifacts=False the filestore only (a deep verify checks the dump as it restores it).
    """
    problems: list[str] = []
    total = 0
    for a in manifest.artifacts if artifacts else []:
        task = reporter.task(f"verify {a.name}", total=a.size)
        try:
            with task, target.get_stream(a.key) as body:
                stored = HashingReader(body, on_bytes=task.advance)
                if a.compression == "zstd":
                    raw = HashingReader(zstandard.ZstdDecompressor().stream_reader(stored, read_size=CHUNK,
                                                                                   closefd=False))
                    raw.drain()
                else:
                    stored.drain()
                    raw = stored
                total += stored.size
            check_stream(target, a, stored, raw)
        except IntegrityError as exc:
            problems.append(str(exc))
        except UsageError:
            problems.append(f"{target.child(a.key)} is missing")
        except zstandard.ZstdError as exc:
            problems.append(f"{target.child(a.key)} does not decompress ({exc}): the stored bytes are damaged")
    files = manifest.filestore if filestore else []
    task = reporter.task("verify filestore", total=sum(f.size for f in files)) if files else None

    def one(f: mf.FilestoreFile, body: Reader) -> str | None:
        r = HashingReader(body, sha1=True, on_bytes=task.advance if task else None)
        r.drain()
        if (r.sha1, r.sha256, r.size) != (f.sha1, f.sha256, f.size):
            return (f"{where(target, f)} is damaged: {r.size} bytes, sha1 {r.sha1}; expected {f.size} bytes, "
                    f"sha1 {f.sha1}")
        return None

    def missing(f: mf.FilestoreFile, _exc: UsageError) -> str:
        return f"{target.child(f.key)} is missing (file {f.path})"

    if task is not None:
        with task:
            problems += [p for p in each_file(target, files, one, missing, workers) if p]
    return problems, total + sum(f.size for f in files)


def verify(
    target: Target,
    set_id: str,
    *,
    deep: bool = False,
    pg: Pg | None = None,
    jobs: int = 2,
    work_dir: Path | None = None,
    workers: int = DEFAULT_WORKERS,
    reporter: Reporter | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """Check a set against its manifest; write verify.json; return the report (never raises on findings).

    deep=True also restores the dump into a scratch database, compares the row counts with the
    manifest's and drops the scratch database.
    """
    reporter = reporter or Reporter()
    started = time.monotonic()
    manifest = load_manifest(target, set_id)
    # deep: the dump is decompressed once, by the restore, which checks every byte against the manifest
    problems, read_bytes = verify_artifacts(target, manifest, reporter, workers, artifacts=not deep)
    report: dict[str, Any] = {
        "set_id": set_id,
        "target": target.url,
        "verified_at": mf.utc_iso(datetime.now(UTC)),
        "ok": not problems,
        "deep": deep,
        "problems": problems,
        "checked": {"artifacts": len(manifest.artifacts), "filestore_files": len(manifest.filestore),
                    "bytes": read_bytes},
    }
    if deep:
        if pg is None:
            raise UsageError("a deep verify needs a PostgreSQL server to restore into (PGHOST/PGPORT/PGUSER)")
        if problems:
            report["deep_skipped"] = "stored objects are damaged: nothing was restored"
        else:
            leftovers.sweep(pg, [work_dir], note=reporter.note)
            scratch = side_name(manifest.db_name or "set", "verify", secrets.token_hex(3))
            plan = plan_dump_restore(manifest, jobs, work_dir)
            reporter.note(f"deep verify: restoring into scratch database {scratch} ({plan.note})")
            try:
                try:
                    restore_dump_into(target, manifest, pg, scratch, plan, reporter)
                finally:
                    report["checked"]["bytes"] += manifest.dump.size
                actual = row_counts(pg, scratch)
                report["row_counts"] = actual
                if manifest.row_counts:
                    problems += mf.row_count_problems(manifest.row_counts, actual)
                else:
                    report["note"] = "the set records no row counts (imported from an Odoo zip): restore checked only"
            except IntegrityError as exc:
                problems.append(str(exc))  # the stored dump is damaged
            except (BackupError, ServiceError) as exc:
                problems.append(f"restoring into a scratch database failed: {exc}")
            finally:
                with contextlib.suppress(ErpopsError):
                    drop_database(pg, scratch)
            report["ok"] = not problems
    report["duration_seconds"] = round(time.monotonic() - started, 3)
    if write:
        target.put_bytes(mf.set_key(set_id, mf.VERIFY), json.dumps(report, indent=1).encode())
    return report

