"""Progress of long backup steps: a rich bar on a terminal, structured JSON lines elsewhere.

On a TTY each step shows bytes, MB/s and ETA (when the total is known). Off a TTY (CI, cron,
Ansible) each step logs at most one line every 2 s on stderr, plus a last line when it ends:

    {"event": "progress", "step": "dump", "bytes": 104857600, "total": null, "rate_mb_s": 48.2,
     "eta_seconds": null, "elapsed_seconds": 2.2}
    {"event": "step_done", "step": "dump", "bytes": 209715200, "rate_mb_s": 51.0, "elapsed_seconds": 4.1}

`note()` lines carry what the step decided (`{"event": "note", "message": ...}`). stdout stays
free for the command's result. A `listener` sees every advance: tests use it to break things
once bytes have flowed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any

MB = 1_000_000
JSON_INTERVAL_SECONDS = 2.0

Listener = Callable[[str, int], None]


class Task:
    """One step's byte counter; thread-safe, so parallel filestore copies share it."""

    def __init__(self, reporter: Reporter, step: str, total: int | None) -> None:
        self.reporter = reporter
        self.step = step
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._closed = False

    def advance(self, n: int) -> None:
        if n <= 0:
            return
        with self._lock:
            self.done += n
            done = self.done
        self.reporter._advanced(self, n)
        if self.reporter.listener is not None:
            self.reporter.listener(self.step, done)

    def rate_mb_s(self) -> float:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return self.done / elapsed / MB

    def eta_seconds(self) -> float | None:
        if not self.total:
            return None
        rate = self.done / max(time.monotonic() - self.started, 1e-6)
        return max(self.total - self.done, 0) / rate if rate > 0 else None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.reporter._closed(self)

    def __enter__(self) -> Task:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Reporter:
    """No output at all (library use, tests); the base of the two real reporters."""

    def __init__(self, listener: Listener | None = None) -> None:
        self.listener = listener

    def task(self, step: str, total: int | None = None) -> Task:
        return Task(self, step, total)

    def note(self, message: str, **fields: Any) -> None:
        """A decision or finding worth showing (pre-flight result, fallback taken)."""

    def _advanced(self, task: Task, n: int) -> None:
        pass

    def _closed(self, task: Task) -> None:
        pass


class JsonReporter(Reporter):
    """JSON lines on a stream (stderr), at most one progress line per step every 2 s."""

    def __init__(
        self, stream: IO[str] | None = None, listener: Listener | None = None, interval: float = JSON_INTERVAL_SECONDS
    ) -> None:
        super().__init__(listener)
        self.stream = stream or sys.stderr
        self.interval = interval
        self._last: dict[int, float] = {}
        self._lock = threading.Lock()

    def _emit(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.stream.write(json.dumps(record) + "\n")
            self.stream.flush()

    def note(self, message: str, **fields: Any) -> None:
        self._emit({"event": "note", "message": message, **fields})

    def _advanced(self, task: Task, n: int) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(id(task), task.started)
            if now - last < self.interval:
                return
            self._last[id(task)] = now
        eta = task.eta_seconds()
        self._emit({
            "event": "progress", "step": task.step, "bytes": task.done, "total": task.total,
            "rate_mb_s": round(task.rate_mb_s(), 2), "eta_seconds": None if eta is None else round(eta, 1),
            "elapsed_seconds": round(now - task.started, 1),
        })

    def _closed(self, task: Task) -> None:
        self._last.pop(id(task), None)
        self._emit({
            "event": "step_done", "step": task.step, "bytes": task.done,
            "rate_mb_s": round(task.rate_mb_s(), 2), "elapsed_seconds": round(time.monotonic() - task.started, 1),
        })


class RichReporter(Reporter):
    """A rich progress bar per step on a terminal (stderr): bytes, MB/s, ETA (elapsed once done)."""

    def __init__(self, listener: Listener | None = None) -> None:
        super().__init__(listener)
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description:<16}"), BarColumn(), DownloadColumn(), TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(elapsed_when_finished=True), console=self.console,
        )
        self._ids: dict[int, Any] = {}
        self._lock = threading.Lock()

    def task(self, step: str, total: int | None = None) -> Task:
        task = Task(self, step, total)
        with self._lock:
            if not self._ids:
                self.progress.start()
            self._ids[id(task)] = self.progress.add_task(step, total=total, rate="")
        return task

    def note(self, message: str, **fields: Any) -> None:
        self.console.print(message, markup=False, highlight=False)

    def _advanced(self, task: Task, n: int) -> None:
        self.progress.update(self._ids[id(task)], advance=n, rate=f"{task.rate_mb_s():7.1f} MB/s")

    def _closed(self, task: Task) -> None:
        with self._lock:
            task_id = self._ids.pop(id(task))
            self.progress.update(task_id, total=task.done, completed=task.done,
                                 rate=f"{task.rate_mb_s():7.1f} MB/s")
            if not self._ids:
                self.progress.stop()  # the finished bars stay on screen; the next step starts afresh
                for old in list(self.progress.task_ids):
                    self.progress.remove_task(old)


def make_reporter(*, tty: bool | None = None, listener: Listener | None = None) -> Reporter:
    """The reporter for this process: rich on a terminal stderr, JSON lines otherwise."""
    if tty is None:
        tty = sys.stderr.isatty()
    return RichReporter(listener) if tty else JsonReporter(listener=listener)


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB' (binary units, one decimal; bytes as a whole number)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n}"
