"""Odoo checks over real HTTP: /web/health, the login page, version_info, an authenticated call_kw.

A JSON-RPC answer carrying an `error` key is a failure even with HTTP 200 (Odoo reports every
server-side exception that way).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

from healthchecks.core import Check, State, Targets, Thresholds, Unknown

Outcome = tuple[State, str, dict[str, float]]


class RpcError(Exception):
    """The server answered, but with a JSON-RPC error (HTTP 200)."""


def _url(t: Targets, path: str) -> str:
    if not t.odoo_url:
        raise Unknown("no Odoo URL given (--odoo-url)")
    return t.odoo_url.rstrip("/") + path


def _get(t: Targets, th: Thresholds, path: str, session: requests.Session | None = None) -> requests.Response:
    try:
        return (session or requests).get(_url(t, path), timeout=th.timeout, allow_redirects=False)
    except requests.RequestException as exc:
        raise Unknown(f"GET {path}: {_reason(exc)}") from exc


def rpc(t: Targets, th: Thresholds, path: str, params: dict[str, Any],
        session: requests.Session | None = None) -> Any:
    payload = {"jsonrpc": "2.0", "method": "call", "params": params, "id": 1}
    try:
        resp = (session or requests).post(_url(t, path), json=payload, timeout=th.timeout)
    except requests.RequestException as exc:
        raise Unknown(f"POST {path}: {_reason(exc)}") from exc
    if resp.status_code != 200:
        raise RpcError(f"POST {path}: HTTP {resp.status_code}")
    try:
        body = resp.json()
    except ValueError as exc:
        raise RpcError(f"POST {path}: not JSON ({resp.text[:80]!r})") from exc
    if "error" in body:
        err = body["error"] or {}
        data = err.get("data") or {}
        raise RpcError(f"POST {path}: JSON-RPC error {data.get('name') or err.get('code')}: "
                       f"{data.get('message') or err.get('message')}")
    return body.get("result")


def _reason(exc: requests.RequestException) -> str:
    """The root cause (connection refused, name not known) rather than urllib3's nested wrappers."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo:
        cur = todo.pop()
        if cur in seen:
            continue
        seen.append(cur)
        if isinstance(cur, OSError) and cur.strerror:
            return f"connection failed: {cur.strerror}"
        todo += [e for e in (getattr(cur, "reason", None), cur.__cause__, cur.__context__, *cur.args)
                 if isinstance(e, BaseException)]
    return str(exc)[:200]


def server_serie(t: Targets, th: Thresholds) -> str:
    info = rpc(t, th, "/web/webclient/version_info", {})
    return str(info.get("server_serie") or info.get("server_version", "?"))


def version(t: Targets, th: Thresholds) -> Outcome:
    try:
        info = rpc(t, th, "/web/webclient/version_info", {})
    except RpcError as exc:
        return State.CRIT, str(exc), {}
    serie = str(info.get("server_serie") or "?")
    full = info.get("server_version", serie)
    metrics = {"major": float(serie.split(".")[0]) if serie[:1].isdigit() else 0.0}
    if th.odoo_version and serie != th.odoo_version:
        return State.WARN, f"Odoo {full}, but the spec says {th.odoo_version}: deployed image drifted", metrics
    return State.OK, f"Odoo {full}", metrics


def health(t: Targets, th: Thresholds) -> Outcome:
    resp = _get(t, th, "/web/health")
    metrics: dict[str, float] = {"http_status": resp.status_code}
    if resp.status_code != 200:
        return State.CRIT, f"/web/health answered HTTP {resp.status_code}", metrics
    try:
        serie = server_serie(t, th)
    except RpcError as exc:
        return State.CRIT, f"/web/health ok, but {exc}", metrics
    major = int(serie.split(".")[0]) if serie[:1].isdigit() else 0
    if major < 17:  # db_server_status appeared in 17.0
        return State.OK, f"/web/health pass (Odoo {serie}: no db_server_status before 17.0)", metrics
    resp = _get(t, th, "/web/health?db_server_status=1")
    metrics["db_http_status"] = resp.status_code
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if resp.status_code != 200 or body.get("db_server_status") is not True:
        return State.CRIT, f"Odoo up but its database is not: HTTP {resp.status_code} {body or resp.text[:80]!r}", \
            metrics
    return State.OK, f"/web/health pass, database reachable (Odoo {serie})", metrics


