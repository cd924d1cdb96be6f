"""The filestore side of a set: Odoo's `<db>/xx/<sha1>` files copied into the target's content-addressed
`filestore/` (shared by every set), and written back on restore, every byte checked on the way."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import threading
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from erpops.backup import manifest as mf
from erpops.backup.progress import Reporter
from erpops.backup.sets import load_manifest, scan_sets
from erpops.backup.storage import (
    CHUNK,
    FileTarget,
    HashingReader,
    MiB,
    Reader,
    S3Target,
    Target,
    Window,
    parse_url,
    read_full,
)
from erpops.errors import IntegrityError, UsageError

DEFAULT_WORKERS = 8  # transfers in flight where one end is S3: each waits mostly on the network
POLL = 0.25  # seconds between checks for a signal while waiting on worker threads (wait_interruptibly)
# Where the target packs small files (S3: packs_small_files), a file up to PACK_MAX_FILE goes into a pack, and a
# pack is stored once it holds PACK_BYTES: at most PACK_BYTES + PACK_MAX_FILE, below the 8 MiB part size, so one PUT.
# 4 MiB: a PUT per 4 MiB costs little CPU, and the two packs in memory stay small beside the dump's parts.
PACK_MAX_FILE = 1 * MiB
PACK_BYTES = 4 * MiB


def filestore_source(spec: str, db: str, *, endpoint_url: str | None = None, region: str | None = None) -> Target:
    """Odoo's filestore of db: `<root>/<db>/xx/<sha1>` under a local root or an s3:// prefix."""
    if spec.startswith("s3://"):
        _, bucket, prefix = parse_url(spec)
        return S3Target(bucket, f"{prefix}/{db}".strip("/"), endpoint_url=endpoint_url, region=region)
    root = Path(spec.removeprefix("file://"))
    if not root.is_dir():
        raise UsageError(f"filestore root {root} does not exist: pass Odoo's data_dir/filestore (it holds one "
                         "directory per database)")
    return FileTarget(root / db)


def transfer_workers(source: Target, target: Target, workers: int | None) -> int:
    """The filestore transfers to run at once: `workers` when given; else DEFAULT_WORKERS where an end is S3
    (requests wait on the network), and one more than the usable cores where both ends are local files.

    A local copy is bound by CPU (two hashes a byte) and system calls; more threads than cores only hand
    the GIL and the directories' locks to each other. Measured on 2 cores, beside the dump (3.9 GB database,
    20,000 files, 2.1 GB): 8 threads 25.7-29.7 s with 13-19 s of system CPU, 3 threads 22.4-23.1 s. The A/B is
    `benchmarks/local_ab.py workers`.
    """
    if workers is not None:
        return workers
    if isinstance(source, FileTarget) and isinstance(target, FileTarget):
        return min(DEFAULT_WORKERS, usable_cores() + 1)
    return DEFAULT_WORKERS


