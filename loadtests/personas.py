"""Manufacturing personas, one Locust user class each; weights and think times come from the spec.

Imports Locust: run only inside `python -m loadtests.runner`, which sets `weight` from
`slo.persona_weights` and `wait_time` from `slo.think_time_seconds` before starting.

Each persona finds or creates its own data at start (`start_up`): the products that have a bill of
materials (BoMs on a product template count for every variant of it, as all of Odoo's demo BoMs
are defined), customers or vendors only (never the company's internal partners), the picking types
with their default locations. Then it repeats what that person does in a day, on records it
created itself (its own MOs and transfers: two users never finish the same order), following
Odoo's wizard returns to the end (immediate production, consumption warning, backorder) and
checking the business result: the MO is done, the transfer is done, the order is confirmed. A
check is reported as `check:<what>`; a step that silently does nothing fails it.

`REQUESTS` / `READ_ONLY_REQUESTS` on each class name every request (and check) it sends in the
steady state, whatever the data: the gate fails a run that never sent one of them.

Read-only mode (`read_only`, set by the runner from `--read-only`): every task keeps its reads,
under the same request names, and skips what would create, write, confirm or validate; a task
that only writes reads what that person looks at before writing instead (open MOs of a product,
the purchase or sale orders list, the transfer about to be validated). Nothing is created.
"""

from __future__ import annotations

import itertools
import random
from typing import Any, ClassVar

from locust import between, task

from loadtests.odoo_user import OdooUser

MO_FIELDS = ["name", "product_id", "product_qty", "qty_producing", "state", "reservation_state", "date_start"]
PICKING_FIELDS = ["name", "picking_type_id", "partner_id", "state", "origin", "scheduled_date"]
ORDER_FIELDS = ["name", "partner_id", "state", "date_order", "amount_total"]
MFG_ACTION = "mrp.mrp_production_action"
START_UP = frozenset({"session:version_info", "session:authenticate", "mrp.bom:search_read",
                      "product.product:search_read", "stock.picking.type:search_read"})
PAGES = frozenset({"page:/web", "page:load_menus", "page:action_load"})
# The button each wizard a button may return is confirmed with, as a user clicks it: produce what
# was planned, accept the consumption, keep a backorder for what is left.
WIZARD_BUTTONS = {
    "mrp.immediate.production": "process",
    "mrp.consumption.warning": "action_confirm",
    "mrp.production.backorder": "action_backorder",
    "stock.immediate.transfer": "process",
    "stock.backorder.confirmation": "process",
}
_serial = itertools.count(1)


