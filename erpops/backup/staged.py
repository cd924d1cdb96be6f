"""pg_restore -j N without a temp file: each loader reads its own part of the stored dump.

`pg_restore -j N` needs the whole archive in a seekable file. Decompressing a multi-GB dump into
one first costs its time before any table loads and, on a busy page cache, seconds of system
time writing it (on issue 16's 3.9 GB set the restore took 1.26x `pg_restore -j2` of a plain file
that way). A backup records where each table's data block lies in the uncompressed stream
(manifest `data_start`, `data_blocks`) and stores the dump as zstd frames of about 64 MiB whose
offsets and sha256 it records (`frames`, erpops.backup.dump.Framed). A restore then does what
`pg_restore -j N` does without the file:

1. pre-data (`--section=pre-data`: types, tables, functions) from the table of contents alone,
   kept in a small file (the header and TOC, a few MB at most);
2. the data: the blocks are shared out among N loaders, the largest first to the least loaded
   (as pg_restore -j does). Each loader reads its blocks' frames with ranged reads (a file seek,
   an S3 Range GET), decompresses them and pipes the header, the TOC and just its blocks into
   `pg_restore -L <its entries>`, which reads a non-seekable archive front to back. Every frame
   read is checked against its sha256 as it ends; the dump is decompressed once in all;
3. post-data (indexes, constraints), from the TOC file: an index or constraint whose tables are
   loaded runs as soon as a loader is free (`-L`), the rest with `-j N` once all data is loaded
   and every frame of the dump has been read and checked.

Every entry is restored once, in the stage pg_restore itself places it in (`--section`). The
database is the side database until the caller swaps it in, after all three stages and the
checks: a damaged frame fails the restore before the swap, as before, and is named as the cause
even when pg_restore failed on its bytes first.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import zstandard

from erpops.backup import manifest as mf
from erpops.backup.dump import FRAME, Feed, exit_text, log_tail
from erpops.backup.leftovers import preexec
from erpops.backup.pgarchive import SECTION_DATA, SECTION_POST_DATA, Entry, Toc, read_toc
from erpops.backup.storage import CHUNK
from erpops.errors import BackupError, IntegrityError

# Post-data entries that may run while other tables still load: they touch only the tables they name.
EARLY = {"INDEX", "CONSTRAINT", "FK CONSTRAINT", "INDEX ATTACH"}


@dataclass
class Share:
    """One loader's part of the data: its entries in archive order and the byte ranges of their blocks."""

    entries: list[Entry] = field(default_factory=list)
    ranges: list[tuple[int, int]] = field(default_factory=list)
    size: int = 0


def share_out(toc: Toc, start: int, blocks: tuple[tuple[int, int], ...], jobs: int) -> list[Share]:
    """The data-section entries shared among up to `jobs` loaders: blocks largest first to the least loaded;
    entries without a block (SEQUENCE SET) to the least loaded. ValueError: blocks are not toc's."""
    where: dict[int, tuple[int, int]] = {}
    pos = start
    for dump_id, size in blocks:
        where[dump_id] = (pos, pos + size)
        pos += size
    data = [e for e in toc.entries if e.section == SECTION_DATA]
    with_block = [e.dump_id for e in toc.entries if e.field is not None]
    if with_block != [d for d, _ in blocks] or any(e.field is not None and e.dump_id not in where for e in data):
        raise ValueError("the manifest's data blocks are not this archive's")
    shares = [Share() for _ in range(max(1, jobs))]
    owner: dict[int, Share] = {}
    def size(e: Entry) -> int:
        return where[e.dump_id][1] - where[e.dump_id][0]

    for e in sorted((e for e in data if e.field is not None), key=size, reverse=True):
        least = min(shares, key=lambda s: s.size)
        owner[e.dump_id] = least
        least.size += size(e)
    for e in data:
        if e.field is None:
            owner[e.dump_id] = min(shares, key=lambda s: s.size)
    for e in data:  # archive order: the order of the blocks in the stream
        share = owner[e.dump_id]
        share.entries.append(e)
        if e.field is not None:
            share.ranges.append(where[e.dump_id])
    return [s for s in shares if s.entries]