def usable_cores() -> int:
    """The cores this process may run on (a container's cpuset, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def wait_interruptibly(futures: list[Future[Any]]) -> None:
    """Wait until every future is done or one has failed, in bounded waits.

    The main thread acts on a signal (Ctrl-C, SIGTERM) only when it runs Python code: one long wait
    would not notice a signal that the kernel handed to a worker thread until the wait ended. One event
    set by the futures' callbacks (not concurrent.futures.wait, which installs a waiter on every pending
    future at each call: 20,000 files made that a CPU-second in itself).
    """
    lock, ended = threading.Lock(), threading.Event()
    left = len(futures)

    def one_done(f: Future[Any]) -> None:
        nonlocal left
        with lock:
            left -= 1
            last = left == 0
        if last or (not f.cancelled() and f.exception() is not None):
            ended.set()

    for f in futures:
        f.add_done_callback(one_done)
    while futures and not ended.wait(POLL):
        pass


def run_parallel(items: list[Any], fn: Callable[[Any], Any], workers: int) -> list[Any]:
    """fn over items on a thread pool; the first exception cancels what has not started and is raised."""
    if not items:
        return []
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="erpops-fs") as pool:
        futures: list[Future[Any]] = []
        try:
            # Queued inside the try: Ctrl-C while the first transfers already run and the rest are being
            # queued must drop those too (the pool's own exit would wait for every queued one)
            futures.extend(pool.submit(fn, item) for item in items)
            wait_interruptibly(futures)
        except BaseException:
            # Ctrl-C or SIGTERM: drop the queued transfers, let only the running ones (<= workers) end
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        failed = next((f for f in futures if f.done() and not f.cancelled() and f.exception() is not None), None)
        if failed is not None:
            pool.shutdown(wait=True, cancel_futures=True)
            raise failed.exception()  # type: ignore[misc]
        return [f.result() for f in futures]


@dataclass
class FilestoreCopy:
    files: list[mf.FilestoreFile]
    uploaded: int
    skipped: int
    ignored: list[str]
    packs: int = 0  # pack objects stored (S3 targets)


class Stopped(Exception):
    """The filestore copy was told to stop (the dump beside it failed)."""


class Packer:
    """Gathers small files into pack objects: one request per pack instead of one per file.

    A pack is the members' bytes end to end; the manifest records each file's pack and offset, so a
    file stays restorable alone (one ranged read). A pack is named by a sha256 over its members'
    sha256 and sizes: content-addressed like every filestore object, without hashing the bytes again.
    Packs are stored without waiting for an fsync (durable=False), like the loose objects: the
    manifest, written last, is what makes them part of a set.
    """

    def __init__(self, target: Target, limit: int | None = None) -> None:
        self._target, self._limit = target, limit or PACK_BYTES
        self._lock = threading.Lock()
        # Sealed packs waiting or being stored: each holds its bytes about twice while it is joined (the members,
        # then the pack itself), so two bound the memory (a third add waits here)
        self._slots = threading.BoundedSemaphore(2)
        self._number, self._size = 0, 0
        self._chunks: list[bytes] = []
        self._name = hashlib.sha256()
        self.names: dict[int, str] = {}  # pack number -> its key, once stored

    def add(self, data: bytes, sha256: str) -> tuple[int, int]:
        """Append one file's bytes; (pack number, offset). The pack is stored by the call that fills it."""
        with self._lock:
            where = (self._number, self._size)
            self._chunks.append(data)
            self._size += len(data)
            self._name.update(bytes.fromhex(sha256) + len(data).to_bytes(8, "big"))
            if self._size < self._limit:
                return where
            self._slots.acquire()
            full = self._take()
        self._store(*full)
        return where

    def close(self) -> None:
        """Store the last, partly filled pack."""
        with self._lock:
            if not self._chunks:
                return
            self._slots.acquire()
            last = self._take()
        self._store(*last)

    @property
    def stored(self) -> int:
        return len(self.names)

    def _take(self) -> tuple[int, list[bytes], str]:
        taken = (self._number, self._chunks, self._name.hexdigest())
        self._number, self._size, self._chunks, self._name = self._number + 1, 0, [], hashlib.sha256()
        return taken

    def _store(self, number: int, chunks: list[bytes], name: str) -> None:
        """Store one sealed pack; gives its slot back (taken by the caller when it sealed it)."""
        try:
            key = mf.pack_key(name)
            data = b"".join(chunks)
            chunks.clear()  # the members' bytes go now, not when the pack is stored
            self._target.put_bytes(key, data, digest=False, durable=False)
            self.names[number] = key  # one key each, set by one thread: no lock needed
        finally:
            self._slots.release()


def where(target: Target, f: mf.FilestoreFile) -> str:
    """The stored place of a file, as messages name it: its object, or its range of a pack."""
    if f.pack is None:
        return target.child(f.key)
    return f"{target.child(f.key)} at {f.offset} (file {f.path})"


def open_file(target: Target, f: mf.FilestoreFile) -> contextlib.AbstractContextManager[Reader]:
    """The bytes of one filestore file: its own object, or its range of a pack. UsageError when missing."""
    if f.pack is None:
        return target.get_stream(f.key)
    return target.get_range(f.key, f.offset or 0, f.size)


