"""OdooDouble: a test double of Odoo's JSON-RPC web API, speaking real HTTP on loopback.

It answers what the load-test personas call, as Odoo 16.0-18.0 do: `/web`, `load_menus`,
`/web/action/load`, `version_info`, `/web/session/authenticate` and `call_kw` for mrp.production,
mrp.bom, stock.picking(.type), stock.warehouse, purchase.order, sale.order, res.partner and
product.product, with plausible in-memory records. `web_search_read` is checked against the
signature of the configured serie (16: `fields`; 17+: `specification`), as a real server would.

Knobs (constructor, `set()`, or `POST /__double__/control` with a JSON object of the same names):
  base_ms      latency added to every answer                      (default 5)
  jitter_ms    uniform random extra latency in [0, jitter_ms]     (default 2)
  multiplier   scales base + jitter of every request              (default 1.0)
  per_name     {request name: multiplier}, e.g. {"sale.order:create": 1.25}
  error_rate   share of call_kw answered with a JSON-RPC error, HTTP 200   (default 0)
  serie        "16.0", "17.0" or "18.0"                                    (default "17.0")
  workers      requests served at once, as Odoo's prefork workers (0 = unbounded; default 0): with
               workers=W and base_ms=S (jitter 0) the double saturates at W x 1000/S req/s
`GET /__double__/stats` returns the request count per name. `served` counts the (model, method) pairs
call_kw actually executed (from the JSON-RPC params, which is what Odoo dispatches on, not the URL),
and `snapshot()` is a deep copy of every record: a read-only load must leave both without writes.

Standalone: `python -m loadtests.testing.odoo_double --port 8069 [--serie 16.0 --base-ms 20]`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import random
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DB = "odoo_double"
LOGIN = "admin"
PASSWORD = "admin"  # noqa: S105 (the double's fixed test credential)

_CALL_KW = re.compile(r"^/web/dataset/call_kw/(?P<model>[\w.]+)/(?P<method>\w+)$")


class RpcFault(Exception):
    """Answered as a JSON-RPC error with HTTP 200, as Odoo answers a server-side exception."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a load generator stopping mid-request breaks the write: expected