class _Post:
    """Which post-data entries can run now: an entry's tables are loaded (the tables it depends on, directly or
    through another post-data entry, as pg_restore's own scheduler sees them)."""

    def __init__(self, toc: Toc) -> None:
        by_id = {e.dump_id: e for e in toc.entries}
        table_data = {}  # TABLE's dump id -> its TABLE DATA entry's
        for e in toc.entries:
            if e.desc == "TABLE DATA":
                for d in e.deps:
                    if by_id.get(d) is not None and by_id[d].desc == "TABLE":
                        table_data[d] = e.dump_id
        self.post = [e for e in toc.entries if e.section == SECTION_POST_DATA]
        post_ids = {e.dump_id for e in self.post}
        # post-data entry -> the data entries it waits for; None: it runs at the end
        self.needs: dict[int, set[int] | None] = {}
        for e in self.post:
            needs: set[int] | None = set()
            if e.desc not in EARLY:
                needs = None
            for d in e.deps:
                if needs is None:
                    break
                if d in post_ids:
                    inner = self.needs.get(d)
                    needs = None if inner is None else needs | inner
                elif d in table_data:
                    needs.add(table_data[d])
                elif by_id.get(d) is not None and by_id[d].desc == "TABLE DATA":
                    needs.add(d)
            self.needs[e.dump_id] = needs
        self.done: set[int] = set()

    def ready(self, loaded: set[int], running: set[int]) -> list[Entry]:
        """Early entries whose tables are loaded, neither run nor running, in archive order (an entry's post-data
        dependencies come before it there, and run first in one -L run)."""
        out = []
        taken: set[int] = set()
        for e in self.post:
            needs = self.needs[e.dump_id]
            if e.dump_id in self.done or e.dump_id in running or needs is None or not needs <= loaded:
                continue
            inner = [d for d in e.deps if d in self.needs]
            if all(d in self.done or d in taken for d in inner):
                out.append(e)
                taken.add(e.dump_id)
        return out

    def rest(self) -> list[Entry]:
        return [e for e in self.post if e.dump_id not in self.done]


class _FrameCheck:
    """The stored bytes of frames[first:last] read from a ranged reader, each frame's sha256 checked as it ends."""

    def __init__(self, body: Any, frames: tuple[tuple[int, int, str], ...], first: int, last: int, size: int,
                 where: str, verified: set[int], advance: Callable[[int], None]) -> None:
        self._body, self._frames, self._k, self._last, self._size = body, frames, first, last, size
        self._where, self._verified, self._advance = where, verified, advance
        self._pos = frames[first][1]
        self._hash = hashlib.sha256()

    def _end(self, k: int) -> int:
        return self._frames[k + 1][1] if k + 1 < len(self._frames) else self._size

    def read(self, n: int = -1) -> bytes:
        if self._k >= self._last:
            return b""
        end = self._end(self._k)
        data = self._body.read(end - self._pos if n < 0 else min(n, end - self._pos))
        if not data:
            raise IntegrityError(f"{self._where} ends at byte {self._pos}; the manifest has frame {self._k} end at "
                                 f"{end}: the stored dump is truncated")
        self._hash.update(data)
        self._pos += len(data)
        self._advance(len(data))
        if self._pos == end:
            expected = self._frames[self._k][2]
            if self._hash.hexdigest() != expected:
                raise IntegrityError(f"{self._where}: frame {self._k} (stored bytes {self._frames[self._k][1]}-{end}) "
                                     f"has sha256 {self._hash.hexdigest()}, the manifest records {expected}: the bytes "
                                     "are damaged")
            self._verified.add(self._k)
            self._k += 1
            self._hash = hashlib.sha256()
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