class Persona(OdooUser):
    abstract = True
    wait_time = between(1.0, 5.0)
    persona = ""
    partner_rank: str | None = None  # "customer_rank" or "supplier_rank": the partners this person deals with
    REQUESTS: ClassVar[frozenset[str]] = frozenset()
    READ_ONLY_REQUESTS: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def declared(cls, read_only: bool) -> frozenset[str]:
        return cls.READ_ONLY_REQUESTS if read_only else cls.REQUESTS

    def start_up(self) -> None:
        boms = self.search_read("mrp.bom", [["type", "=", "normal"]], ["product_id", "product_tmpl_id"], limit=100)
        on_variant = {b["product_id"][0] for b in boms if b.get("product_id")}
        on_template = {b["product_tmpl_id"][0] for b in boms if not b.get("product_id") and b.get("product_tmpl_id")}
        templates = sorted(on_template | {b["product_tmpl_id"][0] for b in boms if b.get("product_tmpl_id")})
        variants = self.search_read("product.product", [["product_tmpl_id", "in", templates]],
                                    ["name", "product_tmpl_id", "tracking", "uom_id"], limit=500) if templates else []
        # a BoM on a template makes every variant of it; one on a variant makes that variant only
        self.products = {p["id"]: p for p in variants
                         if p["id"] in on_variant or (p.get("product_tmpl_id") or [0])[0] in on_template}
        self.partners: list[int] = []
        if self.partner_rank:
            self.partners = [p["id"] for p in self.search_read("res.partner", [[self.partner_rank, ">", 0]], ["name"],
                                                               limit=50)]
            if not self.partners and not self.read_only:  # a database without any: make our own
                kind = "customer" if self.partner_rank == "customer_rank" else "vendor"
                new = self.call_kw("res.partner", "create", [{"name": f"erpops load test {kind}", "is_company": True,
                                                              self.partner_rank: 1}])
                self.partners = [new] if new else []
        self.picking_types = {t["code"]: t for t in self.search_read(
            "stock.picking.type", [["code", "in", ["incoming", "outgoing", "mrp_operation"]]],
            ["name", "code", "warehouse_id", "default_location_src_id", "default_location_dest_id"], limit=20)}

    # ---- helpers ---------------------------------------------------------------------------
    def product(self, untracked: bool = False) -> dict[str, Any] | None:
        pool = [p for p in self.products.values() if not untracked or p.get("tracking") in (None, "none", False)]
        return random.choice(pool) if pool else None

    def open_app(self) -> None:
        """A web client page load: the shell, its menus and the app's window action."""
        if self.page("/web", "page:/web"):
            self.page(f"/web/webclient/load_menus/{random.getrandbits(32):08x}", "page:load_menus")
            self.rpc("/web/action/load", {"action_id": MFG_ACTION}, name="page:action_load")

    def follow(self, result: Any, limit: int = 5) -> Any:
        """Follow the wizards a button returns to the end: create each from its action's context, confirm it."""
        for _ in range(limit):
            if not (isinstance(result, dict) and result.get("type") == "ir.actions.act_window"):
                return result
            model = result.get("res_model")
            if model not in WIZARD_BUTTONS:
                return result  # some other window: nothing a person would click through
            context = {**self.odoo_context, **(result.get("context") or {})}
            wizard = self.call_kw(model, "create", [{}], {"context": context})
            if not wizard:
                return None
            result = self.call_kw(model, WIZARD_BUTTONS[model], [[wizard]], {"context": context})
        return result

    def new_mo(self, qty: float | None = None) -> tuple[int, dict[str, Any]] | None:
        """Create and confirm an MO of our own; a lot for a tracked product. (id, product) or None."""
        if self.read_only:
            return None
        product = self.product()
        if product is None:
            return None
        if qty is None:
            qty = 1.0 if product.get("tracking") == "serial" else float(random.randint(1, 3))
        mo = self.call_kw("mrp.production", "create", [{"product_id": product["id"], "product_qty": qty}])
        if not mo or self.call_kw("mrp.production", "action_confirm", [[mo]]) is None:
            return None
        self.call_kw("mrp.production", "action_assign", [[mo]])
        if product.get("tracking") in ("lot", "serial") and \
                self.call_kw("mrp.production", "action_generate_serial", [[mo]]) is None:
            return None
        return mo, product

    def state_of(self, model: str, rec_id: int) -> str | None:
        rows = self.call_kw(model, "read", [[rec_id], ["state"]])
        return rows[0]["state"] if rows else None

    @staticmethod
    def line(product: int, qty_field: str, qty: float, price: float) -> list[Any]:
        """A one2many create command, (0, 0, values); purchase lines count product_qty, sale lines product_uom_qty."""
        return [0, 0, {"product_id": product, qty_field: qty, "price_unit": price}]


class Planner(Persona):
    """Plans production: lists and reads MOs, creates and confirms one, checks component availability."""

    persona = "planner"
    REQUESTS = frozenset({"mrp.production:web_search_read", "mrp.production:read", "mrp.production:create",
                          "mrp.production:action_confirm", "mrp.production:action_assign",
                          "check:mrp.production confirmed", *PAGES})
    READ_ONLY_REQUESTS = frozenset({"mrp.production:web_search_read", "mrp.production:read",
                                    "mrp.production:search_count", *PAGES})

    @task(3)
    def review_orders(self) -> None:
        rows = self.web_search_read("mrp.production", [["state", "in", ["draft", "confirmed", "progress"]]],
                                    MO_FIELDS, limit=80, order="date_start asc")
        if rows:
            self.call_kw("mrp.production", "read", [[random.choice(rows)["id"]], MO_FIELDS])

    @task(2)
    def plan_order(self) -> None:
        if self.read_only:  # what a planner checks before planning: the open MOs of one product
            product = self.product()
            if product:
                open_states = ["draft", "confirmed", "progress"]
                self.call_kw("mrp.production", "search_count",
                             [[["product_id", "=", product["id"]], ["state", "in", open_states]]])
            return
        made = self.new_mo()
        if made:
            state = self.state_of("mrp.production", made[0])
            self.check("mrp.production confirmed", state in ("confirmed", "progress"),
                       f"MO {made[0]} is {state!r} after action_confirm, not confirmed")

    @task(1)
    def open_manufacturing(self) -> None:
        self.open_app()


