"""S3 uploads hold a bounded number of bytes however many parts an object has (issue 16).

A fake S3 client records the parts; the multipart part size grows as the part count rises (as it does
past 1,000 parts on a real dump), here after a few parts so a test can reach the 64 MiB size. The
budget's high-water mark, and the bytes the fake still holds at once, stay within the budget.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from typing import Any

import pytest

from erpops.backup import storage
from erpops.backup.storage import MiB, S3Target


class Zeros:
    """A reader of n zero bytes (the same buffer every time: what matters is what the target holds)."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.block = bytes(4 * MiB)

    def read(self, size: int = -1) -> bytes:
        n = min(self.left, 4 * MiB, size if size >= 0 else self.left)
        self.left -= n
        return self.block[:n]


class FakeS3:
    def __init__(self) -> None:
        self.parts: dict[int, int] = {}
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak_in_flight_bytes = 0
        self.completed: list[dict[str, Any]] = []
        self.aborted = 0

    def create_multipart_upload(self, **kw: Any) -> dict[str, Any]:
        return {"UploadId": "u1"}

    def upload_part(self, *, Body: bytes, PartNumber: int, **kw: Any) -> dict[str, Any]:
        with self.lock:
            self.in_flight += len(Body)
            self.peak_in_flight_bytes = max(self.peak_in_flight_bytes, self.in_flight)
        time.sleep(0.4)  # a slow endpoint: uploads pile up unless something holds them back
        with self.lock:
            self.in_flight -= len(Body)
            self.parts[PartNumber] = len(Body)
        if PartNumber == getattr(self, "fail_at", -1):
            raise RuntimeError("simulated part failure")
        return {"ETag": f'"{PartNumber}"'}

    def complete_multipart_upload(self, *, MultipartUpload: dict[str, Any], **kw: Any) -> dict[str, Any]:
        self.completed.append(MultipartUpload)
        return {}

    def abort_multipart_upload(self, **kw: Any) -> dict[str, Any]:
        self.aborted += 1
        return {}

    def put_object(self, *, Body: bytes, **kw: Any) -> dict[str, Any]:
        return {}


@pytest.fixture
def target(monkeypatch: pytest.MonkeyPatch) -> tuple[S3Target, FakeS3]:
    # the part size doubles every 4 parts: 8, 16, 32, 64 MiB after 12 parts (a real dump: after 3,000)
    monkeypatch.setattr(storage, "_PARTS_PER_SIZE_STEP", 4)
    fake = FakeS3()
    return S3Target("bucket", "prefix", concurrency=8, client=fake), fake


def test_a_large_part_count_stays_within_the_memory_budget(target: tuple[S3Target, FakeS3]) -> None:
    t, fake = target
    total = 640 * MiB  # 4x8 + 4x16 + 4x32 + 6x64 MiB + a remainder: 19 parts, enough 64 MiB ones to fill the budget
    tracemalloc.start()
    try:
        size, sha = t.put_stream("sets/x/dump", Zeros(total), digest=False)
        _, allocated_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (size, sha) == (total, "")
    parts = [fake.parts[n] for n in sorted(fake.parts)]
    assert sum(parts) == total and max(parts) == storage.MAX_PART_SIZE
    assert all(p >= storage.S3_MIN_PART_SIZE for p in parts[:-1])
    assert [p["PartNumber"] for p in fake.completed[0]["Parts"]] == list(range(1, len(parts) + 1))
    assert t.budget.peak <= t.budget.limit
    assert fake.peak_in_flight_bytes <= t.budget.limit
    assert t.budget.used == 0
    # what Python really allocated at once: the parts in flight, the budget's worth, plus small change
    assert allocated_peak <= t.budget.limit + 8 * MiB, allocated_peak / MiB
    # 8 in flight at 64 MiB would be 512 MiB: the budget is what held it back
    assert t.budget.limit < t.concurrency * storage.MAX_PART_SIZE


def test_concurrent_uploads_share_one_budget(target: tuple[S3Target, FakeS3]) -> None:
    t, _ = target
    errors: list[BaseException] = []

    def upload(i: int) -> None:
        try:
            t.put_stream(f"filestore/{i:02d}/f", Zeros(20 * MiB + i), digest=False)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(12)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert t.budget.peak <= t.budget.limit and t.budget.used == 0


def test_a_failed_part_gives_every_byte_back(target: tuple[S3Target, FakeS3]) -> None:
    t, fake = target
    fake.fail_at = 6  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="simulated part failure"):
        t.put_stream("sets/x/dump", Zeros(600 * MiB), digest=False)
    assert fake.aborted == 1 and fake.completed == []
    assert t.budget.used == 0
