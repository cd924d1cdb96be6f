"""Local filestore copies: how many transfers run at once, and a target whose directory a prune removed."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from erpops.backup import filestore as fs
from erpops.backup.storage import FileTarget, S3Target


def s3() -> S3Target:
    return S3Target("bucket", "prefix", endpoint_url="http://127.0.0.1:9")  # no request is made


def test_a_local_copy_runs_one_transfer_more_than_the_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    local = FileTarget(tmp_path)
    assert fs.transfer_workers(local, FileTarget(tmp_path / "t"), None) == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(32)))
    assert fs.transfer_workers(local, FileTarget(tmp_path / "t"), None) == fs.DEFAULT_WORKERS  # never more


def test_s3_at_either_end_keeps_more_transfers_in_flight_and_a_given_count_is_kept(tmp_path: Path) -> None:
    local = FileTarget(tmp_path)
    assert fs.transfer_workers(local, s3(), None) == fs.DEFAULT_WORKERS
    assert fs.transfer_workers(s3(), local, None) == fs.DEFAULT_WORKERS
    assert fs.transfer_workers(local, local, 5) == 5
    assert fs.transfer_workers(local, s3(), 1) == 1


def test_an_object_goes_into_a_directory_another_run_pruned_meanwhile(tmp_path: Path) -> None:
    """This target remembers the directories it made; a prune by another run removed one, emptied."""
    mine, other = FileTarget(tmp_path), FileTarget(tmp_path)
    mine.put_stream("filestore/ab/ab01", io.BytesIO(b"first"))
    other.delete_many(["filestore/ab/ab01"])
    assert not (tmp_path / "filestore" / "ab").exists()
    mine.put_stream("filestore/ab/ab02", io.BytesIO(b"second"))
    assert (tmp_path / "filestore" / "ab" / "ab02").read_bytes() == b"second"
    mine.delete_many(["filestore/ab/ab02"])  # its own prune: the directory goes, and comes back when needed
    mine.put_stream("filestore/ab/ab03", io.BytesIO(b"third"))
    assert (tmp_path / "filestore" / "ab" / "ab03").read_bytes() == b"third"
