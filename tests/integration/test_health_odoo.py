"""Odoo checks against FakeOdoo: a test double speaking real HTTP on loopback, like Odoo's routes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from erpops.local import free_port
from healthchecks import odoo
from healthchecks.core import Check, Level, State, Targets, Thresholds, run_checks

pytestmark = pytest.mark.integration


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout tests) makes the handler's write fail: expected


class FakeOdoo:
    """Answers /web/health, /web/login, version_info, authenticate and call_kw as Odoo 16-18 do.

    Knobs: serie, db_up (what db_server_status reports), rpc_error (every JSON-RPC answers an
    `error` with HTTP 200), login_delay (seconds before /web/login answers), databases (what
    dbfilter lets through: /web/login picks its database as Odoo's `ensure_db` does, a 302 to set
    the session's database from `?db=`, a 303 to the database selector when none can be chosen).
    """

    def __init__(self) -> None:
        self.serie = "17.0"
        self.db_up = True
        self.rpc_error = False
        self.login_delay = 0.0
        self.databases = ["mfg"]
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json", **headers: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                fake.requests.append(f"GET {self.path}")
                if self.path == "/web/health":
                    self._send(200, b'{"status": "pass"}')
                elif self.path == "/web/health?db_server_status=1" and fake.serie >= "17.0":
                    ok = fake.db_up
                    body = {"status": "pass" if ok else "fail", "db_server_status": ok}
                    self._send(200 if ok else 500, json.dumps(body).encode())
                elif self.path.split("?")[0] == "/web/login":
                    self._login()
                elif self.path == "/web/database/selector":
                    self._send(200, b"<html><div class='o_database_list'>mfg mfg_test</div></html>", "text/html")
                else:
                    self._send(404, b"not found", "text/html")

            def _login(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                asked = (query.get("db") or [""])[0].strip() or None
                cookie = SimpleCookie(self.headers.get("Cookie", ""))
                session_db = cookie["session_db"].value if "session_db" in cookie else None
                if asked and asked not in fake.databases:
                    asked = None
                if asked and not session_db:  # a database asked for on a new session: set it, same URL
                    return self._send(302, b"", "text/html", Location=self.path,
                                      **{"Set-Cookie": f"session_db={asked}"})
                db = asked or (session_db if session_db in fake.databases else None)
                if not db and len(fake.databases) == 1:
                    db = fake.databases[0]
                if not db:
                    return self._send(303, b"", "text/html", Location="/web/database/selector")
                if db != session_db:
                    return self._send(302, b"", "text/html", Location=self.path, **{"Set-Cookie": f"session_db={db}"})
                time.sleep(fake.login_delay)
                self._send(200, b"<html><form class='oe_login_form'></form></html>", "text/html")
                return None

            def do_POST(self) -> None:
                fake.requests.append(f"POST {self.path}")
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if fake.rpc_error:
                    err = {"code": 200, "message": "Odoo Server Error",
                           "data": {"name": "psycopg2.OperationalError", "message": "connection lost"}}
                    return self._send(200, json.dumps({"jsonrpc": "2.0", "id": req.get("id"), "error": err}).encode())
                params = req["params"]
                if self.path == "/web/webclient/version_info":
                    result: Any = {"server_version": f"{fake.serie}+e", "server_serie": fake.serie,
                                   "server_version_info": [int(fake.serie[:2]), 0, 0, "final", 0, ""]}
                elif self.path == "/web/session/authenticate":
                    ok = params["login"] == "admin" and params["password"] == "admin"
                    result = {"uid": 2 if ok else None}
                    if not ok:
                        err = {"code": 200, "message": "Odoo Server Error",
                               "data": {"name": "odoo.exceptions.AccessDenied", "message": "Access Denied"}}
                        body = {"jsonrpc": "2.0", "id": req.get("id"), "error": err}
                        return self._send(200, json.dumps(body).encode())
                elif self.path == "/web/dataset/call_kw":
                    result = [{"id": 2, "login": "admin"}]
                else:
                    return self._send(404, b"not found", "text/html")
                self._send(200, json.dumps({"jsonrpc": "2.0", "id": req.get("id"), "result": result}).encode())
                return None

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> FakeOdoo:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_odoo() -> Iterator[FakeOdoo]:
    with FakeOdoo() as fake:
        yield fake


def _relaxed() -> Thresholds:
    """The defaults with the response-time levels lifted: how fast a test double answers on a busy machine
    is a timing, not what these tests judge (OK/CRIT by content)."""
    th = Thresholds.defaults()
    th.levels["odoo_latency_ms"] = Level(60_000, 120_000)
    return th


def _targets(fake: FakeOdoo, **kw: Any) -> Targets:
    return Targets(odoo_url=fake.url, **kw)


def test_healthy_odoo_17(fake_odoo: FakeOdoo) -> None:
    th = _relaxed()
    t = _targets(fake_odoo, odoo_db="mfg", odoo_login="admin", odoo_password="admin")
    for fn in (odoo.health, odoo.login_latency, odoo.version, odoo.call_kw):
        state, message, *_ = fn(t, th)
        assert state is State.OK, f"{fn.__name__}: {message}"
    assert "GET /web/health?db_server_status=1" in fake_odoo.requests


def test_odoo_16_is_not_asked_for_db_server_status(fake_odoo: FakeOdoo) -> None:
    fake_odoo.serie = "16.0"
    state, message, _ = odoo.health(_targets(fake_odoo), _relaxed())
    assert state is State.OK, message
    assert "GET /web/health?db_server_status=1" not in fake_odoo.requests


def test_database_down_behind_odoo_is_crit(fake_odoo: FakeOdoo) -> None:
    fake_odoo.db_up = False
    state, message, metrics = odoo.health(_targets(fake_odoo), _relaxed())
    assert state is State.CRIT and "database is not" in message
    assert metrics["db_http_status"] == 500


@pytest.mark.parametrize("check", [odoo.version, odoo.health, odoo.call_kw])
def test_jsonrpc_error_with_http_200_is_a_failure(fake_odoo: FakeOdoo, check: Any) -> None:
    fake_odoo.rpc_error = True
    t = _targets(fake_odoo, odoo_db="mfg", odoo_login="admin", odoo_password="admin")
    state, message, _ = check(t, _relaxed())
    assert state is State.CRIT
    assert "psycopg2.OperationalError" in message


def test_wrong_password_is_crit(fake_odoo: FakeOdoo) -> None:
    t = _targets(fake_odoo, odoo_db="mfg", odoo_login="admin", odoo_password="wrong")
    state, message, _ = odoo.call_kw(t, _relaxed())
    assert state is State.CRIT and "AccessDenied" in message


def test_slow_login_page_warns(fake_odoo: FakeOdoo) -> None:
    fake_odoo.login_delay = 0.15
    th = _relaxed().override(odoo_latency_ms=(100, 1000))
    state, message, metrics = odoo.login_latency(_targets(fake_odoo), th)
    assert state is State.WARN, message
    assert metrics["latency_ms"] >= 150


def test_slow_login_page_past_timeout_is_unknown(fake_odoo: FakeOdoo) -> None:
    fake_odoo.login_delay = 0.5
    th = _relaxed()
    th.timeout = 0.2
    [result] = run_checks([Check("odoo.login", odoo.login_latency)], _targets(fake_odoo), th)
    assert result.state is State.UNKNOWN and "timed out" in result.message


def test_version_drift_from_spec_warns(fake_odoo: FakeOdoo) -> None:
    th = _relaxed()
    th.odoo_version = "18.0"
    state, message, *_ = odoo.version(_targets(fake_odoo), th)
    assert state is State.WARN and "18.0" in message


@pytest.mark.parametrize("check", [odoo.health, odoo.login_latency, odoo.version])
def test_unreachable_odoo_is_unknown_never_ok(check: Any) -> None:
    t = Targets(odoo_url=f"http://127.0.0.1:{free_port()}")
    [result] = run_checks([Check("odoo.x", check)], t, _relaxed())
    assert result.state is State.UNKNOWN
    assert "Connection refused" in result.message


def test_several_databases_without_dbfilter_is_ok_through_the_selector(fake_odoo: FakeOdoo) -> None:
    fake_odoo.databases = ["mfg", "mfg_test"]
    state, message, metrics = odoo.login_latency(_targets(fake_odoo), _relaxed())
    assert state is State.OK, message
    assert "database selector (via 303 /web/database/selector)" in message and "--odoo-db" in message
    assert fake_odoo.requests == ["GET /web/login", "GET /web/database/selector"]
    assert metrics["redirects"] == 1


def test_several_databases_with_the_db_parameter_render_the_login_page(fake_odoo: FakeOdoo) -> None:
    fake_odoo.databases = ["mfg", "mfg_test"]
    state, message, _ = odoo.login_latency(_targets(fake_odoo, odoo_db="mfg"), _relaxed())
    assert state is State.OK, message
    assert "/web/login?db=mfg renders the login page (via 302 /web/login)" in message
    assert fake_odoo.requests == ["GET /web/login?db=mfg", "GET /web/login?db=mfg"]


def test_a_database_odoo_does_not_serve_is_crit(fake_odoo: FakeOdoo) -> None:
    fake_odoo.databases = ["mfg", "mfg_test"]
    state, message, _ = odoo.login_latency(_targets(fake_odoo, odoo_db="prod"), _relaxed())
    assert state is State.CRIT
    assert "does not serve database 'prod'" in message


def test_a_page_without_the_login_form_is_crit(fake_odoo: FakeOdoo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(odoo, "LOGIN_FORM", "no_such_form_class")
    state, message, _ = odoo.login_latency(_targets(fake_odoo), _relaxed())
    assert state is State.CRIT and "without Odoo's login form" in message
