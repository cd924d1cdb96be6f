"""erpops' transfer threads share one glibc malloc arena (leftovers.one_malloc_arena, called by erpops.cli.run):
buffers freed by one thread are reused by the next instead of being held per thread (peak memory of an S3 backup).
Counted with glibc's own malloc_stats() in a fresh interpreter, where eight threads allocate 1-4 MiB buffers."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

PROGRAM = """
import ctypes, sys, threading
from erpops.backup.leftovers import one_malloc_arena
if sys.argv[1] == "one":
    one_malloc_arena()
def work(n):
    for i in range(200):
        data = bytearray((1 + (i + n) % 4) << 20)
        del data
threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(None).malloc_stats()
"""


def arenas(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True, timeout=120)
    return sum(1 for line in out.stderr.splitlines() if line.startswith("Arena "))


def test_every_thread_allocates_from_one_arena() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    assert arenas("default") > 1  # glibc gives new threads arenas of their own: what the call changes
    assert arenas("one") == 1