class StreamedRestore:
    """Runs the three stages; `run()` returns when the data and post-data are restored, else raises."""

    def __init__(self, argv: list[str], jobs: int, env: dict[str, str], work_dir: Path, db: str,
                 open_range: Callable[[int, int], contextlib.AbstractContextManager[Any]], artifact: mf.Artifact,
                 where: str,
                 advance: Callable[[int], None]) -> None:
        self.argv, self.jobs, self.env, self.work_dir, self.db = argv, max(1, jobs), env, work_dir, db
        self.open_range, self.where, self.advance = open_range, where, advance
        assert artifact.data_start is not None and artifact.data_blocks is not None and artifact.frames is not None
        self.size = artifact.size
        self.start = artifact.data_start
        self.blocks = artifact.data_blocks
        self.frames = artifact.frames
        self._starts = [f[0] for f in self.frames]
        self._procs: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._abort = threading.Event()
        self._pre_done = threading.Event()
        self._errors: list[BaseException] = []
        self._temp: list[Path] = []
        self.verified: set[int] = set()
        self.loaded: set[int] = set()

    # -- the stages ----------------------------------------------------------------------------

    def run(self) -> None:
        try:
            try:
                self._run()
            except BackupError as exc:
                self._stop()
                self._check_rest(exc)  # a damaged dump is named as such, not by what pg_restore made of it
                raise
        finally:
            self._stop()

    def _run(self) -> None:
        head = self._head()
        toc = read_toc(head)
        try:
            if toc is None or toc.end != self.start:
                raise ValueError("its table of contents does not end at the manifest's data_start")
            shares = share_out(toc, self.start, self.blocks, self.jobs)
        except ValueError as exc:
            raise IntegrityError(f"{self.where}: {exc}: the manifest was edited, or written for another dump") from exc
        toc_file = self._file("toc", ".pgdump", head)
        post = _Post(toc)
        threads = [threading.Thread(target=self._loader, args=(share, head), name=f"erpops-restore-{i}", daemon=True)
                   for i, share in enumerate(shares)]
        for t in threads:
            t.start()
        self._wait(self._spawn("pre-data", ["--section=pre-data", str(toc_file)]), "pre-data")
        self._pre_done.set()
        early: list[tuple[subprocess.Popen[bytes], list[Entry]]] = []
        while any(t.is_alive() for t in threads) or early:
            self._raise_first()
            for run in [r for r in early if r[0].poll() is not None]:
                self._finish(run[0], "post-data")
                post.done.update(e.dump_id for e in run[1])
                early.remove(run)
            alive = sum(t.is_alive() for t in threads)
            if alive and alive + len(early) < self.jobs:
                with self._lock:
                    loaded = set(self.loaded)
                running = {e.dump_id for run in early for e in run[1]}
                now = post.ready(loaded, running)
                if now:
                    listing = self._file("early", ".list", self._list(now))
                    early.append((self._spawn("post-data", ["-L", str(listing), str(toc_file)]), now))
            time.sleep(0.02)
        for t in threads:
            t.join()
        self._raise_first()
        self._check_rest(None)  # every frame read and checked (the loaders and the head cover them all)
        rest = post.rest()
        if rest:
            listing = self._file("post", ".list", self._list(rest))
            self._wait(self._spawn("post-data", ["-j", str(self.jobs), "-L", str(listing), str(toc_file)]),
                       "post-data")

    def _span(self, begin: int, end: int) -> tuple[int, int]:
        """The frames holding uncompressed bytes [begin, end): (first, last + 1)."""
        return bisect.bisect_right(self._starts, begin) - 1, max(bisect.bisect_left(self._starts, end),
                                                                  bisect.bisect_right(self._starts, begin))

    @contextlib.contextmanager
    def _read(self, first: int, last: int) -> Any:
        c0 = self.frames[first][1]
        c1 = self.frames[last][1] if last < len(self.frames) else self.size
        with self.open_range(c0, c1 - c0) as body:
            check = _FrameCheck(body, self.frames, first, last, self.size, self.where, self.verified, self.advance)
            yield check, zstandard.ZstdDecompressor().stream_reader(check, read_size=CHUNK, closefd=False)

    def _head(self) -> bytes:
        first, last = self._span(0, self.start)
        with self._read(first, last) as (check, raw):
            head = _read_exactly(raw, self.start)
            check.drain()
        return head

    def _check_rest(self, failure: BaseException | None) -> None:
        """Read and check every frame no loader has checked; IntegrityError if one is damaged."""
        for k in range(len(self.frames)):
            if k in self.verified:
                continue
            try:
                with self._read(k, k + 1) as (check, _raw):
                    check.drain()
            except IntegrityError as exc:
                if failure is not None:
                    raise exc from failure
                raise

    def _loader(self, share: Share, head: bytes) -> None:
        proc: subprocess.Popen[bytes] | None = None

        def start() -> subprocess.Popen[bytes]:
            nonlocal proc
            while not self._pre_done.wait(0.1):
                pass
            listing = self._file("data", ".list", self._list(share.entries))
            proc = self._spawn("data", ["-L", str(listing)], feed=True)  # set before a write can fail
            proc.erpops_feed.write(head)  # type: ignore[attr-defined]
            return proc

        try:
            try:
                for run in _runs(share.ranges):
                    first, last = self._span(run[0][0], run[-1][1])
                    with self._read(first, last) as (check, raw):
                        pos = self.frames[first][0]
                        for begin, end in run:
                            pos = _copy(raw, pos, begin, None, self._abort)
                            if proc is None:
                                proc = start()
                            pos = _copy(raw, pos, end, proc.erpops_feed, self._abort)  # type: ignore[attr-defined]
                        check.drain()
                if proc is None:
                    proc = start()
                proc.erpops_feed.close()  # type: ignore[attr-defined]
            except (BrokenPipeError, ConnectionResetError):
                pass  # pg_restore stopped reading: its exit code and log say why
            if proc is not None:
                self._finish(proc, "data")
            with self._lock:
                self.loaded.update(e.dump_id for e in share.entries)
        except BaseException as exc:  # handed to the main thread
            with self._lock:
                self._errors.append(exc)
            self._abort.set()

    # -- processes -----------------------------------------------------------------------------

    def _spawn(self, stage: str, extra: list[str], *, feed: bool = False) -> subprocess.Popen[bytes]:
        """pg_restore with extra arguments; feed=True: reading stdin from a Feed (proc.erpops_feed)."""
        log = self._file(f"{stage}-log", ".log", b"")
        with self._lock:
            if self._abort.is_set() and stage != "pre-data":
                raise _Aborted
            err = log.open("ab")
            stdin = Feed() if feed else None
            try:
                proc = subprocess.Popen([*self.argv, *extra], stdin=stdin.child if stdin else subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=err, env=self.env, preexec_fn=preexec())
            except BaseException:
                if stdin is not None:
                    stdin.close()
                raise
            finally:
                err.close()
            if stdin is not None:
                stdin.started()
            proc.erpops_log = log  # type: ignore[attr-defined]
            proc.erpops_feed = stdin  # type: ignore[attr-defined]
            self._procs.append(proc)
        return proc

    def _wait(self, proc: subprocess.Popen[bytes], stage: str) -> None:
        while proc.poll() is None:
            self._raise_first()
            time.sleep(0.02)
        self._finish(proc, stage)

    def _finish(self, proc: subprocess.Popen[bytes], stage: str) -> None:
        rc = proc.wait()
        if rc != 0 and not self._abort.is_set():
            log: Path = proc.erpops_log  # type: ignore[attr-defined]
            raise BackupError(f"pg_restore ({stage}) into {self.db} failed ({exit_text(rc)}): "
                              f"{log_tail(log) or 'no message'}")

    def _raise_first(self) -> None:
        with self._lock:
            errors = [e for e in self._errors if not isinstance(e, _Aborted)]
        if errors:
            raise errors[0]

    def _stop(self) -> None:
        self._abort.set()
        self._pre_done.set()
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.kill()
        for proc in procs:
            proc.wait()
            feed = getattr(proc, "erpops_feed", None)
            if feed is not None:
                with contextlib.suppress(OSError):
                    feed.close()
        for path in self._temp:
            path.unlink(missing_ok=True)

    # -- files ---------------------------------------------------------------------------------

    @staticmethod
    def _list(entries: list[Entry]) -> bytes:
        return "".join(f"{e.dump_id}; {e.desc}\n" for e in entries).encode()

    def _file(self, what: str, suffix: str, data: bytes) -> Path:
        with tempfile.NamedTemporaryFile(prefix=f"erpops-restore-{what}-", suffix=suffix, dir=self.work_dir,
                                         delete=False) as fh:
            fh.write(data)
        path = Path(fh.name)
        with self._lock:
            self._temp.append(path)
        return path


class _Aborted(Exception):
    """Another loader failed: this one stops without an error of its own."""


def _runs(ranges: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """A loader's block ranges in runs read with one ranged read each: a gap of more than a frame starts a new one."""
    runs: list[list[tuple[int, int]]] = []
    for r in ranges:
        if runs and r[0] - runs[-1][-1][1] <= FRAME:
            runs[-1].append(r)
        else:
            runs.append([r])
    return runs


def _read_exactly(raw: Any, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        data = raw.read(min(CHUNK, n - got))
        if not data:
            raise IntegrityError(f"the dump ends after {got} bytes, inside its table of contents ({n} bytes)")
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def _copy(raw: Any, pos: int, to: int, out: IO[bytes] | None, abort: threading.Event) -> int:
    """Read raw from pos up to to, into out (None: passed over); the position reached."""
    while pos < to:
        data = raw.read(min(CHUNK, to - pos))
        if not data:
            raise IntegrityError(f"the dump ends at {pos} bytes; the manifest has it go on to {to}")
        if abort.is_set():
            raise _Aborted
        if out is not None:
            out.write(data)
        pos += len(data)
    return pos

