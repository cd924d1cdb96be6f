"""The restore's stages without servers (erpops.backup.staged) and the backup's zstd frames (dump.Framed):
how the data is shared among loaders, which indexes may run while other tables load, and that every
frame a loader reads is checked against the manifest."""

from __future__ import annotations

import hashlib
import io
import random

import pytest
import zstandard

from erpops.backup import dump
from erpops.backup.pgarchive import SECTION_DATA, SECTION_POST_DATA, SECTION_PRE_DATA, Entry, Toc
from erpops.backup.staged import _FrameCheck, _Post, _runs, share_out
from erpops.errors import IntegrityError


def table(i: int, name: str) -> list[Entry]:
    """A TABLE (pre-data) and its TABLE DATA (dump ids i and i + 1)."""
    return [Entry(i, "TABLE", SECTION_PRE_DATA, None), Entry(i + 1, "TABLE DATA", SECTION_DATA, 0, (i,))]


def toc_of(entries: list[Entry]) -> Toc:
    return Toc(1000, 4, 8, entries)


def test_blocks_go_largest_first_to_the_least_loaded_loader_and_keep_archive_order() -> None:
    entries = [*table(10, "big"), *table(20, "mid"), *table(30, "small"), *table(40, "tiny"),
               Entry(50, "SEQUENCE SET", SECTION_DATA, None)]
    toc = toc_of(entries)
    blocks = ((11, 900), (21, 500), (31, 300), (41, 50))
    shares = share_out(toc, 1000, blocks, 2)
    assert [[e.dump_id for e in s.entries] for s in shares] == [[11], [21, 31, 41, 50]]
    assert shares[0].ranges == [(1000, 1900)]
    assert shares[1].ranges == [(1900, 2400), (2400, 2700), (2700, 2750)]  # in the stream's order
    assert [s.size for s in shares] == [900, 850]
    # more loaders than blocks: no empty loader
    assert len(share_out(toc_of(table(10, "only")), 1000, ((11, 5),), 4)) == 1


def test_blocks_of_another_archive_are_refused() -> None:
    toc = toc_of([*table(10, "a"), *table(20, "b")])
    with pytest.raises(ValueError, match="not this archive's"):
        share_out(toc, 1000, ((21, 5), (11, 5)), 2)  # another order
    with pytest.raises(ValueError, match="not this archive's"):
        share_out(toc, 1000, ((11, 5),), 2)  # a table's block missing


def test_an_index_waits_for_its_table_and_a_foreign_key_for_both() -> None:
    entries = [*table(10, "orders"), *table(20, "lines"),
               Entry(30, "CONSTRAINT", SECTION_POST_DATA, None, (10,)),  # orders' primary key
               Entry(31, "INDEX", SECTION_POST_DATA, None, (20,)),  # an index on lines
               Entry(32, "FK CONSTRAINT", SECTION_POST_DATA, None, (20, 30)),  # lines -> orders(pkey)
               Entry(33, "TRIGGER", SECTION_POST_DATA, None, (20,)),  # not early: runs at the end
               Entry(34, "MATERIALIZED VIEW DATA", SECTION_POST_DATA, None, (35,))]
    post = _Post(toc_of(entries))
    assert post.ready(set(), set()) == []
    assert [e.dump_id for e in post.ready({21}, set())] == [31]
    assert [e.dump_id for e in post.ready({11}, set())] == [30]
    both = post.ready({11, 21}, set())
    assert [e.dump_id for e in both] == [30, 31, 32]  # the FK after the key it references, in one run
    assert [e.dump_id for e in post.ready({11, 21}, {30})] == [31]  # the key is running: the FK waits
    post.done.update({30, 31})
    assert [e.dump_id for e in post.ready({11, 21}, set())] == [32]
    post.done.add(32)
    assert [e.dump_id for e in post.rest()] == [33, 34]


def test_runs_split_where_a_gap_is_larger_than_a_frame() -> None:
    f = dump.FRAME
    ranges = [(0, 10), (10 + f, 20 + f), (30 + 3 * f, 40 + 3 * f)]
    assert _runs(ranges) == [[(0, 10), (10 + f, 20 + f)], [(30 + 3 * f, 40 + 3 * f)]]


def framed(data: bytes, monkeypatch: pytest.MonkeyPatch, frame: int) -> tuple[bytes, list[tuple[int, int, str]]]:
    monkeypatch.setattr(dump, "FRAME", frame)
    monkeypatch.setattr(dump, "CHUNK", 16 * 1024)  # read in small chunks: frames end at chunk ends
    f = dump.Framed(io.BytesIO(data))
    out = b""
    while chunk := f.read(7777):
        out += chunk
    return out, f.frames


def test_framed_output_is_one_zstd_stream_and_each_frame_starts_where_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(3)
    data = b"".join(rng.randbytes(3000) if i % 2 else b"COPY line %d\n" % i * 300 for i in range(400))
    out, frames = framed(data, monkeypatch, 256 * 1024)
    assert len(frames) > 3 and frames[0][:2] == (0, 0)
    whole = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(out))
    assert b"".join(iter(lambda: whole.read(1 << 20), b"")) == data  # any reader, all frames in turn
    ends = [f[1] for f in frames[1:]] + [len(out)]
    for (u, c, sha), end in zip(frames, ends, strict=True):
        assert hashlib.sha256(out[c:end]).hexdigest() == sha
        part = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(out[c:]))
        assert part.read(1000) == data[u:u + 1000]  # decompression can start at any frame
    empty, frames = framed(b"", monkeypatch, 1024)
    assert frames == [(0, 0, hashlib.sha256(empty).hexdigest())]
    assert zstandard.ZstdDecompressor().stream_reader(io.BytesIO(empty)).read() == b""


def test_a_damaged_or_short_frame_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    data = random.Random(5).randbytes(600_000)
    out, frames = framed(data, monkeypatch, 128 * 1024)
    ft = tuple(frames)
    seen: set[int] = set()
    check = _FrameCheck(io.BytesIO(out), ft, 0, len(ft), len(out), "file:///t/dump", seen, lambda n: None)
    check.drain()
    assert seen == set(range(len(ft)))
    bad = bytearray(out)
    bad[ft[2][1] + 10] ^= 1
    seen = set()
    check = _FrameCheck(io.BytesIO(bytes(bad)), ft, 0, len(ft), len(out), "file:///t/dump", seen, lambda n: None)
    with pytest.raises(IntegrityError, match=r"frame 2 \(stored bytes .*damaged"):
        check.drain()
    assert seen == {0, 1}
    short = _FrameCheck(io.BytesIO(out[:ft[1][1] + 5]), ft, 0, len(ft), len(out), "file:///t/dump", set(),
                        lambda n: None)
    with pytest.raises(IntegrityError, match="truncated"):
        short.drain()
