"""The feed into pg_restore: a unix socket in place of a pipe, so the loader thread is woken per quarter buffer,
not per 4 KiB page pg_restore reads. Every byte arrives, the end is seen, and a child that stopped reading fails
the write (it does not hang)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from erpops.backup.dump import Feed

pytestmark = pytest.mark.integration


def test_a_feed_delivers_every_byte_to_a_child_and_then_its_end() -> None:
    feed = Feed()
    proc = subprocess.Popen([sys.executable, "-c", "import hashlib, sys; "
                             "print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())"],
                            stdin=feed.child, stdout=subprocess.PIPE)
    feed.started()
    data = os.urandom(3 << 20)
    for at in range(0, len(data), 1 << 20):
        feed.write(data[at:at + (1 << 20)])
    feed.close()  # EOF for the child
    out, _ = proc.communicate(timeout=60)
    assert out.decode().strip() == hashlib.sha256(data).hexdigest()


def test_a_feed_whose_child_stopped_reading_fails_the_write() -> None:
    feed = Feed()
    proc = subprocess.Popen([sys.executable, "-c", "pass"], stdin=feed.child)
    feed.started()
    proc.wait()
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        for _ in range(64):
            feed.write(b"y" * (1 << 20))
    feed.close()
