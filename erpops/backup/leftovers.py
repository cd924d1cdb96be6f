"""What an erpops run leaves on a server while it works, marked so that a later run can tell it is dead.

(Filled in by the interrupts work; for now: children die with their parent.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys
import threading
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
_libc = None


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """prctl(PR_SET_PDEATHSIG): the kernel signals this process when the thread that forked it dies.

    Called in a child between fork and exec (preexec_fn), it makes psql, pg_dump and pg_restore
    die with erpops, even when erpops is killed by SIGKILL. Linux only; a no-op elsewhere.
    """
    global _libc
    if not sys.platform.startswith("linux"):
        return
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    _libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def _preexec_kill() -> None:
    die_with_parent(signal.SIGKILL)


def preexec() -> Callable[[], None] | None:
    """preexec_fn for a child erpops starts: it dies (SIGKILL) when erpops dies, however erpops dies.

    Linux ties the parent-death signal to the forking *thread*: a child started from another
    thread would die with that thread, so only children of the main thread get it.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    return _preexec_kill
