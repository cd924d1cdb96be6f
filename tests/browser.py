"""A real headless Chromium (Debian's `chromium-headless-shell`), driven over the DevTools protocol.

`load(path)` opens a local HTML file the way a person's browser would, and answers what a person
would see: console errors, uncaught exceptions, failed loads, the value of a DOM query, and a
PNG screenshot of the whole page. No Selenium or Playwright: Chromium and websocket-client only.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CANDIDATES = ("chromium-headless-shell", "chromium", "chromium-browser")


def chromium() -> str:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless Chromium: apt-get install chromium-headless-shell (./run installs it)")
    raise AssertionError("unreachable")


@dataclass
class Page:
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    value: Any = None
    screenshot: Path | None = None


class _Cdp:
    def __init__(self, ws_url: str, timeout: float) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return dict(msg.get("result") or {})
            self.events.append(msg)

    def wait_event(self, method: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {method} within {timeout:g} s")
            self.events.append(json.loads(self.ws.recv()))


def load(path: Path, expression: str, screenshot: Path | None = None, timeout: float = 120.0) -> Page:
    """Open `path`, wait for its load event, evaluate `expression` (returned by value), screenshot it."""
    with tempfile.TemporaryDirectory(prefix="erpops-chromium-") as profile:
        proc = subprocess.Popen(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1280,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + timeout
            while not (port_file.exists() and port_file.read_text().strip()):
                assert proc.poll() is None, f"chromium exited {proc.returncode}"
                assert time.monotonic() < deadline, "chromium did not open its DevTools port"
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as resp:
                targets = json.loads(resp.read())
            page_target = next(t for t in targets if t.get("type") == "page")
            cdp = _Cdp(page_target["webSocketDebuggerUrl"], timeout)
            for domain in ("Page", "Runtime", "Log"):
                cdp.call(f"{domain}.enable")
            cdp.call("Page.navigate", url=path.resolve().as_uri())
            cdp.wait_event("Page.loadEventFired", timeout)
            result = cdp.call("Runtime.evaluate", expression=expression, returnByValue=True)
            page = Page(value=(result.get("result") or {}).get("value"))
            if screenshot is not None:
                metrics = cdp.call("Page.getLayoutMetrics")
                size = metrics.get("cssContentSize") or metrics["contentSize"]
                shot = cdp.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                                clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                screenshot.write_bytes(base64.b64decode(shot["data"]))
                page.screenshot = screenshot
            for e in cdp.events:
                params = e.get("params") or {}
                if e.get("method") == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                    page.console_errors.append(" ".join(str(a.get("value", a.get("description")))
                                                        for a in params.get("args", [])))
                elif e.get("method") == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                    page.console_errors.append(params["entry"].get("text", ""))
                elif e.get("method") == "Runtime.exceptionThrown":
                    page.exceptions.append(str(params.get("exceptionDetails", {}).get("text")))
            cdp.ws.close()
            return page
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
