"""SIGTERM (the Job's deadline) interrupts the drill, but never inside logging's or threading's lock handling:
raised there, the exception would leave a lock taken and the next thread to log would block the cleanup.
And no library's `except Exception` may swallow it: botocore turned one raised inside an HTTP send into a
retried request, and the drill ran on with SIGTERM ignored until the Job's SIGKILL."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from types import FrameType, FunctionType

import pytest

from erpops.backup import drill


def frame_of_module(name: str) -> FrameType:
    """A real frame whose code belongs to module `name` (as the frame a signal interrupts would); "__del__": the
    frame of a finalizer."""
    if name == "__del__":
        class Finalized:
            def __del__(self) -> FrameType:  # type: ignore[misc]
                return sys._getframe()
        return Finalized().__del__()
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
    with pytest.raises(drill.DrillSignal, match="SIGTERM"):
        drill._raise_interrupted(signal.SIGTERM, frame_of_module("erpops.backup.restore"))
    assert drill._signals == ["SIGTERM"] and signal.getsignal(signal.SIGTERM) == signal.SIG_IGN


@pytest.mark.parametrize("module", ["logging", "threading", "__del__"])
def test_sigterm_inside_lock_code_is_raised_a_moment_later(handlers: None, module: str) -> None:
    assert drill._raise_interrupted(signal.SIGTERM, frame_of_module(module)) is None  # deferred, not raised
    assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= drill._DEFER_SECONDS
    with pytest.raises(drill.DrillSignal, match="interrupted by SIGTERM"):  # SIGALRM: raised in this frame
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(0.01)
    assert drill._signals == ["SIGTERM"]


def _drill_handler() -> None:
    drill._raise_interrupted(signal.SIGTERM, sys._getframe())  # as the kernel would deliver it here


def _patch_handler() -> None:
    from erpops.patch import PatchInterrupted

    raise PatchInterrupted("interrupted by signal 15")  # what the patch's handler raises


@pytest.mark.parametrize("handler", [_drill_handler, _patch_handler], ids=["drill", "patch"])
def test_sigterm_inside_an_s3_request_is_not_retried_away(handlers: None, monkeypatch: pytest.MonkeyPatch,
                                                          handler: Callable[[], None]) -> None:
    """The signal lands while botocore waits for S3's answer (seen in a drill: get_object). The command's own
    exception must leave botocore as it came, at the first attempt, with no retry."""
    import urllib3.connectionpool

    from erpops.backup.leftovers import Terminated
    from erpops.backup.storage import s3_client

    attempts = []

    def urlopen(self: object, *args: object, **kwargs: object) -> None:
        attempts.append(args[:2])
        handler()

    monkeypatch.setattr(urllib3.connectionpool.HTTPConnectionPool, "urlopen", urlopen)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-only")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-only")
    client = s3_client("http://127.0.0.1:9", "us-east-1", max_attempts=5, pool=1)
    with pytest.raises(Terminated, match=r"SIGTERM|signal 15"):
        client.get_object(Bucket="b", Key="k")
    assert len(attempts) == 1, attempts