def each_file(
    target: Target, files: list[mf.FilestoreFile], fn: Callable[[mf.FilestoreFile, Reader], Any],
    missing: Callable[[mf.FilestoreFile, UsageError], Any], workers: int,
) -> list[Any]:
    """fn(file, its bytes) for every file, on `workers` threads; each pack is read once, front to back.

    missing(file, error) answers for a file whose object is gone (fn's and missing's exceptions propagate).
    """
    loose = [f for f in files if f.pack is None]
    packs: dict[str, list[mf.FilestoreFile]] = {}
    for f in files:
        if f.pack is not None:
            packs.setdefault(f.pack, []).append(f)

    def one(f: mf.FilestoreFile) -> list[Any]:
        try:
            with target.get_stream(f.key) as body:
                return [fn(f, body)]
        except UsageError as exc:
            return [missing(f, exc)]

    def pack(members: list[mf.FilestoreFile]) -> list[Any]:
        members = sorted(members, key=lambda f: f.offset or 0)
        out = []
        try:
            with target.get_stream(members[0].key) as body:
                at = 0
                for f in members:
                    offset = f.offset or 0
                    if offset < at:  # overlapping entries: a malformed manifest, read that one alone
                        with open_file(target, f) as alone:
                            out.append(fn(f, alone))
                        continue
                    while at < offset and (skipped := len(body.read(min(CHUNK, offset - at)))):
                        at += skipped
                    window = Window(body, f.size)
                    out.append(fn(f, window))
                    while window.read(CHUNK):  # what fn left unread
                        pass
                    at = offset + f.size - window.left
        except UsageError as exc:
            return out + [missing(f, exc) for f in members[len(out):]]
        return out

    jobs: list[Callable[[], list[Any]]] = [lambda f=f: one(f) for f in loose]
    jobs += [lambda m=m: pack(m) for m in packs.values()]
    return [r for batch in run_parallel(jobs, lambda job: job(), workers) for r in batch]


def mtime_us(obj: Any) -> int:
    return round(obj.modified.timestamp() * 1_000_000)


