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
from pathlib import Path

BLK_DATA = 1
K_OFFSET_POS_NOT_SET = 1
K_OFFSET_POS_SET = 2
SUPPORTED = {(1, 12), (1, 13), (1, 14), (1, 15), (1, 16)}


WINDOW = 4 * 1024 * 1024


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
    def __init__(self, buf: _File) -> None:
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


def _toc(buf: _File) -> tuple[_Reader, list[tuple[int, int]]] | None:
    """The reader (at the end of the TOC) and each data entry's (dump id, offset field position); None: unsupported."""
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
    pending: list[tuple[int, int]] = []  # (dump id, position of its offset field) in TOC order
    for _ in range(r.int()):
        dump_id, _had_dumper = r.int(), r.int()
        r.str(), r.str(), r.str()  # tableoid, oid, tag
        desc = r.str()
        if desc == b"BLOBS":
            return None
        r.int()  # section
        r.str(), r.str(), r.str(), r.str(), r.str(), r.str()  # defn, drop, copy, namespace, tablespace, tableam
        if (vmaj, vmin) >= (1, 16):
            r.int()  # relkind
        r.str(), r.str()  # owner, with oids
        while r.str() is not None:  # dependencies
            pass
        field = r.pos
        flag = r.byte()
        r.pos += r.off_size
        if flag in (K_OFFSET_POS_NOT_SET, K_OFFSET_POS_SET):
            pending.append((dump_id, field))
    return r, pending


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