class OdooDouble:
    """In-memory Odoo for load tests. `with OdooDouble() as odoo: odoo.url` serves on a free port."""

    def __init__(self, port: int = 0, serie: str = "17.0", base_ms: float = 5.0, jitter_ms: float = 2.0,
                 error_rate: float = 0.0, seed: int | None = None, workers: int = 0) -> None:
        self.serie = serie
        self.workers = workers
        self._slots = threading.BoundedSemaphore(workers) if workers else None
        self.base_ms = base_ms
        self.jitter_ms = jitter_ms
        self.multiplier = 1.0
        self.per_name: dict[str, float] = {}
        self.error_rate = error_rate
        self.counts: Counter[str] = Counter()
        self.served: Counter[tuple[str, str]] = Counter()  # (model, method) executed by call_kw
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._sessions: set[str] = set()
        self._records: dict[str, dict[int, dict[str, Any]]] = {}
        self._next_id = 1000
        self._seed_data()
        self._server = _Server(("127.0.0.1", port), self._handler())
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OdooDouble:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="odoo-double", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> OdooDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set(self, **knobs: Any) -> None:
        """Change latency, error rate or serie while serving (same names as the control endpoint)."""
        allowed = {"base_ms", "jitter_ms", "multiplier", "per_name", "error_rate", "serie", "workers"}
        unknown = set(knobs) - allowed
        if unknown:
            raise ValueError(f"unknown knob(s) {sorted(unknown)}: use {sorted(allowed)}")
        for key, value in knobs.items():
            setattr(self, key, dict(value) if key == "per_name" else value)
        if "workers" in knobs:
            self._slots = threading.BoundedSemaphore(self.workers) if self.workers else None

    def snapshot(self) -> dict[str, dict[int, dict[str, Any]]]:
        """A deep copy of every record, to compare before and after a load."""
        with self._lock:
            return copy.deepcopy(self._records)

    # ---- data ------------------------------------------------------------------------------
    def _seed_data(self) -> None:
        r = self._records
        r["res.partner"] = {i: {"id": i, "name": f"Partner {i}", "customer_rank": i % 2, "supplier_rank": 1 - i % 2}
                            for i in range(1, 41)}
        r["product.product"] = {i: {"id": i, "name": f"Product {i}", "product_tmpl_id": [i, f"Product {i}"],
                                    "list_price": 10.0 + i, "standard_price": 5.0 + i, "type": "product"}
                                for i in range(1, 31)}
        r["mrp.bom"] = {i: {"id": i, "product_tmpl_id": [i, f"Product {i}"], "product_id": [i, f"Product {i}"],
                            "product_qty": 1.0, "type": "normal", "code": f"BOM{i}"} for i in range(1, 11)}
        r["stock.warehouse"] = {1: {"id": 1, "name": "WH", "code": "WH", "lot_stock_id": [8, "WH/Stock"]}}
        r["stock.picking.type"] = {
            1: {"id": 1, "name": "Receipts", "code": "incoming", "warehouse_id": [1, "WH"]},
            2: {"id": 2, "name": "Delivery Orders", "code": "outgoing", "warehouse_id": [1, "WH"]},
            8: {"id": 8, "name": "Manufacturing", "code": "mrp_operation", "warehouse_id": [1, "WH"]},
        }
        r["mrp.production"], r["stock.picking"], r["purchase.order"], r["sale.order"] = {}, {}, {}, {}
        for i in range(1, 201):
            state = ("draft", "confirmed", "progress", "done")[i % 4]
            r["mrp.production"][i] = self._mo(i, product=1 + i % 10, qty=1.0 + i % 5, state=state)
        for i in range(1, 201):
            r["stock.picking"][i] = self._picking(i, 1 + i % 2, "assigned" if i % 3 else "done")

    @staticmethod
    def _mo(mo_id: int, product: int, qty: float, state: str) -> dict[str, Any]:
        return {"id": mo_id, "name": f"WH/MO/{mo_id:05d}", "product_id": [product, f"Product {product}"],
                "bom_id": [product, f"BOM{product}"], "product_qty": qty,
                "qty_producing": qty if state == "done" else 0.0, "state": state,
                "reservation_state": "assigned" if state in ("confirmed", "progress") else False,
                "date_start": "2026-11-29 08:00:00", "user_id": [2, "Mitchell Admin"]}

    @staticmethod
    def _picking(pid: int, type_id: int, state: str, origin: str = "") -> dict[str, Any]:
        prefix = "IN" if type_id == 1 else "OUT"
        return {"id": pid, "name": f"WH/{prefix}/{pid:05d}", "picking_type_id": [type_id, prefix], "state": state,
                "origin": origin, "partner_id": [1 + pid % 40, f"Partner {1 + pid % 40}"],
                "scheduled_date": "2026-11-29 10:00:00"}

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # ---- JSON-RPC semantics ----------------------------------------------------------------
    def version_info(self) -> dict[str, Any]:
        major = int(self.serie.split(".")[0])
        return {"server_version": self.serie, "server_version_info": [major, 0, 0, "final", 0, ""],
                "server_serie": self.serie, "protocol_version": 1}

    def _table(self, model: str) -> dict[int, dict[str, Any]]:
        if model not in self._records:
            raise RpcFault("KeyError", f"Object {model} doesn't exist")
        return self._records[model]

    @staticmethod
    def _match(rec: dict[str, Any], domain: list[Any]) -> bool:
        for term in domain or []:
            if not isinstance(term, (list, tuple)) or len(term) != 3:
                continue  # '&', '|' operators: the double treats the domain as a conjunction
            field, op, value = term
            have = rec.get(field)
            if isinstance(have, list) and have:
                have = have[0]
            if (op in ("=", "==") and have != value) or (op == "!=" and have == value) \
                    or (op == "in" and have not in value) or (op == "not in" and have in value) \
                    or (op == ">" and not (have or 0) > value):
                return False
        return True

    @staticmethod
    def _project(rec: dict[str, Any], fields: list[str] | dict[str, Any] | None) -> dict[str, Any]:
        if not fields:
            return dict(rec)
        return {"id": rec["id"], **{f: rec.get(f, False) for f in fields}}

    def _search(self, model: str, domain: list[Any], offset: int = 0, limit: int | None = None,
                order: str | None = None) -> list[dict[str, Any]]:
        rows = [r for r in self._table(model).values() if self._match(r, domain)]
        rows.sort(key=lambda r: r["id"], reverse=bool(order and "desc" in order.lower()))
        return rows[offset: offset + limit if limit else None]

    def call_kw(self, model: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        self.served[(model, method)] += 1
        table = self._table(model)
        if method == "search_read":
            domain = args[0] if args else kwargs.get("domain", [])
            fields = args[1] if len(args) > 1 else kwargs.get("fields")
            rows = self._search(model, domain, kwargs.get("offset", 0), kwargs.get("limit"), kwargs.get("order"))
            return [self._project(r, fields) for r in rows]
        if method == "search_count":
            return len(self._search(model, args[0] if args else kwargs.get("domain", [])))
        if method == "web_search_read":
            return self._web_search_read(model, args, kwargs)
        if method == "read":
            ids, fields = args[0], (args[1] if len(args) > 1 else kwargs.get("fields"))
            return [self._project(table[i], fields) for i in ids if i in table]
        if method == "create":
            vals_list = args[0] if isinstance(args[0], list) else [args[0]]
            new = [self._create(model, vals) for vals in vals_list]
            return new if isinstance(args[0], list) else new[0]
        if method == "write":
            for i in args[0]:
                self._get(model, i).update(args[1])
            return True
        return self._action(model, method, args)

    def _web_search_read(self, model: str, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        domain = args[0] if args else kwargs.get("domain", [])
        if self.serie == "16.0":
            if "specification" in kwargs:
                raise RpcFault("TypeError", "web_search_read() got an unexpected keyword argument 'specification'")
            fields = kwargs.get("fields") if len(args) < 2 else args[1]
        else:
            if "fields" in kwargs:
                raise RpcFault("TypeError", "web_search_read() got an unexpected keyword argument 'fields'")
            spec = kwargs.get("specification") if len(args) < 2 else args[1]
            if spec is None:
                raise RpcFault("TypeError", "web_search_read() missing 1 required positional argument: "
                                            "'specification'")
            fields = list(spec)
        everything = self._search(model, domain, order=kwargs.get("order"))
        offset, limit = kwargs.get("offset", 0), kwargs.get("limit")
        page = everything[offset: offset + limit if limit else None]
        return {"length": len(everything), "records": [self._project(r, fields) for r in page]}

    def _get(self, model: str, rec_id: int) -> dict[str, Any]:
        rec = self._table(model).get(rec_id)
        if rec is None:
            raise RpcFault("odoo.exceptions.MissingError", f"Record does not exist or has been deleted. ({model},"
                                                           f" {rec_id})")
        return rec

    def _create(self, model: str, vals: dict[str, Any]) -> int:
        new_id = self._new_id()
        if model == "mrp.production":
            product = int(vals.get("product_id") or 0)
            if product not in self._records["product.product"]:
                raise RpcFault("odoo.exceptions.ValidationError", "Missing required field: product_id")
            rec = self._mo(new_id, product, float(vals.get("product_qty", 1.0)), "draft")
        elif model in ("purchase.order", "sale.order"):
            if int(vals.get("partner_id") or 0) not in self._records["res.partner"]:
                raise RpcFault("odoo.exceptions.ValidationError", "Missing required field: partner_id")
            prefix = "P" if model == "purchase.order" else "S"
            rec = {"id": new_id, "name": f"{prefix}{new_id:05d}", "state": "draft", "partner_id": vals["partner_id"],
                   "order_line": [len(vals.get("order_line") or [])]}
        else:
            rec = {"id": new_id, **vals}
        self._table(model)[new_id] = rec
        return new_id

    def _action(self, model: str, method: str, args: list[Any]) -> Any:
        ids = args[0] if args else []
        if isinstance(ids, int):
            ids = [ids]
        recs = [self._get(model, i) for i in ids]
        if (model, method) in (("mrp.production", "action_confirm"), ("sale.order", "action_confirm"),
                               ("purchase.order", "button_confirm")):
            for rec in recs:
                if rec["state"] == "draft":
                    rec["state"] = {"mrp.production": "confirmed", "sale.order": "sale"}.get(model, "purchase")
                    if model != "mrp.production":
                        pid = self._new_id()
                        type_id = 2 if model == "sale.order" else 1
                        self._records["stock.picking"][pid] = self._picking(pid, type_id, "assigned", rec["name"])
            return True
        if (model, method) == ("mrp.production", "action_assign"):
            for rec in recs:
                rec["reservation_state"] = "assigned"
            return True
        if (model, method) == ("mrp.production", "button_mark_done"):
            for rec in recs:
                if rec["state"] == "draft":
                    raise RpcFault("odoo.exceptions.UserError", "You must confirm the manufacturing order first.")
                if rec["state"] != "done" and not rec.get("qty_producing"):
                    raise RpcFault("odoo.exceptions.UserError", "Set the quantity you are currently producing.")
                rec["state"] = "done"  # a repeated mark_done by a concurrent user is a no-op, as done MOs are
            return True
        if (model, method) == ("stock.picking", "button_validate"):
            for rec in recs:
                rec["state"] = "done"
            return True
        raise RpcFault("AttributeError", f"The method '{method}' does not exist on the model '{model}'")

    # ---- HTTP ------------------------------------------------------------------------------
    def _delay(self, name: str) -> None:
        seconds = (self.base_ms + self._rng.uniform(0, self.jitter_ms)) / 1000.0
        seconds *= self.multiplier * self.per_name.get(name, 1.0)
        slots = self._slots
        if slots is not None:  # a request waits for a free worker, then holds it for its service time
            with slots:
                time.sleep(max(seconds, 0.0))
        elif seconds > 0:
            time.sleep(seconds)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json", **headers: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key.replace("_", "-"), value)
                self.end_headers()
                self.wfile.write(body)

            def _json(self, body: Any, **headers: str) -> None:
                self._send(200, json.dumps(body).encode(), **headers)

            def _session(self) -> str | None:
                for part in (self.headers.get("Cookie") or "").split(";"):
                    key, _, value = part.strip().partition("=")
                    if key == "session_id":
                        return value
                return None

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/__double__/stats":
                    self._json(dict(double.counts))
                    return
                if path == "/web":
                    double.counts["page:/web"] += 1
                    double._delay("page:/web")
                    if self._session() not in double._sessions:
                        self._send(303, b"", "text/html", Location="/web/login")
                        return
                    self._send(200, b"<!DOCTYPE html><html><head><title>Odoo</title></head>"
                                    b"<body class='o_web_client'></body></html>", "text/html; charset=utf-8")
                    return
                if path.startswith("/web/webclient/load_menus"):
                    double.counts["page:load_menus"] += 1
                    double._delay("page:load_menus")
                    menus = {"root": {"id": "root", "children": [1, 2, 3]},
                             **{str(i): {"id": i, "name": n, "children": [], "xmlid": f"{m}.menu_root"}
                                for i, (n, m) in enumerate([("Manufacturing", "mrp"), ("Inventory", "stock"),
                                                            ("Sales", "sale")], start=1)}}
                    self._json(menus)
                    return
                self._send(404, b"not found", "text/plain")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0]
                if path == "/__double__/control":
                    try:
                        double.set(**json.loads(raw or b"{}"))
                    except (ValueError, TypeError) as exc:
                        self._send(400, str(exc).encode(), "text/plain")
                        return
                    self._json({"ok": True})
                    return
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._send(400, b"not JSON", "text/plain")
                    return
                rpc_id = body.get("id")
                params = body.get("params") or {}
                try:
                    result, headers = self._route(path, params)
                except RpcFault as fault:
                    self._json({"jsonrpc": "2.0", "id": rpc_id, "error": {
                        "code": 200, "message": "Odoo Server Error",
                        "data": {"name": fault.name, "message": str(fault), "debug": "", "arguments": [str(fault)]}}})
                    return
                except LookupError:
                    self._send(404, b"not found", "text/plain")
                    return
                self._json({"jsonrpc": "2.0", "id": rpc_id, "result": result}, **headers)

            def _route(self, path: str, params: dict[str, Any]) -> tuple[Any, dict[str, str]]:
                if path == "/web/webclient/version_info":
                    double.counts["version_info"] += 1
                    return double.version_info(), {}
                if path == "/web/session/authenticate":
                    double.counts["session:authenticate"] += 1
                    double._delay("session:authenticate")
                    if (params.get("db"), params.get("login"), params.get("password")) != (DB, LOGIN, PASSWORD):
                        raise RpcFault("odoo.exceptions.AccessDenied", "Access Denied")
                    sid = f"{random.getrandbits(128):032x}"
                    with double._lock:
                        double._sessions.add(sid)
                    return ({"uid": 2, "db": DB, "username": LOGIN, "server_version": double.serie,
                             "user_context": {"lang": "en_US", "tz": "Europe/Brussels", "uid": 2}},
                            {"Set_Cookie": f"session_id={sid}; Path=/; HttpOnly"})
                if self._session() not in double._sessions:
                    raise RpcFault("odoo.http.SessionExpiredException", "Session expired")
                if path == "/web/action/load":
                    double.counts["page:action_load"] += 1
                    double._delay("page:action_load")
                    return {"id": 300, "type": "ir.actions.act_window", "res_model": "mrp.production",
                            "xml_id": str(params.get("action_id")), "views": [[False, "list"], [False, "form"]]}, {}
                match = _CALL_KW.match(path)
                if not match:
                    raise LookupError(path)
                name = f"{match['model']}:{match['method']}"
                double.counts[name] += 1
                double._delay(name)
                if double.error_rate and double._rng.random() < double.error_rate:
                    raise RpcFault("psycopg2.errors.SerializationFailure",
                                   "could not serialize access due to concurrent update (injected by the double)")
                with double._lock:
                    return double.call_kw(params.get("model", match["model"]), params.get("method", match["method"]),
                                          list(params.get("args") or []), dict(params.get("kwargs") or {})), {}

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the Odoo JSON-RPC test double on loopback.")
    parser.add_argument("--port", type=int, default=8069)
    parser.add_argument("--serie", default="17.0", choices=("16.0", "17.0", "18.0"))
    parser.add_argument("--base-ms", type=float, default=5.0)
    parser.add_argument("--jitter-ms", type=float, default=2.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--workers", type=int, default=0, help="requests served at once (0 = unbounded)")
    args = parser.parse_args()
    double = OdooDouble(args.port, args.serie, args.base_ms, args.jitter_ms, args.error_rate, workers=args.workers)
    print(f"odoo double {args.serie} on {double.url} (db {DB}, login {LOGIN}, password {PASSWORD})", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        double._server.serve_forever(poll_interval=0.2)


if __name__ == "__main__":
    main()
