"""Memory of the Odoo workers under load, read from their processes when the server runs on this machine.

Odoo's prefork server listens in its master process and serves in its worker children (which inherit the
listening socket); the workers are what `limit_memory_soft`/`limit_memory_hard` and the pod's memory
budget are about. The sampler finds the processes listening on the --host port, takes their children
(or themselves when there are none, as with threaded servers) and keeps the largest resident and
virtual size seen while the load runs. Never imports Locust.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

MIB = 1024 * 1024
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}  # noqa: S104 (names, not a bind)


def serving_processes(host: str) -> list[Any]:
    """The processes serving `host` when it is on this machine (empty when not, or not visible)."""
    import psutil

    parts = urlsplit(host)
    if parts.hostname not in LOCAL_HOSTS:
        return []
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        pids = {c.pid for c in psutil.net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid}
    except (psutil.AccessDenied, OSError):
        return []
    procs: list[Any] = []
    for pid in sorted(pids):
        try:
            parent = psutil.Process(pid)
            children = parent.children(recursive=True)
        except psutil.Error:
            continue
        procs += children or [parent]
    return procs


class MemorySampler:
    """`with MemorySampler(host) as m: <load>`; then m.rss_mib / m.vms_mib (None when nothing was readable)."""

    def __init__(self, host: str, interval: float = 0.25) -> None:
        self.host = host
        self.interval = interval
        self.rss_mib: float | None = None
        self.vms_mib: float | None = None
        self.processes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        import psutil

        procs = serving_processes(self.host)
        self.processes = max(self.processes, len(procs))
        for p in procs:
            try:
                info = p.memory_info()
            except psutil.Error:
                continue
            self.rss_mib = max(self.rss_mib or 0.0, info.rss / MIB)
            self.vms_mib = max(self.vms_mib or 0.0, info.vms / MIB)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> MemorySampler:
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sample()