def copy_filestore(
    source: Target, target: Target, reporter: Reporter, workers: int = DEFAULT_WORKERS, *,
    previous: dict[str, mf.FilestoreFile] | None = None, stop: threading.Event | None = None,
) -> FilestoreCopy:
    """Copy `xx/<sha1>` files into target's content-addressed filestore/, checking each sha1.

    Every byte read is hashed once (sha1 for the name check, sha256 for the manifest) and the
    object is stored without hashing it again. Where the target packs small files (S3), a file of
    up to PACK_MAX_FILE is stored in a pack object with others (Packer). What is not read or not
    uploaded:
    - a file `previous` (the last complete set of this database) lists with the same path, size
      and mtime, whose object (or pack) is still stored: neither read nor uploaded, its sums and
      place are taken from there. The trade-off: a file changed in place without a change of size or
      mtime (Odoo never rewrites a file: a new content gets a new sha1 name) is not re-read, so
      such damage in the source is not noticed by this backup; the stored object it keeps using
      was checked when it was uploaded, and `erpops verify` re-reads it;
    - an object already stored with the same size: read and hashed (the sha1 must match its name),
      not uploaded. On a file target this holds only for objects a complete set references:
      objects are stored without an fsync each (one flush before the manifest), so an unreferenced
      one may be the torn leftover of a run cut by a power loss, and is written again.
    stop: set by the caller to end the copy early (files not started are skipped, Stopped raised).
    """
    previous = previous or {}
    existing = {o.key: o.size for o in target.list_objects(f"{mf.FILESTORE}/")}
    durable_unreferenced = not isinstance(target, FileTarget)
    referenced = {f.key for f in previous.values()}
    packer = Packer(target) if target.packs_small_files else None
    entries, ignored = [], []
    for obj in source.list_objects(""):
        (entries if mf.SHA1_PATH_RE.match(obj.key) else ignored).append(obj)
    if ignored:
        reporter.note(f"filestore: {len(ignored)} file(s) not named xx/<sha1> ignored (Odoo never references "
                      f"them), e.g. {ignored[0].key}", ignored=len(ignored))
    task = reporter.task("filestore", total=sum(o.size for o in entries))

    def still_stored(f: mf.FilestoreFile, stored: dict[str, int]) -> bool:
        if f.pack is None:
            return stored.get(f.key) == f.size
        return stored.get(f.key, -1) >= (f.offset or 0) + f.size

    # (file, uploaded, the pack number it waits for: its pack's key is known once that pack is stored)
    def unchanged(obj: Any) -> tuple[mf.FilestoreFile, bool, int | None] | None:
        """The last set's entry of a file whose path, size and mtime are the same and whose object is stored."""
        before = previous.get(obj.key)
        if (before is not None and before.size == obj.size and before.mtime_us == mtime_us(obj)
                and before.sha1 == obj.key.split("/")[1] and still_stored(before, existing)):
            return before, False, None
        return None

    def one(obj: Any) -> tuple[mf.FilestoreFile, bool, int | None]:
        if stop is not None and stop.is_set():
            raise Stopped()
        sha1 = obj.key.split("/")[1]
        key = mf.filestore_key(sha1)
        mtime = mtime_us(obj)
        stored = existing.get(key) == obj.size
        with source.get_stream(obj.key) as raw:
            reader = HashingReader(raw, sha1=True, on_bytes=task.advance)

            def check() -> None:
                if reader.sha1 != sha1:
                    raise IntegrityError(
                        f"corrupt filestore source: {source.child(obj.key)} has sha1 {reader.sha1} but Odoo named it "
                        f"by its sha1 {sha1}: the file was damaged or changed in place. Restore that file from an "
                        f"older set, or find the attachment with ir_attachment.store_fname = '{obj.key}'")

            if stored and (durable_unreferenced or key in referenced):
                reader.drain()
                check()
                return mf.FilestoreFile(obj.key, sha1, reader.sha256, reader.size, mtime), False, None
            if packer is not None and obj.size <= PACK_MAX_FILE:
                # one byte more than listed: a file that changed since the listing fails its sha1 check
                data = read_full(reader, obj.size + 1)
                check()
                number, offset = packer.add(data, reader.sha256)
                return mf.FilestoreFile(obj.key, sha1, reader.sha256, len(data), mtime, None, offset), True, number
            target.put_stream(key, reader, before_commit=check, digest=False, durable=False)
        return mf.FilestoreFile(obj.key, sha1, reader.sha256, reader.size, mtime), True, None

    with task:
        # Unchanged files are settled here, in this thread: a pool task each would cost more than the check
        # (20,000 of them in an incremental backup)
        fast = [unchanged(obj) for obj in entries]
        known = sum(1 for r in fast if r is not None)
        task.advance(sum(obj.size for obj, r in zip(entries, fast, strict=True) if r is not None))
        read = iter(run_parallel([obj for obj, r in zip(entries, fast, strict=True) if r is None], one, workers))
        results = [r if r is not None else next(read) for r in fast]
        # Skipped objects are re-checked before the manifest can reference them: a GC that stalled past
        # its lease may have deleted some since the listing above (erpops.backup.lease). Gone ones are
        # uploaded again.
        skipped = [(r[0], obj) for r, obj in zip(results, entries, strict=True) if not r[1]]
        if skipped:
            now_stored = {o.key: o.size for o in target.list_objects(f"{mf.FILESTORE}/")}
            gone = [obj for f, obj in skipped if not still_stored(f, now_stored)]
            if gone:
                reporter.note(f"filestore: {len(gone)} object(s) skipped as already stored were deleted meanwhile "
                              "(by a prune); uploading them again", reuploaded=len(gone))
                for key in (mf.filestore_key(o.key.split("/")[1]) for o in gone):
                    existing.pop(key, None)
                again = {r[0].sha1: r for r in run_parallel(gone, one, workers)}
                results = [again.get(r[0].sha1, r) for r in results]
        if packer is not None:
            packer.close()
    if known:
        reporter.note(f"filestore: {known} file(s) unchanged since the last set (path, size, mtime): not read",
                      unchanged=known)
    files = sorted((f if number is None else dataclasses.replace(f, pack=packer.names[number])  # type: ignore[union-attr]
                    for f, _, number in results), key=lambda f: f.path)
    uploaded = sum(1 for r in results if r[1])
    return FilestoreCopy(files, uploaded, len(results) - uploaded, [o.key for o in ignored],
                         packer.stored if packer is not None else 0)


