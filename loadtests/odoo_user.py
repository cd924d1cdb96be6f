"""OdooUser: a Locust FastHttpUser speaking Odoo's JSON-RPC web API (Odoo 16.0-18.0).

Imports Locust (gevent monkey-patching): run it only inside `python -m loadtests.runner`.

Each simulated user logs in once (`/web/session/authenticate`), learns the server serie from
`/web/webclient/version_info`, and calls models through `/web/dataset/call_kw/<model>/<method>`.
Every call is one Locust request named `model:method`; a JSON-RPC `error` is reported as a failure
even though Odoo answers it with HTTP 200.

With `read_only` set (the runner's `--read-only`), `call_kw` refuses any method outside
`loadtests.modes.READ_METHODS` before sending it: the user crashes, which the gate reports and
`record` refuses, instead of writing.

Start-up (login, then the persona's `start_up`, which finds or creates its data) is counted in
`OdooUser.started_up`: the runner's warm-up ends when every spawned user has finished it. A failed
request names its cause: the HTTP status, the JSON-RPC error, or the connection error (refused,
reset, timed out), never a bare "HTTP 0".
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from locust import FastHttpUser
from locust.exception import StopUser

from loadtests.modes import READ_METHODS

_ids = itertools.count(1)


class RpcFailed(Exception):
    """A JSON-RPC call failed (transport, HTTP status or JSON-RPC error); already reported to Locust."""


class WriteRefused(Exception):
    """A read-only user was about to call a method that is not a read; nothing was sent."""


def transport_error(resp: Any) -> str:
    """What went wrong with a request that got no HTTP answer (status 0): the exception, named."""
    error = getattr(resp, "error", None)
    if error is None:
        return f"HTTP {resp.status_code}"
    return f"connection error {type(error).__name__}: {error}"[:300]


class CheckFailed(Exception):
    """A business result did not hold (the MO is not done, the transfer is not done...)."""


class OdooUser(FastHttpUser):
    """Base class for Odoo personas. Subclasses add tasks and use `call_kw` and `search_read`."""

    abstract = True
    # users (of any persona) that finished start-up, successfully or not; read by the runner
    started_up = 0
    # Filled in by the runner from the command line (never hard-coded credentials).
    db: str = ""
    login: str = "admin"
    password: str = ""
    read_only: bool = False
    # One connection per user, as a browser tab keeps one; no retries that would hide failures.
    max_retries = 0

    def on_start(self) -> None:
        try:
            self.uid: int | None = None
            self.serie = "17.0"
            self.odoo_context: dict[str, Any] = {}
            info = self.rpc("/web/webclient/version_info", {}, name="session:version_info")
            if info is not None:
                self.serie = str(info.get("server_serie") or info.get("server_version") or "17.0")
            result = self.rpc("/web/session/authenticate",
                              {"db": self.db, "login": self.login, "password": self.password},
                              name="session:authenticate")
            if not result or not result.get("uid"):
                raise StopUser()  # a user that cannot log in has nothing to measure; the failure is recorded
            self.uid = int(result["uid"])
            self.odoo_context = dict(result.get("user_context") or {})
            self.start_up()
        finally:
            OdooUser.started_up += 1

    def start_up(self) -> None:
        """What a persona does once after login (find or create its data); none by default."""

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        """Report a business result as its own event `check:<name>` (counted apart from latencies)."""
        self.environment.events.request.fire(
            request_type="CHECK", name=f"check:{name}", response_time=0, response_length=0, context={},
            exception=None if ok else CheckFailed(detail or name))
        return ok

    @property
    def major(self) -> int:
        try:
            return int(self.serie.split(".")[0].split("~")[-1].replace("saas", ""))
        except ValueError:
            return 17

    # ---- transport -------------------------------------------------------------------------
    def rpc(self, path: str, params: dict[str, Any], name: str) -> Any:
        """POST a JSON-RPC call; return its `result`, or None after reporting the failure to Locust."""
        payload = {"jsonrpc": "2.0", "method": "call", "params": params, "id": next(_ids)}
        with self.client.post(path, json=payload, name=name, catch_response=True) as resp:
            status = resp.status_code
            if status != 200:
                resp.failure(transport_error(resp) if not status else f"HTTP {status}")
                return None
            try:
                body = json.loads(resp.content or b"null")  # bytes straight to json: no charset sniffing
            except ValueError:
                resp.failure(f"not JSON: {(resp.text or '')[:80]!r}")
                return None
            if not isinstance(body, dict):
                resp.failure("JSON-RPC answer is not an object")
                return None
            if body.get("error") is not None:
                err = body["error"] or {}
                data = err.get("data") or {}
                resp.failure(f"JSON-RPC error {data.get('name') or err.get('code')}: "
                             f"{data.get('message') or err.get('message')}")
                return None
            if "result" not in body:
                resp.failure("JSON-RPC answer has neither result nor error")
                return None
            resp.success()
            return body["result"]

    def call_kw(self, model: str, method: str, args: list[Any] | None = None,
                kwargs: dict[str, Any] | None = None, name: str | None = None) -> Any:
        if self.read_only and method not in READ_METHODS:
            raise WriteRefused(f"read-only run: refused to call {model}.{method} (a persona bug: it must "
                               f"only read when read_only is set)")
        kwargs = dict(kwargs or {})
        kwargs.setdefault("context", self.odoo_context)
        params = {"model": model, "method": method, "args": list(args or []), "kwargs": kwargs}
        return self.rpc(f"/web/dataset/call_kw/{model}/{method}", params, name=name or f"{model}:{method}")

    # ---- helpers that differ between series ------------------------------------------------
    def search_read(self, model: str, domain: list[Any], fields: list[str], limit: int = 80,
                    order: str | None = None) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"domain": domain, "fields": fields, "limit": limit}
        if order:
            kwargs["order"] = order
        return self.call_kw(model, "search_read", [], kwargs) or []

    def web_search_read(self, model: str, domain: list[Any], fields: list[str], limit: int = 80,
                        order: str | None = None) -> list[dict[str, Any]]:
        """What a list view calls: Odoo 16 takes `fields`, 17 and later a `specification`."""
        kwargs: dict[str, Any] = {"domain": domain, "offset": 0, "limit": limit}
        if order:
            kwargs["order"] = order
        if self.major >= 17:
            kwargs["specification"] = {f: {} for f in fields}
        else:
            kwargs["fields"] = fields
        result = self.call_kw(model, "web_search_read", [], kwargs)
        return list((result or {}).get("records") or [])

    def page(self, path: str, name: str) -> bool:
        """A GET of a web client page, e.g. `/web`: HTTP 200 with a body is a success."""
        with self.client.get(path, name=name, catch_response=True) as resp:
            if resp.status_code != 200 or not resp.content:
                resp.failure(transport_error(resp) if not resp.status_code else f"HTTP {resp.status_code}")
                return False
            resp.success()
            return True
