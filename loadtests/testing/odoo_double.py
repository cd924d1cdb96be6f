"""OdooDouble: a test double of Odoo's JSON-RPC web API, speaking real HTTP on loopback.

It answers what the load-test personas call, as Odoo 16.0-18.0 do: `/web`, `load_menus`,
`/web/action/load`, `version_info`, `/web/session/authenticate` and `call_kw` for mrp.production,
mrp.bom, product.product/template, stock.picking(.type), stock.move(.line), stock.lot,
purchase.order, sale.order and res.partner, with plausible in-memory records. `web_search_read` is
checked against the signature of the configured serie (16: `fields`; 17+: `specification`).

What a real database taught it (behaviours checked against Odoo 17.0's mrp and stock models):
- BoMs defined on the product template (`product_id` empty, as all of Odoo's demo BoMs are) with
  `template_only_boms=True`; template 9 has three variants.
- Internal partners (company, users) are neither customers nor vendors; confirming a sale to one
  fails ("No rule has been found to replenish ... Inter-warehouse transit").
- Tracked products (3 by lot, 4 by serial): marking an MO done or validating a transfer without a
  lot fails with "You need to supply a Lot/Serial number for product"; `action_generate_serial`
  and `stock.lot` create give one.
- `button_mark_done` returns wizard actions instead of finishing: qty_producing written over RPC
  leaves the components unconsumed -> `mrp.consumption.warning`; less produced than planned ->
  `mrp.production.backorder`; 16.0 with nothing produced -> `mrp.immediate.production` (17.0
  produces the planned quantity itself). `button_validate` likewise: nothing to move -> "You
  cannot validate a transfer if no quantities are reserved nor done" (16.0:
  `stock.immediate.transfer`), short quantities -> `stock.backorder.confirmation`. A wizard is
  created with the action's context (`default_*`) and its button is called, as the web client does.
- Two transactions writing the same record at once: the later one waits for the first to end,
  as on PostgreSQL's row lock; if the first committed, Odoo retries the later one on the
  serialization failure (up to 5 tries, random back-off), so it is slower, and fails only when
  every try meets a newer commit. `retries` counts them per request name.

Knobs (constructor, `set()`, or `POST /__double__/control` with a JSON object of the same names):
  base_ms      latency added to every answer                      (default 5)
  jitter_ms    uniform random extra latency in [0, jitter_ms]     (default 2)
  sigma        log-normal service-time noise: base x exp(N(0, sigma)) (default 0: off)
  cpu_ms       CPU burnt per request while holding the interpreter (the GIL), so concurrent
               requests and other load contend as they do for a worker's CPU (default 0)
  multiplier   scales the service time of every request           (default 1.0)
  per_name     {request name: multiplier}, e.g. {"sale.order:create": 1.25}
  error_rate   share of call_kw answered with a JSON-RPC error, HTTP 200   (default 0)
  broken       {request name: message}: that call_kw always fails with a UserError (a step that
               cannot succeed on this database)
  serie        "16.0", "17.0" or "18.0"                                    (default "17.0")
  workers      requests served at once, as Odoo's prefork workers (0 = unbounded; default 0): with
               workers=W and base_ms=S (jitter 0) the double saturates at W x 1000/S req/s
Database-backed login (`pg=`, a erpops.pg.Pg, and `dbfilter=`): `/web/session/authenticate` then checks the
credentials as Odoo 16.0-18.0 do against a real database's res_users: the db must match dbfilter (else
AccessError "Database not found."), the login must be an active user (res_users.login, exact) and the
password must verify against the stored hash, passlib's `$pbkdf2-sha512$<rounds>$<salt>$<checksum>` (or a
legacy plaintext value, which Odoo's CryptContext still accepts); else AccessDenied "Access Denied", a JSON-RPC
error with HTTP 200. A successful login answers the user's real id and the database, and keeps a session
open on that database, as Odoo's registry does (so a DROP DATABASE must end it).
`GET /__double__/stats` returns the request count per name. `served` counts the (model, method) pairs
call_kw actually executed (from the JSON-RPC params, which is what Odoo dispatches on, not the URL),
and `snapshot()` is a deep copy of every record: a read-only load must leave both without writes.

Standalone: `python -m loadtests.testing.odoo_double --port 8069 [--serie 16.0 --base-ms 20]`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import hashlib
import hmac
import itertools
import json
import random
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DB = "odoo_double"
LOGIN = "admin"
PASSWORD = "admin"  # noqa: S105 (the double's fixed test credential)

_CALL_KW = re.compile(r"^/web/dataset/call_kw/(?P<model>[\w.]+)/(?P<method>\w+)$")
# methods that lock no existing record (create makes a new one)
NO_LOCK = frozenset({"search_read", "web_search_read", "read", "search_count", "create"})
# Odoo retries a transaction that hit a serialization failure (odoo.service.model.retrying):
# MAX_TRIES_ON_CONCURRENCY_FAILURE = 5, waiting random.uniform(0, 2 ** try) seconds in between. The
# double waits in units of RETRY_UNIT_S instead of seconds (its requests take milliseconds).
MAX_TRIES = 5
RETRY_UNIT_S = 0.1
LOCK_WAIT_S = 60.0  # PostgreSQL waits for a row lock without end; the double gives up after this
SEEDED_IDS = 1000  # records the double starts with have ids up to this; the load's come after
# wizard model -> its buttons (what the web client calls after creating it from the action's context)
WIZARDS = {
    "mrp.consumption.warning": ("action_confirm", "action_set_qty"),
    "mrp.production.backorder": ("action_backorder", "action_close_mo"),
    "mrp.immediate.production": ("process",),
    "stock.backorder.confirmation": ("process", "process_cancel_backorder"),
    "stock.immediate.transfer": ("process",),
}


def _ids(value: Any) -> list[int]:
    """Record ids from a many2many value: [1, 2] or commands [(4, 1), (6, 0, [1, 2])]."""
    out: list[int] = []
    for item in value or []:
        if isinstance(item, int):
            out.append(item)
        elif isinstance(item, (list, tuple)) and item and item[0] == 4:
            out.append(int(item[1]))
        elif isinstance(item, (list, tuple)) and item and item[0] == 6:
            out.extend(int(i) for i in item[2])
    return out


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
                 error_rate: float = 0.0, seed: int | None = None, template_only_boms: bool = False,
                 sigma: float = 0.0, cpu_ms: float = 0.0, workers: int = 0, max_records: int = 2000,
                 pg: Any = None, dbfilter: str | None = None) -> None:
        self.serie = serie
        self.pg = pg  # database-backed login: res_users of the database the client names
        self.dbfilter = dbfilter
        self._db_sessions: list[subprocess.Popen] = []
        self.workers = workers
        self._slots = threading.BoundedSemaphore(workers) if workers else None
        self.base_ms = base_ms
        self.jitter_ms = jitter_ms
        self.sigma = sigma
        self.cpu_ms = cpu_ms
        self.template_only_boms = template_only_boms
        self.retries: Counter[str] = Counter()  # serialization failures retried, per request name
        self.conflicts_failed: Counter[str] = Counter()  # ... that still failed after MAX_TRIES
        self._inflight: Counter[tuple[str, int]] = Counter()  # records written by a running transaction
        self._commits: Counter[tuple[str, int]] = Counter()  # transactions committed on each record
        self.multiplier = 1.0
        self.per_name: dict[str, float] = {}
        self.broken: dict[str, str] = {}
        self.error_rate = error_rate
        self.counts: Counter[str] = Counter()
        self.served: Counter[tuple[str, str]] = Counter()  # (model, method) executed by call_kw
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._released = threading.Condition(self._lock)  # a transaction ended: its records are free
        self._sessions: set[str] = set()
        self._records: dict[str, dict[int, dict[str, Any]]] = {}
        self._next_id = SEEDED_IDS
        self.max_records = max_records
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
        for proc in self._db_sessions:
            proc.kill()
            proc.wait()

    def __enter__(self) -> OdooDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set(self, **knobs: Any) -> None:
        """Change latency, error rate or serie while serving (same names as the control endpoint)."""
        allowed = {"base_ms", "jitter_ms", "sigma", "cpu_ms", "multiplier", "per_name", "error_rate", "serie",
                   "broken", "workers"}
        unknown = set(knobs) - allowed
        if unknown:
            raise ValueError(f"unknown knob(s) {sorted(unknown)}: use {sorted(allowed)}")
        for key, value in knobs.items():
            setattr(self, key, dict(value) if key in ("per_name", "broken") else value)
        if "workers" in knobs:
            self._slots = threading.BoundedSemaphore(self.workers) if self.workers else None

    def inflight(self) -> list[str]:
        """`model:id` of the records a running write holds (also `GET /__double__/inflight`)."""
        with self._lock:
            return sorted(f"{m}:{i}" for (m, i), n in self._inflight.items() if n > 0)

    def snapshot(self) -> dict[str, dict[int, dict[str, Any]]]:
        """A deep copy of every record, to compare before and after a load."""
        with self._lock:
            return copy.deepcopy(self._records)

    # ---- database-backed login ---------------------------------------------------------------
    @staticmethod
    def verify_password(password: str, stored: str) -> bool:
        """passlib's pbkdf2_sha512 (Odoo's default scheme) or plaintext (the legacy scheme Odoo still verifies)."""
        if not password or not stored:
            return False
        if not stored.startswith("$"):
            return hmac.compare_digest(password, stored)
        parts = stored.split("$")
        if len(parts) != 5 or parts[1] != "pbkdf2-sha512" or not parts[2].isdigit():
            return False

        def ab64(text: str) -> bytes:
            text = text.replace(".", "+")
            return base64.b64decode(text + "=" * (-len(text) % 4))

        try:
            salt, checksum = ab64(parts[3]), ab64(parts[4])
        except ValueError:
            return False
        digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]), dklen=len(checksum))
        return hmac.compare_digest(digest, checksum)

    def _authenticate_db(self, db: str, login: str, password: str) -> dict[str, Any]:
        from erpops.errors import ErpopsError
        from erpops.pg import client_bin, quote_literal

        if not db or (self.dbfilter and not re.match(self.dbfilter, db)):
            raise RpcFault("odoo.exceptions.AccessError", "Database not found.")
        try:
            row = self.pg.psql(f"SELECT id, COALESCE(password, '') FROM res_users WHERE login = {quote_literal(login)} "
                               "AND active", db).strip()
        except ErpopsError as exc:  # no such database, no res_users: Odoo fails to load the registry
            raise RpcFault("psycopg2.OperationalError", str(exc).splitlines()[0]) from None
        uid, _, stored = row.partition("|")
        if not uid or not self.verify_password(password, stored):
            raise RpcFault("odoo.exceptions.AccessDenied", "Access Denied")
        session = subprocess.Popen([client_bin("psql"), "-X", "-q", "-d", db], stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.pg.env())
        with self._lock:
            self._db_sessions.append(session)
        return {"uid": int(uid), "db": db, "username": login}

    # ---- data ------------------------------------------------------------------------------
    def _seed_data(self) -> None:
        r = self._records
        # Partners as a real database has them: the company's own partner and the users' (internal: neither
        # customer nor vendor), customers, vendors. Selling to an internal partner fails on confirmation.
        r["res.partner"] = {}
        for i in range(1, 41):
            kind = "internal" if i <= 4 else ("customer" if i % 2 else "vendor")
            r["res.partner"][i] = {"id": i, "name": f"Partner {i}", "is_company": i > 4,
                                   "customer_rank": int(kind == "customer"), "supplier_rank": int(kind == "vendor"),
                                   "internal": kind == "internal"}
        # Templates 1-10 are manufactured (template 9 has three variants: products 9, 31, 32); templates
        # 11-30 are components. Finished product 3 is tracked by lot, 4 by serial number.
        r["product.template"], r["product.product"] = {}, {}
        for i in range(1, 31):
            tracking = {3: "lot", 4: "serial"}.get(i, "none")
            r["product.template"][i] = {"id": i, "name": f"Product {i}", "tracking": tracking, "type": "product",
                                        "uom_id": [1, "Units"]}
        for pid, tmpl in [*((i, i) for i in range(1, 31)), (31, 9), (32, 9)]:
            t = r["product.template"][tmpl]
            r["product.product"][pid] = {"id": pid, "name": f"Product {pid}", "product_tmpl_id": [tmpl, t["name"]],
                                         "list_price": 10.0 + pid, "standard_price": 5.0 + pid, "type": "product",
                                         "tracking": t["tracking"], "uom_id": [1, "Units"]}
        # Odoo's demo data defines every BoM on the template (product_id empty): template_only_boms=True.
        r["mrp.bom"] = {}
        for i in range(1, 11):
            on_variant = not self.template_only_boms and i in (5, 6, 7, 8, 10)
            r["mrp.bom"][i] = {"id": i, "product_tmpl_id": [i, f"Product {i}"],
                               "product_id": [i, f"Product {i}"] if on_variant else False,
                               "product_qty": 1.0, "type": "normal", "code": f"BOM{i}", "consumption": "warning",
                               "lines": [(10 + i, 2.0), (20 + i, 1.0)]}
        r["stock.lot"] = {}
        r["stock.location"] = {4: {"id": 4, "name": "Partners/Vendors", "usage": "supplier"},
                               5: {"id": 5, "name": "Partners/Customers", "usage": "customer"},
                               8: {"id": 8, "name": "WH/Stock", "usage": "internal"}}
        r["stock.warehouse"] = {1: {"id": 1, "name": "WH", "code": "WH", "lot_stock_id": [8, "WH/Stock"]}}
        r["stock.picking.type"] = {
            1: {"id": 1, "name": "Receipts", "code": "incoming", "warehouse_id": [1, "WH"],
                "default_location_src_id": [4, "Partners/Vendors"], "default_location_dest_id": [8, "WH/Stock"]},
            2: {"id": 2, "name": "Delivery Orders", "code": "outgoing", "warehouse_id": [1, "WH"],
                "default_location_src_id": [8, "WH/Stock"], "default_location_dest_id": [5, "Partners/Customers"]},
            8: {"id": 8, "name": "Manufacturing", "code": "mrp_operation", "warehouse_id": [1, "WH"],
                "default_location_src_id": [8, "WH/Stock"], "default_location_dest_id": [8, "WH/Stock"]},
        }
        for model in ("mrp.production", "stock.picking", "stock.move", "stock.move.line", "purchase.order",
                      "sale.order", *WIZARDS):
            r[model] = {}
        for i in range(1, 201):
            state = ("draft", "confirmed", "progress", "done")[i % 4]
            r["mrp.production"][i] = self._mo(i, product=1 + i % 10, qty=1.0 + i % 5, state=state)
        for i in range(1, 201):
            r["stock.picking"][i] = self._picking(i, 1 + i % 2, "assigned" if i % 3 else "done")

    def _mo(self, mo_id: int, product: int, qty: float, state: str, origin: str = "") -> dict[str, Any]:
        prod = self._records["product.product"][product]
        tmpl = prod["product_tmpl_id"][0]
        bom = next((b for b in self._records["mrp.bom"].values() if b["product_id"] and b["product_id"][0] == product),
                   None) or next((b for b in self._records["mrp.bom"].values()
                                  if not b["product_id"] and b["product_tmpl_id"][0] == tmpl), None)
        return {"id": mo_id, "name": f"WH/MO/{mo_id:05d}", "product_id": [product, prod["name"]],
                "bom_id": [bom["id"], bom["code"]] if bom else False, "product_qty": qty,
                "qty_producing": qty if state == "done" else 0.0, "state": state, "origin": origin,
                "product_tracking": prod["tracking"], "lot_producing_id": False,
                "reservation_state": "assigned" if state in ("confirmed", "progress") else False,
                "date_start": "2026-11-29 08:00:00", "user_id": [2, "Mitchell Admin"],
                "backorder_ids": [],
                # components: product -> [quantity per unit produced, quantity consumed so far]
                "_components": {p: [q, q * qty if state == "done" else 0.0] for p, q in (bom or {}).get("lines", [])}}

    @staticmethod
    def _picking(pid: int, type_id: int, state: str, origin: str = "") -> dict[str, Any]:
        prefix = "IN" if type_id == 1 else "OUT"
        return {"id": pid, "name": f"WH/{prefix}/{pid:05d}", "picking_type_id": [type_id, prefix], "state": state,
                "origin": origin, "partner_id": [1 + pid % 40, f"Partner {1 + pid % 40}"],
                "scheduled_date": "2026-11-29 10:00:00", "move_ids": [], "move_line_ids": [], "backorder_id": False}

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    @property
    def _qty_field(self) -> str:
        """The move line's done quantity: `qty_done` in 16.0, `quantity` from 17.0 on."""
        return "qty_done" if self.serie == "16.0" else "quantity"

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
            return {k: v for k, v in rec.items() if not k.startswith("_")}
        return {"id": rec["id"], **{f: rec.get(f, False) for f in fields}}

    def _search(self, model: str, domain: list[Any], offset: int = 0, limit: int | None = None,
                order: str | None = None) -> list[dict[str, Any]]:
        # ids only grow, so a table's insertion order is id order: no sort, and stop at the page's end
        table = self._table(model).values()
        rows = (r for r in (reversed(table) if order and "desc" in order.lower() else table) if self._match(r, domain))
        if limit:
            return list(itertools.islice(rows, offset, offset + limit))
        return list(rows)[offset:]

    def call_kw(self, model: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        self.served[(model, method)] += 1
        table = self._table(model)
        context = dict(kwargs.get("context") or {})
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
            new = [self._create(model, vals, context) for vals in vals_list]
            return new if isinstance(args[0], list) else new[0]
        if method == "write":
            for i in args[0]:
                self._write(model, self._get(model, i), dict(args[1]))
            return True
        return self._action(model, method, args, context)

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
        offset, limit = kwargs.get("offset", 0), kwargs.get("limit")
        page = self._search(model, domain, offset, limit, kwargs.get("order"))
        # as Odoo 17: the total is counted only when the page is full (up to count_limit)
        length = offset + len(page) if not limit or len(page) < limit else \
            min(len(self._search(model, domain)), kwargs.get("count_limit") or 10 ** 9)
        return {"length": length, "records": [self._project(r, fields) for r in page]}

    def _get(self, model: str, rec_id: int) -> dict[str, Any]:
        rec = self._table(model).get(rec_id)
        if rec is None:
            raise RpcFault("odoo.exceptions.MissingError", f"Record does not exist or has been deleted. ({model},"
                                                           f" {rec_id})")
        return rec

    def _m2o(self, model: str, value: Any, field: str) -> dict[str, Any]:
        rec = self._table(model).get(int(value or 0))
        if rec is None:
            raise RpcFault("odoo.exceptions.ValidationError", f"Missing required field: {field}")
        return rec

    def _create(self, model: str, vals: dict[str, Any], context: dict[str, Any]) -> int:
        if model == "mrp.production":
            product = self._m2o("product.product", vals.get("product_id"), "product_id")
            new_id = self._new_id()
            rec = self._mo(new_id, product["id"], float(vals.get("product_qty", 1.0)), "draft")
        elif model in ("purchase.order", "sale.order"):
            partner = self._m2o("res.partner", vals.get("partner_id"), "partner_id")
            lines = [cmd[2] for cmd in vals.get("order_line") or [] if cmd and cmd[0] == 0]
            for line in lines:
                self._m2o("product.product", line.get("product_id"), "order_line.product_id")
            new_id = self._new_id()
            prefix = "P" if model == "purchase.order" else "S"
            rec = {"id": new_id, "name": f"{prefix}{new_id:05d}", "state": "draft", "partner_id": partner["id"],
                   "order_line": [len(lines)], "_lines": lines, "picking_ids": []}
        elif model == "stock.picking":
            return self._create_picking(vals)
        elif model == "stock.lot":
            product = self._m2o("product.product", vals.get("product_id"), "product_id")
            if not vals.get("name"):
                raise RpcFault("odoo.exceptions.ValidationError", "Missing required field: name")
            if any(lot["product_id"][0] == product["id"] and lot["name"] == vals["name"]
                   for lot in self._records["stock.lot"].values()):
                raise RpcFault("odoo.exceptions.ValidationError",
                               "The combination of serial number and product must be unique across a company.")
            new_id = self._new_id()
            rec = {"id": new_id, "name": vals["name"], "product_id": [product["id"], product["name"]]}
        elif model == "res.partner":
            new_id = self._new_id()
            rec = {"id": new_id, "name": vals.get("name") or "", "is_company": bool(vals.get("is_company")),
                   "customer_rank": int(vals.get("customer_rank") or 0),
                   "supplier_rank": int(vals.get("supplier_rank") or 0), "internal": False}
        elif model in WIZARDS:
            # a wizard takes its records from the context of the action that opened it (default_*)
            new_id = self._new_id()
            rec = {"id": new_id, "_context": context, **{k[len("default_"):]: v for k, v in context.items()
                                                           if k.startswith("default_")}, **vals}
        else:
            new_id = self._new_id()
            rec = {"id": new_id, **vals}
        self._store(model, rec)
        return new_id

    def _store(self, model: str, rec: dict[str, Any]) -> None:
        table = self._table(model)
        table[rec["id"]] = rec
        if len(table) > self.max_records:
            self._forget_oldest(table)

    def _forget_oldest(self, table: dict[int, dict[str, Any]]) -> None:
        """Drop the oldest records made during the load (never the seeded ones).

        A real server finds a record through an index however many there are; the double scans its
        tables, so without a bound every search got slower as the load went on, and a gate ran against
        a slower double than its baseline. What the users work on is always among the newest."""
        excess, old = len(table) - self.max_records, []
        for rec_id in table:
            if rec_id > SEEDED_IDS:
                old.append(rec_id)
                if len(old) >= excess:
                    break
        for rec_id in old:
            del table[rec_id]

    def _write(self, model: str, rec: dict[str, Any], vals: dict[str, Any]) -> None:
        if model == "stock.move.line":
            lot_id = vals.pop("lot_id", None)
            if lot_id:
                lot = self._m2o("stock.lot", lot_id, "lot_id")
                vals["lot_id"] = [lot["id"], lot["name"]]
        if model == "mrp.production" and "lot_producing_id" in vals and vals["lot_producing_id"]:
            lot = self._m2o("stock.lot", vals["lot_producing_id"], "lot_producing_id")
            vals["lot_producing_id"] = [lot["id"], lot["name"]]
        # qty_producing written over RPC runs no onchange: the components' consumed quantities stay as they
        # were, which is why a later button_mark_done answers with the consumption warning
        rec.update(vals)

    # ---- buttons and wizards ---------------------------------------------------------------
    def _action(self, model: str, method: str, args: list[Any], context: dict[str, Any]) -> Any:
        ids = args[0] if args else []
        if isinstance(ids, int):
            ids = [ids]
        recs = [self._get(model, i) for i in ids]
        if model in WIZARDS:
            return self._wizard(model, method, recs, context)
        if (model, method) in (("mrp.production", "action_confirm"), ("sale.order", "action_confirm"),
                               ("purchase.order", "button_confirm")):
            for rec in recs:
                if rec["state"] == "draft":
                    if model == "sale.order" and self._records["res.partner"][rec["partner_id"]].get("internal"):
                        raise RpcFault("odoo.exceptions.UserError",
                                       "No rule has been found to replenish \"Product\" in "
                                       "\"Physical Locations/Inter-warehouse transit\".\nVerify the routes "
                                       "configuration on the product.")
                    rec["state"] = {"mrp.production": "confirmed", "sale.order": "sale"}.get(model, "purchase")
                    if model != "mrp.production":
                        type_id = 2 if model == "sale.order" else 1
                        moves = [[0, 0, {"product_id": line["product_id"],
                                         "product_uom_qty": line.get("product_qty") or line.get("product_uom_qty")
                                         or 1.0}] for line in rec["_lines"]]
                        pid = self._create_picking({"picking_type_id": type_id, "partner_id": rec["partner_id"],
                                                    "origin": rec["name"], "move_ids": moves})
                        self._picking_confirm(self._records["stock.picking"][pid])
                        rec["picking_ids"] = [pid]
            return True
        if (model, method) == ("mrp.production", "action_assign"):
            for rec in recs:
                rec["reservation_state"] = "assigned"
            return True
        if (model, method) == ("mrp.production", "action_generate_serial"):
            for rec in recs:
                lot_id = self._create("stock.lot", {"product_id": rec["product_id"][0],
                                                    "name": f"SN{self._new_id():07d}"}, {})
                rec["lot_producing_id"] = [lot_id, self._records["stock.lot"][lot_id]["name"]]
                if rec["product_tracking"] == "serial":
                    rec["qty_producing"] = 1.0
            return True
        if (model, method) == ("mrp.production", "button_mark_done"):
            return self._mark_done(recs, context)
        if (model, method) == ("stock.picking", "action_confirm"):
            for rec in recs:
                self._picking_confirm(rec)
            return True
        if (model, method) == ("stock.picking", "action_assign"):
            for rec in recs:
                if rec["state"] in ("confirmed", "waiting"):
                    self._reserve(rec)
            return True
        if (model, method) == ("stock.picking", "button_validate"):
            return self._validate(recs, context)
        raise RpcFault("AttributeError", f"The method '{method}' does not exist on the model '{model}'")

    def _wizard_action(self, model: str, title: str, context: dict[str, Any]) -> dict[str, Any]:
        """The window action a button returns to open a wizard, as `ir.actions.act_window` (target new)."""
        return {"name": title, "type": "ir.actions.act_window", "res_model": model, "view_mode": "form",
                "views": [[False, "form"]], "target": "new", "context": context}

    def _wizard(self, model: str, method: str, recs: list[dict[str, Any]], context: dict[str, Any]) -> Any:
        expected = WIZARDS[model]
        if method not in expected:
            raise RpcFault("AttributeError", f"The method '{method}' does not exist on the model '{model}'")
        result: Any = True
        for wiz in recs:
            ctx = {k: v for k, v in {**wiz["_context"], **context}.items() if not k.startswith("default_")}
            if model in ("mrp.consumption.warning", "mrp.production.backorder", "mrp.immediate.production"):
                key = "mo_ids" if model == "mrp.immediate.production" else "mrp_production_ids"
                mos = [self._get("mrp.production", i) for i in _ids(wiz.get(key))]
                if model == "mrp.immediate.production":  # 16.0: produce what was planned, consume what it takes
                    for mo in mos:
                        self._set_quantities(mo)
                    result = self._mark_done(mos, ctx)
                elif model == "mrp.consumption.warning":
                    if method == "action_set_qty":
                        for mo in mos:
                            for comp in mo["_components"].values():
                                comp[1] = comp[0] * mo["qty_producing"]
                    result = self._mark_done(mos, {**ctx, "skip_consumption": True})
                elif method == "action_backorder":
                    result = self._mark_done(mos, {**ctx, "skip_backorder": True,
                                                   "mo_ids_to_backorder": [m["id"] for m in mos]})
                else:  # action_close_mo
                    result = self._mark_done(mos, {**ctx, "skip_backorder": True, "mo_ids_to_backorder": []})
            else:
                pickings = [self._get("stock.picking", i) for i in _ids(wiz.get("pick_ids"))]
                if model == "stock.immediate.transfer":  # 16.0: done quantities = reserved ones
                    for picking in pickings:
                        for line in self._lines(picking):
                            line["qty_done"] = line.get("reserved_uom_qty") or 0.0
                    result = self._validate(pickings, ctx)
                else:
                    cancel = method == "process_cancel_backorder"
                    result = self._validate(pickings, {**ctx, "skip_backorder": True,
                                                       "picking_ids_not_to_backorder":
                                                           [p["id"] for p in pickings] if cancel else []})
        return result

    def _set_quantities(self, mo: dict[str, Any]) -> None:
        """Produce the planned quantity and consume what the BoM expects for it (17.0's `_set_quantities`)."""
        mo["qty_producing"] = 1.0 if mo["product_tracking"] == "serial" else mo["product_qty"]
        for comp in mo["_components"].values():
            comp[1] = comp[0] * mo["qty_producing"]

    def _mark_done(self, mos: list[dict[str, Any]], context: dict[str, Any]) -> Any:
        """`button_mark_done` as Odoo 17.0's (16.0's where it differs), wizard returns included.

        Order of its checks: nothing produced yet -> 16.0 asks "Immediate Production?", 17.0 produces
        the planned quantity; a tracked finished product without a lot fails; components consumed
        differently from the BoM (consumption 'warning') -> the consumption warning; less produced
        than planned -> the backorder question; else done.
        """
        for mo in mos:
            if mo["state"] == "draft":
                raise RpcFault("odoo.exceptions.UserError", "You must confirm the manufacturing order first.")
            if mo["state"] in ("done", "cancel"):
                raise RpcFault("odoo.exceptions.UserError",
                               f"{mo['name']}: a manufacturing order that is done or cancelled cannot be marked "
                               "done again.")
        fresh = [mo for mo in mos if not mo.get("qty_producing")]
        if fresh and self.serie == "16.0":
            return self._wizard_action("mrp.immediate.production", "Immediate Production?",
                                       {**context, "default_mo_ids": [[4, mo["id"]] for mo in fresh]})
        for mo in fresh:
            self._set_quantities(mo)
        for mo in mos:
            if mo["product_tracking"] != "none" and not mo["lot_producing_id"]:
                raise RpcFault("odoo.exceptions.UserError",
                               f"You need to supply a Lot/Serial number for product: \n - {mo['product_id'][1]}")
        if not context.get("skip_consumption"):
            issues = [mo for mo in mos if any(abs(c[1] - c[0] * mo["qty_producing"]) > 1e-6
                                              for c in mo["_components"].values())]
            if issues:
                return self._wizard_action("mrp.consumption.warning", "Consumption Warning", {
                    **context, "default_mrp_production_ids": [mo["id"] for mo in issues]})
        if not context.get("skip_backorder"):
            short = [mo for mo in mos if mo["qty_producing"] < mo["product_qty"] - 1e-6]
            if short:
                return self._wizard_action("mrp.production.backorder", "You produced less than initially planned", {
                    **context, "default_mrp_production_ids": [mo["id"] for mo in short]})
        to_backorder = set(context.get("mo_ids_to_backorder") or [])
        for mo in mos:
            remaining = mo["product_qty"] - mo["qty_producing"]
            if mo["id"] in to_backorder and remaining > 1e-6:
                bo_id = self._new_id()
                bo = self._mo(bo_id, mo["product_id"][0], remaining, "confirmed", origin=mo["name"])
                bo["name"] = f"{mo['name']}-002"
                self._store("mrp.production", bo)
                mo["backorder_ids"] = [*mo["backorder_ids"], bo_id]
            mo["product_qty"] = mo["qty_producing"]
            mo["state"] = "done"
        return True

    def _create_picking(self, vals: dict[str, Any]) -> int:
        ptype = self._m2o("stock.picking.type", vals.get("picking_type_id"), "picking_type_id")
        pid = self._new_id()
        picking = self._picking(pid, ptype["id"], "draft", vals.get("origin") or "")
        picking["name"] = f"WH/{'IN' if ptype['code'] == 'incoming' else 'OUT'}/{pid:05d}"
        if vals.get("partner_id"):
            partner = self._m2o("res.partner", vals["partner_id"], "partner_id")
            picking["partner_id"] = [partner["id"], partner["name"]]
        self._store("stock.picking", picking)
        for cmd in vals.get("move_ids") or []:
            if not cmd or cmd[0] != 0:
                continue
            product = self._m2o("product.product", cmd[2].get("product_id"), "move_ids.product_id")
            move_id = self._new_id()
            self._store("stock.move", {
                "id": move_id, "picking_id": [pid, picking["name"]], "product_id": [product["id"], product["name"]],
                "product_uom_qty": float(cmd[2].get("product_uom_qty") or 1.0), "quantity": 0.0, "picked": False,
                "state": "draft", "has_tracking": product["tracking"], "move_line_ids": []})
            picking["move_ids"].append(move_id)
        return pid

    def _moves(self, picking: dict[str, Any]) -> list[dict[str, Any]]:
        return [self._records["stock.move"][m] for m in picking["move_ids"]]

    def _lines(self, picking: dict[str, Any]) -> list[dict[str, Any]]:
        return [self._records["stock.move.line"][ml] for m in self._moves(picking) for ml in m["move_line_ids"]]

    def _picking_confirm(self, picking: dict[str, Any]) -> None:
        if picking["state"] != "draft":
            return
        for move in self._moves(picking):
            move["state"] = "confirmed"
        picking["state"] = "confirmed"
        if picking["picking_type_id"][0] == 1:
            self._reserve(picking)  # goods from a vendor need no stock: a receipt is ready at once

    def _reserve(self, picking: dict[str, Any]) -> None:
        """Reserve every move in full: one move line each (a serial-tracked product: one line per unit)."""
        for move in self._moves(picking):
            if move["move_line_ids"]:
                continue
            units = int(move["product_uom_qty"]) if move["has_tracking"] == "serial" else 1
            each = 1.0 if move["has_tracking"] == "serial" else move["product_uom_qty"]
            for _ in range(max(1, units)):
                ml_id = self._new_id()
                line = {"id": ml_id, "move_id": [move["id"], ""], "picking_id": move["picking_id"],
                        "product_id": move["product_id"], "lot_id": False, "lot_name": False}
                if self.serie == "16.0":
                    line.update(reserved_uom_qty=each, qty_done=0.0)
                else:
                    line.update(quantity=each, picked=False)
                self._store("stock.move.line", line)
                move["move_line_ids"].append(ml_id)
                picking["move_line_ids"].append(ml_id)
            move["quantity"] = move["product_uom_qty"]
            move["state"] = "assigned"
        picking["state"] = "assigned"

    def _validate(self, pickings: list[dict[str, Any]], context: dict[str, Any]) -> Any:
        """`button_validate`: quantities, lots, then the backorder question (16.0 also "Immediate Transfer?")."""
        qty = self._qty_field
        for picking in pickings:
            if picking["state"] in ("done", "cancel"):
                raise RpcFault("odoo.exceptions.UserError", f"{picking['name']}: this transfer is already done.")
            if picking["state"] == "draft":
                self._picking_confirm(picking)
            if not picking["move_ids"]:
                raise RpcFault("odoo.exceptions.UserError", "Please add some items to move.")
        empty = [p for p in pickings if not any(line.get(qty) for line in self._lines(p))]
        if empty and self.serie == "16.0":
            return self._wizard_action("stock.immediate.transfer", "Immediate Transfer?",
                                       {**context, "default_pick_ids": [[4, p["id"]] for p in empty]})
        if empty:
            raise RpcFault("odoo.exceptions.UserError",
                           "You cannot validate a transfer if no quantities are reserved nor done. To force the "
                           "transfer, encode quantities.")
        for picking in pickings:
            missing = sorted({line["product_id"][1] for line in self._lines(picking) if line.get(qty)
                              and self._records["product.product"][line["product_id"][0]]["tracking"] != "none"
                              and not (line.get("lot_id") or line.get("lot_name"))})
            if missing:
                raise RpcFault("odoo.exceptions.UserError",
                               "You need to supply a Lot/Serial number for product: \n - " + "\n - ".join(missing))
        if not context.get("skip_backorder"):
            short = [p for p in pickings if any(sum(self._records["stock.move.line"][ml].get(qty) or 0.0
                                                    for ml in m["move_line_ids"]) < m["product_uom_qty"] - 1e-6
                                                for m in self._moves(p))]
            if short:
                return self._wizard_action("stock.backorder.confirmation", "Create Backorder?",
                                           {**context, "default_pick_ids": [[4, p["id"]] for p in short]})
        no_backorder = set(context.get("picking_ids_not_to_backorder") or [])
        for picking in pickings:
            left = []
            for move in self._moves(picking):
                done = sum(self._records["stock.move.line"][ml].get(qty) or 0.0 for ml in move["move_line_ids"])
                if move["product_uom_qty"] - done > 1e-6:
                    left.append([0, 0, {"product_id": move["product_id"][0],
                                        "product_uom_qty": move["product_uom_qty"] - done}])
                move.update(quantity=done, picked=True, state="done")
            if left and picking["id"] not in no_backorder:
                bo = self._create_picking({"picking_type_id": picking["picking_type_id"][0],
                                           "origin": picking["origin"], "move_ids": left})
                self._records["stock.picking"][bo]["backorder_id"] = [picking["id"], picking["name"]]
                self._picking_confirm(self._records["stock.picking"][bo])
            picking["state"] = "done"
        return True

    # ---- HTTP ------------------------------------------------------------------------------
    def _service_seconds(self, name: str) -> float:
        seconds = (self.base_ms + self._rng.uniform(0, self.jitter_ms)) / 1000.0
        if self.sigma:
            seconds *= self._rng.lognormvariate(0.0, self.sigma)
        return seconds * self.multiplier * self.per_name.get(name, 1.0)

    def _delay(self, name: str) -> None:
        seconds = self._service_seconds(name)
        slots = self._slots
        if slots is not None:  # a request waits for a free worker, then holds it for its service time
            slots.acquire()
        try:
            if self.cpu_ms:
                # CPU work scales with the request's cost like the rest of its service time
                end = time.thread_time() + self.cpu_ms / 1000.0 * self.multiplier * self.per_name.get(name, 1.0)
                while time.thread_time() < end:
                    pass
            if seconds > 0:
                time.sleep(seconds)
        finally:
            if slots is not None:
                slots.release()

    @contextlib.contextmanager
    def _transaction(self, name: str, model: str, method: str, args: list[Any]) -> Iterator[None]:
        """Hold the records a write touches; a concurrent write to one of them is retried as Odoo does.

        As in PostgreSQL under Odoo's REPEATABLE READ: a write to a record another transaction holds
        waits for that transaction to end. If it committed, the write fails with a serialization
        failure and Odoo retries the whole request after a random back-off; if it rolled back, the
        write goes ahead. So a retry fails again only if yet another writer committed meanwhile.
        """
        ids = args[0] if args and method not in NO_LOCK else []
        keys = [(model, i) for i in ([ids] if isinstance(ids, int) else ids) if isinstance(i, int)]
        tries = 1
        while True:
            with self._released:
                seen = [self._commits[k] for k in keys]  # the snapshot the transaction starts from
                if not self._released.wait_for(lambda: not any(self._inflight[k] for k in keys), LOCK_WAIT_S):
                    raise RpcFault("psycopg2.errors.LockNotAvailable", "canceling statement due to lock timeout")
                if seen == [self._commits[k] for k in keys]:
                    self._inflight.update(keys)
                    break
            if tries >= MAX_TRIES:
                self.conflicts_failed[name] += 1
                raise RpcFault("psycopg2.errors.SerializationFailure",
                               "could not serialize access due to concurrent update")
            self.retries[name] += 1
            time.sleep(self._rng.uniform(0, 2 ** tries) * RETRY_UNIT_S)
            tries += 1
        committed = False
        try:
            yield
            committed = True
        finally:
            with self._released:
                self._inflight.subtract(keys)
                if committed:
                    self._commits.update(keys)
                self._released.notify_all()

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
                if path == "/__double__/inflight":
                    self._json(double.inflight())
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
                    double._delay("session:version_info")
                    return double.version_info(), {}
                if path == "/web/session/authenticate":
                    double.counts["session:authenticate"] += 1
                    double._delay("session:authenticate")
                    if double.pg is not None:
                        who = double._authenticate_db(str(params.get("db") or ""), str(params.get("login") or ""),
                                                      str(params.get("password") or ""))
                    elif (params.get("db"), params.get("login"), params.get("password")) != (DB, LOGIN, PASSWORD):
                        raise RpcFault("odoo.exceptions.AccessDenied", "Access Denied")
                    else:
                        who = {"uid": 2, "db": DB, "username": LOGIN}
                    sid = f"{random.getrandbits(128):032x}"
                    with double._lock:
                        double._sessions.add(sid)
                    return ({**who, "server_version": double.serie,
                             "user_context": {"lang": "en_US", "tz": "Europe/Brussels", "uid": who["uid"]}},
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
                model, method = params.get("model", match["model"]), params.get("method", match["method"])
                args = list(params.get("args") or [])
                with double._transaction(name, model, method, args):
                    double._delay(name)
                    if name in double.broken:
                        raise RpcFault("odoo.exceptions.UserError", double.broken[name])
                    if double.error_rate and double._rng.random() < double.error_rate:
                        raise RpcFault("psycopg2.errors.SerializationFailure",
                                       "could not serialize access due to concurrent update (injected by the double)")
                    with double._lock:
                        return double.call_kw(model, method, args, dict(params.get("kwargs") or {})), {}

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