class ShopFloor(Persona):
    """Works its own orders: produces them in full or in part, follows Odoo's wizards, checks they are done."""

    persona = "shop_floor"
    REQUESTS = frozenset({"mrp.production:create", "mrp.production:action_confirm", "mrp.production:action_assign",
                          "mrp.production:read", "mrp.production:write", "mrp.production:button_mark_done",
                          "check:mrp.production done"})
    READ_ONLY_REQUESTS = frozenset({"mrp.production:search_read", "mrp.production:read"})

    def produce(self, partial: bool) -> None:
        made = self.new_mo(qty=float(random.randint(2, 4)) if partial else None)
        if made is None:
            return
        mo, product = made
        details = self.call_kw("mrp.production", "read", [[mo], MO_FIELDS])
        if not details:
            return
        qty = float(details[0].get("product_qty") or 1.0)
        if partial:  # record what was made so far: less than planned, the rest goes to a backorder
            produced = 1.0 if product.get("tracking") == "serial" else max(1.0, qty - 1.0)
            if self.call_kw("mrp.production", "write", [[mo], {"qty_producing": produced}]) is None:
                return
        result = self.call_kw("mrp.production", "button_mark_done", [[mo]])
        if result is None or self.follow(result) is None:
            return  # the failure is already counted
        state = self.state_of("mrp.production", mo)
        self.check("mrp.production done", state == "done", f"MO {mo} is {state!r} after button_mark_done and its "
                                                           "wizards, not done")

    @task(3)
    def finish_order(self) -> None:
        if self.read_only:
            rows = self.search_read("mrp.production", [["state", "in", ["confirmed", "progress"]]], MO_FIELDS,
                                    limit=20, order="date_start asc")
            if rows:
                self.call_kw("mrp.production", "read", [[random.choice(rows)["id"]], MO_FIELDS])
            return
        self.produce(partial=False)

    @task(1)
    def record_progress(self) -> None:
        if self.read_only:
            self.search_read("mrp.production", [["state", "in", ["confirmed", "progress"]]], ["product_qty"], limit=20)
            return
        self.produce(partial=True)


class Buyer(Persona):
    """Buys components from vendors: creates and confirms purchase orders (read-only: lists them)."""

    persona = "buyer"
    partner_rank = "supplier_rank"
    REQUESTS = frozenset({"purchase.order:create", "purchase.order:button_confirm", "purchase.order:read",
                          "check:purchase.order confirmed"})
    READ_ONLY_REQUESTS = frozenset({"purchase.order:web_search_read"})

    @task
    def purchase(self) -> None:
        if self.read_only:  # the purchase orders list, as a buyer opens it before ordering
            self.web_search_read("purchase.order", [["state", "in", ["draft", "sent", "purchase"]]], ORDER_FIELDS,
                                 limit=80, order="date_order desc")
            return
        if not self.partners or not self.products:
            return
        lines = [self.line(random.choice(list(self.products)), "product_qty", float(random.randint(5, 50)), 9.5)
                 for _ in range(random.randint(1, 3))]
        po = self.call_kw("purchase.order", "create", [{"partner_id": random.choice(self.partners),
                                                        "order_line": lines}])
        if po and self.call_kw("purchase.order", "button_confirm", [[po]]) is not None:
            state = self.state_of("purchase.order", po)
            self.check("purchase.order confirmed", state == "purchase", f"PO {po} is {state!r}, not purchase")