# Odoo's login template (web.login, 16.0-18.0) renders its form with this class.
LOGIN_FORM = "oe_login_form"
DB_SELECTOR = "/web/database/selector"
MAX_REDIRECTS = 5


def login_latency(t: Targets, th: Thresholds) -> Outcome:
    """The login page renders, and how fast.

    Odoo's `ensure_db` answers /web/login with a 303 to the database selector when it serves
    several databases and no dbfilter picks one, and with a 302 to the same URL (setting the
    session's database) when `?db=` names one. So: with --odoo-db, GET /web/login?db=<db> in one
    session, following redirects, and require the login form; without it, follow the redirect and
    accept the database selector as a healthy answer (saying so).
    """
    path = "/web/login" + (f"?{urlencode({'db': t.odoo_db})}" if t.odoo_db else "")
    t0 = time.monotonic()
    with requests.Session() as session:
        session.max_redirects = MAX_REDIRECTS
        try:
            resp = session.get(_url(t, path), timeout=th.timeout, allow_redirects=True)
        except requests.TooManyRedirects:
            return State.CRIT, f"{path} redirects more than {MAX_REDIRECTS} times (a redirect loop?)", {}
        except requests.RequestException as exc:
            raise Unknown(f"GET {path}: {_reason(exc)}") from exc
    ms = (time.monotonic() - t0) * 1000
    hops = " -> ".join(f"{r.status_code} {urlsplit(r.headers.get('Location', '')).path or '?'}" for r in resp.history)
    via = f" (via {hops})" if hops else ""
    landed = urlsplit(resp.url).path
    metrics = {"latency_ms": round(ms, 1), "http_status": resp.status_code, "redirects": len(resp.history)}
    if resp.status_code != 200:
        return State.CRIT, f"{path} answered HTTP {resp.status_code}{via} in {ms:.0f} ms", metrics
    level = th["odoo_latency_ms"]
    if LOGIN_FORM in resp.text:
        return level.grade(ms), f"{path} renders the login page{via} in {ms:.0f} ms ({level.describe()})", metrics
    if landed == DB_SELECTOR:
        if t.odoo_db:
            return State.CRIT, (f"{path} lands on the database selector{via}: Odoo does not serve database "
                                f"{t.odoo_db!r} (missing, or rejected by dbfilter)"), metrics
        return level.grade(ms), (f"/web/login leads to the database selector{via}, which renders in {ms:.0f} ms "
                                 f"({level.describe()}): Odoo serves several databases and no dbfilter picks one; "
                                 "give --odoo-db to check a database's login page"), metrics
    return State.CRIT, f"{path} answered HTTP 200{via} at {landed} without Odoo's login form", metrics


def call_kw(t: Targets, th: Thresholds) -> Outcome:
    if not (t.odoo_db and t.odoo_login and t.odoo_password):
        raise Unknown("call_kw needs --odoo-db, --odoo-login and ERPOPS_ODOO_PASSWORD")
    t0 = time.monotonic()
    with requests.Session() as session:
        try:
            auth = rpc(t, th, "/web/session/authenticate",
                       {"db": t.odoo_db, "login": t.odoo_login, "password": t.odoo_password}, session)
            uid = (auth or {}).get("uid")
            if not uid:
                return State.CRIT, f"login as {t.odoo_login} on {t.odoo_db} refused", {}
            rows = rpc(t, th, "/web/dataset/call_kw", {
                "model": "res.users", "method": "read", "args": [[uid], ["login"]], "kwargs": {}}, session)
        except RpcError as exc:
            return State.CRIT, str(exc), {}
    ms = (time.monotonic() - t0) * 1000
    level = th["odoo_latency_ms"]
    if not rows or rows[0].get("login") != t.odoo_login:
        return State.CRIT, f"res.users read returned {rows!r:.80}", {"latency_ms": round(ms, 1)}
    return level.grade(ms / 2), f"authenticate + res.users read in {ms:.0f} ms ({level.describe()} per call)", \
        {"latency_ms": round(ms, 1)}


CHECKS = [Check("odoo.health", health), Check("odoo.login", login_latency), Check("odoo.version", version)]
CALL_KW = Check("odoo.call_kw", call_kw)
