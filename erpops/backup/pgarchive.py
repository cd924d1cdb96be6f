"""Data offsets for a custom-format archive that pg_dump wrote to a pipe.

pg_dump writes each table's data position into the archive's table of contents only when its
output is seekable. A dump streamed through a pipe (every erpops dump: it is compressed and stored
as it is made) has none, and `pg_restore -j N` then finds each table's data by scanning the file
from the start again and again: on a 2-core machine that made restores about 2x slower than from
a file pg_dump wrote itself. After the restore has decompressed the dump to a temp file (and
checked every byte), `add_data_offsets` fills the offsets in, in place: each is a fixed-size field.

The data blocks follow the table of contents in its order, each `BLK_DATA` (1), the entry's dump
id, length-prefixed chunks and a zero length. A block is found by the bytes that can only appear
there: the previous block's (or the table of contents') five zero bytes, then 0x01 and the id.
COPY text data never holds a NUL byte, so this cannot match inside table data; archives with large
objects (binary data, `BLOBS` entries) are left as they are. pg_restore checks the block id it finds
at each offset, so a wrong offset fails the restore rather than loading other data. Anything
unexpected (another archive version, a missing block) leaves the file untouched: the restore is
then as before, only slower.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

BLK_DATA = 1
K_OFFSET_POS_NOT_SET = 1
K_OFFSET_POS_SET = 2
SUPPORTED = {(1, 12), (1, 13), (1, 14), (1, 15), (1, 16)}


WINDOW = 4 * 1024 * 1024
TOC_LIMIT = 256 * 1024 * 1024  # a table of contents larger than this: no offsets found


class _File:
    """Byte access to an open file through pread/pwrite and one small window: no mapping, no whole-file read
    (a mapped multi-GB dump would count in the process's resident memory)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.size = os.fstat(fd).st_size
        self._start, self._data = 0, b""

    def _window(self, pos: int, n: int) -> bytes:
        if not (self._start <= pos and pos + n <= self._start + len(self._data)):
            self._start, self._data = pos, os.pread(self.fd, max(WINDOW, n), pos)
        return self._data[pos - self._start:pos - self._start + n]

    def __getitem__(self, key: int | slice) -> int | bytes:
        if isinstance(key, slice):
            start, stop = key.start or 0, min(key.stop, self.size)
            out = self._window(start, max(0, stop - start))
            return out
        if key >= self.size:
            raise IndexError(key)
        return self._window(key, 1)[0]

    def find(self, sub: bytes, start: int) -> int:
        pos = max(0, start)
        while pos < self.size:
            chunk = os.pread(self.fd, WINDOW + len(sub) - 1, pos)
            hit = chunk.find(sub)
            if hit >= 0:
                return pos + hit
            if len(chunk) < WINDOW + len(sub) - 1:
                return -1
            pos += WINDOW
        return -1

    def write(self, pos: int, data: bytes) -> None:
        os.pwrite(self.fd, data, pos)
        self._start, self._data = 0, b""


class _Reader:
    def __init__(self, buf: _File | bytes) -> None:
        self.buf, self.pos, self.int_size, self.off_size = buf, 0, 4, 8

    def byte(self) -> int:
        b = self.buf[self.pos]
        assert isinstance(b, int)
        self.pos += 1
        return b

    def int(self) -> int:
        sign = self.byte()
        raw = self.buf[self.pos:self.pos + self.int_size]
        assert isinstance(raw, bytes)
        if len(raw) < self.int_size:
            raise ValueError("truncated archive")
        self.pos += self.int_size
        value = int.from_bytes(raw, "little")
        return -value if sign else value

    def str(self) -> bytes | None:
        n = self.int()
        if n < 0:
            return None
        out = self.buf[self.pos:self.pos + n]
        assert isinstance(out, bytes)
        if len(out) < n:
            raise ValueError("truncated archive")
        self.pos += n
        return out


def add_data_offsets(path: Path) -> int:
    """Fill in the data offsets of a piped custom-format archive; the number of entries set (0: unchanged)."""
    with open(path, "r+b") as fh:
        try:
            return _patch(_File(fh.fileno()))
        except (IndexError, ValueError, struct.error):
            return 0


SECTION_NONE, SECTION_PRE_DATA, SECTION_DATA, SECTION_POST_DATA = 1, 2, 3, 4


@dataclass
class Entry:
    """One table-of-contents entry: its section as pg_restore places it (an entry of no section takes the one
    before it, as pg_restore's section options do) and, for an entry with a data block, its offset field."""

    dump_id: int
    desc: str
    section: int
    field: int | None
    deps: tuple[int, ...] = ()


@dataclass
class Toc:
    end: int  # the position after the table of contents: the data blocks follow
    int_size: int
    off_size: int
    entries: list[Entry]


def read_toc(buf: _File | bytes) -> Toc | None:
    """The archive's table of contents; None: not an archive this module handles (version, format, BLOBS).
    IndexError or ValueError: the bytes end inside it."""
    r = _Reader(buf)
    if buf[:5] != b"PGDMP":
        return None
    r.pos = 5
    vmaj, vmin, _ = r.byte(), r.byte(), r.byte()
    if (vmaj, vmin) not in SUPPORTED:
        return None
    r.int_size, r.off_size = r.byte(), r.byte()
    if r.byte() != 1:  # archCustom
        return None
    if (vmaj, vmin) >= (1, 15):
        r.byte()  # compression algorithm
    else:
        r.int()  # compression level
    for _ in range(7):  # creation time
        r.int()
    r.str(), r.str(), r.str()  # database name, server version, pg_dump version
    entries: list[Entry] = []
    current = SECTION_PRE_DATA
    for _ in range(r.int()):
        dump_id, _had_dumper = r.int(), r.int()
        r.str(), r.str(), r.str()  # tableoid, oid, tag
        desc = r.str()
        if desc == b"BLOBS":
            return None
        section = r.int()
        if section != SECTION_NONE:
            current = section
        r.str(), r.str(), r.str(), r.str(), r.str(), r.str()  # defn, drop, copy, namespace, tablespace, tableam
        if (vmaj, vmin) >= (1, 16):
            r.int()  # relkind
        r.str(), r.str()  # owner, with oids
        deps = []
        while (dep := r.str()) is not None:
            deps.append(int(dep))
        field = r.pos
        flag = r.byte()
        r.pos += r.off_size
        has_data = flag in (K_OFFSET_POS_NOT_SET, K_OFFSET_POS_SET)
        entries.append(Entry(dump_id, (desc or b"").decode(errors="replace"), current, field if has_data else None,
                             tuple(deps)))
    return Toc(r.pos, r.int_size, r.off_size, entries)


def _toc(buf: _File) -> tuple[_Reader, list[tuple[int, int]]] | None:
    """The reader (at the end of the TOC) and each data entry's (dump id, offset field position); None: unsupported."""
    toc = read_toc(buf)
    if toc is None:
        return None
    r = _Reader(buf)
    r.pos, r.int_size, r.off_size = toc.end, toc.int_size, toc.off_size
    return r, [(e.dump_id, e.field) for e in toc.entries if e.field is not None]


def data_offsets(path: Path) -> dict[int, int | None]:
    """Each data entry's offset by dump id (None: not set); {} for a file that is not a supported archive."""
    with open(path, "rb") as fh:
        buf = _File(fh.fileno())
        try:
            parsed = _toc(buf)
            if parsed is None:
                return {}
            r, entries = parsed
            return {i: int.from_bytes(buf[f + 1:f + 1 + r.off_size], "little")  # type: ignore[arg-type]
                    if buf[f] == K_OFFSET_POS_SET else None for i, f in entries}
        except (IndexError, ValueError, struct.error):
            return {}


def _patch(buf: _File) -> int:
    parsed = _toc(buf)
    if parsed is None:
        return 0
    r, entries = parsed
    pending = [(i, f) for i, f in entries if buf[f] == K_OFFSET_POS_NOT_SET]
    if not pending:
        return 0
    zeros = b"\x00" * (1 + r.int_size)  # WriteInt(0): a sign byte and int_size zero bytes
    found: list[tuple[int, int]] = []
    at = r.pos - len(zeros)  # the TOC's last offset field ends in zero bytes too
    for dump_id, field in pending:
        head = zeros + bytes([BLK_DATA, 0]) + dump_id.to_bytes(r.int_size, "little")
        hit = buf.find(head, at)
        if hit < 0:
            return 0
        block = hit + len(zeros)
        found.append((field, block))
        at = block
    for field, block in found:
        buf.write(field, bytes([K_OFFSET_POS_SET]) + block.to_bytes(r.off_size, "little"))
    return len(found)


class BlockFinder:
    """The data blocks of a custom-format archive found as it streams past (a backup's pg_dump output).

    Fed each chunk in order (`wrote`), it reads the table of contents once it is whole, then finds each
    data block's start in the chunks themselves (the bytes `add_data_offsets` looks for): a block ends where
    the next begins, the last one at the end of the stream (`finish`). `starts` and `sizes` are where each
    block lies in the stream. `toc` stays None for an
    archive this module does not handle (another version, BLOBS, offsets already set); `supported` is False.
    """

    def __init__(self) -> None:
        self.toc: Toc | None = None
        self.supported = True
        self.starts: dict[int, int] = {}  # dump id -> where its data block begins
        self.sizes: dict[int, int] = {}  # dump id -> block size, for each complete block
        self._prefix = bytearray()  # the bytes up to the end of the TOC, until it is read
        self._pending: list[Entry] = []
        self._next = 0
        self._start: int | None = None  # where the block being written began
        self._at = 0  # no block start before this position
        self._tail, self._tail_pos = b"", 0
        self._written = 0
        self._try_at = 0

    def _needle(self, dump_id: int) -> bytes:
        assert self.toc is not None
        return b"\x00" * (1 + self.toc.int_size) + bytes([BLK_DATA, 0]) + dump_id.to_bytes(self.toc.int_size, "little")

    def wrote(self, data: bytes) -> None:
        """data came next in the stream."""
        pos, self._written = self._written, self._written + len(data)
        if not self.supported:
            return
        if self.toc is None:
            self._prefix += data
            if self._written < self._try_at or not self._parse():
                return
            pos = self._at  # what came after the TOC so far is searched from its end
            data, self._prefix = bytes(self._prefix[pos:]), bytearray()
        self._scan(data, pos)
        self._tail, self._tail_pos = data[-16:], pos + len(data) - len(data[-16:])

    def _parse(self) -> bool:
        """Read the TOC from the prefix; False while it is not whole (or never will be: supported is then False)."""
        if len(self._prefix) > TOC_LIMIT:
            self.supported, self._prefix = False, bytearray()
            return False
        if len(self._prefix) < 16:  # not even the header yet
            return False
        try:
            toc = read_toc(bytes(self._prefix))
        except (IndexError, ValueError, struct.error):
            self._try_at = 2 * self._written  # not whole yet: parse again when the prefix has doubled
            return False
        if toc is None or any(self._prefix[e.field] != K_OFFSET_POS_NOT_SET
                              for e in toc.entries if e.field is not None):
            self.supported, self._prefix = False, bytearray()  # BLOBS, another version, or offsets already written
            return False
        self.toc = toc
        self._pending = [e for e in toc.entries if e.field is not None]
        self._at = toc.end - (1 + toc.int_size)  # the TOC's last offset field ends in zero bytes
        return True

    def finish(self) -> None:
        """The stream ended: the last block found is complete (`missing` lists any never found)."""
        if self.toc is None and self.supported and self._parse():
            self._scan(bytes(self._prefix[self._at:]), self._at)
            self._prefix = bytearray()
        if self.toc is None or self._start is None:
            return
        self.sizes[self._pending[self._next - 1].dump_id] = self._written - self._start
        self._start = None

    @property
    def missing(self) -> list[Entry]:
        """Entries with data whose block has not been found (all of them before the TOC is read)."""
        return self._pending[self._next:]

    def _scan(self, data: bytes, pos: int) -> None:
        assert self.toc is not None
        edge = self._tail[-15:] + data[:15] if self._tail and self._tail_pos + len(self._tail) == pos else b""
        edge_pos = pos - min(15, len(self._tail)) if edge else pos
        while self._next < len(self._pending):
            entry = self._pending[self._next]
            needle = self._needle(entry.dump_id)
            hit = -1
            if edge:
                i = edge.find(needle, max(0, self._at - edge_pos))
                if i >= 0:
                    hit = edge_pos + i
            if hit < 0:
                i = data.find(needle, max(0, self._at - pos))
                if i < 0:
                    break
                hit = pos + i
            block = hit + 1 + self.toc.int_size
            self.starts[entry.dump_id] = block
            if self._start is not None:
                self.sizes[self._pending[self._next - 1].dump_id] = block - self._start
            self._start, self._at = block, block
            self._next += 1