def previous_files(target: Target, db: str) -> dict[str, mf.FilestoreFile]:
    """The filestore files of the newest complete set of db on target, by path (empty when there is none)."""
    for set_id in scan_sets(target).complete[:50]:  # newest first; a target rarely mixes many databases
        try:
            m = load_manifest(target, set_id)
        except (IntegrityError, UsageError):
            continue
        if m.db_name == db:
            return {f.path: f for f in m.filestore}
    return {}


def restore_filestore(
    target: Target, files: list[mf.FilestoreFile], dest: Path, reporter: Reporter, workers: int = DEFAULT_WORKERS,
    *, stop: threading.Event | None = None,
) -> None:
    """Write every file to dest/xx/<sha1>, checking sha1, sha256 and size as it is written (one read).

    dest is a directory of the restore's own (renamed into place once everything is checked): a file
    is written under its final name, and a mismatch raises IntegrityError (the caller removes dest).
    Run as root, files and directories take the owner of dest's parent (the Odoo filestore root),
    so the Odoo user can read and write them. stop: set to end early (Stopped is raised).
    """
    dest.mkdir(parents=True, exist_ok=True)
    owner = None
    if os.geteuid() == 0:
        st = dest.parent.stat()
        owner = (st.st_uid, st.st_gid)
    task = reporter.task("filestore", total=sum(f.size for f in files))
    made_dirs: set[str] = set()
    lock = threading.Lock()

    def one(f: mf.FilestoreFile, raw: Reader) -> None:
        if stop is not None and stop.is_set():
            raise Stopped()
        path = dest / f.path
        with lock:
            if f.path[:2] not in made_dirs:
                path.parent.mkdir(exist_ok=True)
                if owner:
                    os.chown(path.parent, *owner)
                made_dirs.add(f.path[:2])
        with open(path, "wb") as out:
            reader = HashingReader(raw, sha1=True, on_bytes=task.advance)
            while data := reader.read(CHUNK):
                out.write(data)
        if (reader.sha1, reader.sha256, reader.size) != (f.sha1, f.sha256, f.size):
            raise IntegrityError(f"{where(target, f)} does not match the manifest (sha1 {reader.sha1}, "
                                 f"{reader.size} bytes; expected sha1 {f.sha1}, {f.size} bytes)")
        if owner:
            os.chown(path, *owner)

    def missing(f: mf.FilestoreFile, exc: UsageError) -> None:
        raise IntegrityError(f"{target.child(f.key)} is missing (file {f.path})") from exc

    with task:
        each_file(target, files, one, missing, workers)
    if owner:
        os.chown(dest, *owner)


class ZipFilestore(FileTarget):
    """The filestore/ of an Odoo zip, read-only, through the Target listing/reading API."""

    def __init__(self, zf: zipfile.ZipFile, path: Path) -> None:
        super().__init__(path)
        self.url = f"zip://{path}!filestore"
        self._zf = zf
        self._lock = threading.Lock()

    def list_objects(self, prefix: str = "") -> Iterator[Any]:
        from erpops.backup.storage import ObjectInfo

        for info in self._zf.infolist():
            if info.filename.startswith("filestore/") and not info.is_dir():
                key = info.filename[len("filestore/"):]
                if key.startswith(prefix):
                    yield ObjectInfo(key, info.file_size, datetime(*info.date_time, tzinfo=UTC))

    @contextlib.contextmanager
    def get_stream(self, key: str) -> Iterator[Reader]:
        with self._lock:  # ZipFile is not safe for concurrent reads: hand out in-memory copies
            data = self._zf.read(f"filestore/{key}")
        yield _Bytes(data)


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        out = self._data[self._pos:end]
        self._pos += len(out)
        return out