class Sales(Persona):
    """Sells finished goods to customers: creates and confirms sale orders (read-only: lists them)."""

    persona = "sales"
    partner_rank = "customer_rank"
    REQUESTS = frozenset({"sale.order:create", "sale.order:action_confirm", "sale.order:read",
                          "check:sale.order confirmed"})
    READ_ONLY_REQUESTS = frozenset({"sale.order:web_search_read"})

    @task
    def sell(self) -> None:
        if self.read_only:  # the quotations and orders list
            self.web_search_read("sale.order", [["state", "in", ["draft", "sent", "sale"]]], ORDER_FIELDS,
                                 limit=80, order="date_order desc")
            return
        if not self.partners or not self.products:
            return
        lines = [self.line(random.choice(list(self.products)), "product_uom_qty", float(random.randint(1, 10)), 25.0)
                 for _ in range(random.randint(1, 4))]
        so = self.call_kw("sale.order", "create", [{"partner_id": random.choice(self.partners), "order_line": lines}])
        if so and self.call_kw("sale.order", "action_confirm", [[so]]) is not None:
            state = self.state_of("sale.order", so)
            self.check("sale.order confirmed", state == "sale", f"SO {so} is {state!r}, not sale")


class Warehouse(Persona):
    """Receives goods: lists transfers, creates its own receipt, encodes lots, validates it, checks it is done."""

    persona = "warehouse"
    partner_rank = "supplier_rank"
    REQUESTS = frozenset({"stock.picking:web_search_read", "stock.picking:create", "stock.picking:action_confirm",
                          "stock.move.line:search_read", "stock.picking:button_validate", "stock.picking:read",
                          "check:stock.picking done", *PAGES})
    READ_ONLY_REQUESTS = frozenset({"stock.picking:web_search_read", "stock.picking:read", *PAGES})

    @property
    def qty_field(self) -> str:
        return "qty_done" if self.major < 17 else "quantity"

    @task(4)
    def validate_transfer(self) -> None:
        rows = self.web_search_read("stock.picking", [["state", "=", "assigned"]], PICKING_FIELDS, limit=40,
                                    order="scheduled_date asc")
        if self.read_only:  # opens a transfer instead of validating it
            if rows:
                self.call_kw("stock.picking", "read", [[random.choice(rows)["id"]], PICKING_FIELDS])
            return
        receipt = self.picking_types.get("incoming")
        product = self.product()
        if not receipt or product is None:
            return
        src, dest = (receipt.get("default_location_src_id") or [False])[0], \
            (receipt.get("default_location_dest_id") or [False])[0]
        qty = float(random.randint(1, 3))
        move = {"name": product["name"], "product_id": product["id"], "product_uom_qty": qty,
                "product_uom": (product.get("uom_id") or [1])[0], "location_id": src, "location_dest_id": dest}
        vals = {"picking_type_id": receipt["id"], "location_id": src, "location_dest_id": dest,
                "move_ids": [[0, 0, move]]}
        if self.partners:
            vals["partner_id"] = random.choice(self.partners)
        picking = self.call_kw("stock.picking", "create", [vals])
        if not picking or self.call_kw("stock.picking", "action_confirm", [[picking]]) is None:
            return
        if not self.encode(picking, product):
            return
        result = self.call_kw("stock.picking", "button_validate", [[picking]])
        if result is None or self.follow(result) is None:
            return
        state = self.state_of("stock.picking", picking)
        self.check("stock.picking done", state == "done", f"transfer {picking} is {state!r} after button_validate "
                                                          "and its wizards, not done")

    def encode(self, picking: int, product: dict[str, Any]) -> bool:
        """What the receiver types in: done quantities (16.0) and a lot or serial number for tracked products."""
        fields = ["product_id", "lot_name", self.qty_field] + (["reserved_uom_qty"] if self.major < 17 else [])
        lines = self.search_read("stock.move.line", [["picking_id", "=", picking]], fields, limit=100)
        tracked = product.get("tracking") in ("lot", "serial")
        lot = f"LT-{self.uid}-{next(_serial)}-{random.getrandbits(24):06x}"
        for n, line in enumerate(lines):
            vals: dict[str, Any] = {}
            if self.major < 17:
                vals["qty_done"] = line.get("reserved_uom_qty") or 0.0
            if tracked:
                vals["lot_name"] = f"{lot}-{n}" if product.get("tracking") == "serial" else lot
            if vals and self.call_kw("stock.move.line", "write", [[line["id"]], vals]) is None:
                return False
        return True

    @task(1)
    def open_inventory(self) -> None:
        self.open_app()


PERSONAS: dict[str, type[Persona]] = {cls.persona: cls for cls in (Planner, ShopFloor, Buyer, Sales, Warehouse)}
