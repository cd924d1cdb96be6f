"""SIGTERM (the Job's deadline) interrupts the drill, but never inside logging's or threading's lock handling:
raised there, the exception would leave a lock taken and the next thread to log would block the cleanup."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from types import FrameType, FunctionType

import pytest

from erpops.backup import drill


def frame_of_module(name: str) -> FrameType:
    """A real frame whose code belongs to module `name` (as the frame a signal interrupts would)."""
    code = compile("sys._getframe()", f"<{name}>", "eval")
    return FunctionType(code, {"__name__": name, "sys": sys})()


@pytest.fixture
def handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGALRM)}
    drill._signals.clear()
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    for s, h in saved.items():
        signal.signal(s, h)
    drill._signals.clear()


def test_sigterm_in_plain_code_raises_at_once_and_ignores_the_next(handlers: None) -> None:
    with pytest.raises(drill.DrillInterrupted, match="SIGTERM"):
        drill._raise_interrupted(signal.SIGTERM, frame_of_module("erpops.backup.restore"))
    assert drill._signals == ["SIGTERM"] and signal.getsignal(signal.SIGTERM) == signal.SIG_IGN


@pytest.mark.parametrize("module", ["logging", "threading"])
def test_sigterm_inside_lock_code_is_raised_a_moment_later(handlers: None, module: str) -> None:
    assert drill._raise_interrupted(signal.SIGTERM, frame_of_module(module)) is None  # deferred, not raised
    assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= drill._DEFER_SECONDS
    with pytest.raises(drill.DrillInterrupted, match="interrupted by SIGTERM"):  # SIGALRM: raised in this frame
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(0.01)
    assert drill._signals == ["SIGTERM"]
