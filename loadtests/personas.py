"""Manufacturing personas, one Locust user class each; weights and think times come from the spec.

Imports Locust: run only inside `python -m loadtests.runner`, which sets `weight` from
`slo.persona_weights` and `wait_time` from `slo.think_time_seconds` before starting.

Each persona finds its data at start (products with a bill of materials, partners, picking types),
then repeats what that person does in a day. A step that needs an earlier step's result is skipped
when that step failed: the failure is already counted, and a cascade would only add noise.

Read-only mode (`read_only`, set by the runner from `--read-only`): every task keeps its reads,
under the same request names, and skips what would create, write, confirm or validate; a task
that only writes reads what that person looks at before writing instead (open MOs of a product,
the purchase or sale orders list, the transfer about to be validated). Nothing is created.
"""

from __future__ import annotations

import random
from typing import Any

from locust import between, task

from loadtests.odoo_user import OdooUser

MO_FIELDS = ["name", "product_id", "product_qty", "qty_producing", "state", "reservation_state", "date_start"]
PICKING_FIELDS = ["name", "picking_type_id", "partner_id", "state", "origin", "scheduled_date"]
ORDER_FIELDS = ["name", "partner_id", "state", "date_order", "amount_total"]
MFG_ACTION = "mrp.mrp_production_action"


class Persona(OdooUser):
    abstract = True
    wait_time = between(1.0, 5.0)

    def on_start(self) -> None:
        super().on_start()
        self.boms = self.search_read("mrp.bom", [], ["product_id", "product_tmpl_id", "product_qty"], limit=50)
        self.products = [b["product_id"][0] for b in self.boms if b.get("product_id")]
        self.partners = [p["id"] for p in self.search_read("res.partner", [], ["name"], limit=50)]
        self.picking_types = {t["code"]: t["id"] for t in
                              self.search_read("stock.picking.type", [], ["name", "code", "warehouse_id"], limit=20)}

    def open_app(self) -> None:
        """A web client page load: the shell, its menus and the app's window action."""
        if self.page("/web", "page:/web"):
            self.page(f"/web/webclient/load_menus/{random.getrandbits(32):08x}", "page:load_menus")
            self.rpc("/web/action/load", {"action_id": MFG_ACTION}, name="page:action_load")

    def new_mo(self) -> int | None:
        if self.read_only or not self.products:
            return None
        return self.call_kw("mrp.production", "create",
                            [{"product_id": random.choice(self.products), "product_qty": float(random.randint(1, 5))}])

    @staticmethod
    def line(product: int, qty_field: str, qty: float, price: float) -> list[Any]:
        """A one2many create command, (0, 0, values); purchase lines count product_qty, sale lines product_uom_qty."""
        return [0, 0, {"product_id": product, qty_field: qty, "price_unit": price}]


class Planner(Persona):
    """Plans production: lists and reads MOs, confirms one, checks component availability."""

    persona = "planner"

    @task(3)
    def review_orders(self) -> None:
        rows = self.web_search_read("mrp.production", [["state", "in", ["draft", "confirmed", "progress"]]],
                                    MO_FIELDS, limit=80, order="date_start asc")
        if rows:
            self.call_kw("mrp.production", "read", [[random.choice(rows)["id"]], MO_FIELDS])

    @task(2)
    def plan_order(self) -> None:
        if self.read_only:  # what a planner checks before planning: the open MOs of one product
            if self.products:
                self.call_kw("mrp.production", "search_count",
                             [[["product_id", "=", random.choice(self.products)],
                               ["state", "in", ["draft", "confirmed", "progress"]]]])
            return
        mo = self.new_mo()
        if mo and self.call_kw("mrp.production", "action_confirm", [[mo]]) is not None:
            self.call_kw("mrp.production", "action_assign", [[mo]])

    @task(1)
    def open_manufacturing(self) -> None:
        self.open_app()


class ShopFloor(Persona):
    """Works orders on the floor: reads confirmed MOs, records the quantity produced, marks them done."""

    persona = "shop_floor"

    @task(3)
    def finish_order(self) -> None:
        rows = self.search_read("mrp.production", [["state", "in", ["confirmed", "progress"]]], MO_FIELDS,
                                limit=20, order="date_start asc")
        if rows:
            mo = random.choice(rows)
        else:  # nothing planned: start one, as a team leader would (not in read-only mode)
            mo_id = self.new_mo()
            if not mo_id or self.call_kw("mrp.production", "action_confirm", [[mo_id]]) is None:
                return
            mo = {"id": mo_id, "product_qty": 1.0}
        details = self.call_kw("mrp.production", "read", [[mo["id"]], MO_FIELDS])
        qty = (details or [mo])[0].get("product_qty") or 1.0
        if self.read_only:
            return
        if self.call_kw("mrp.production", "write", [[mo["id"]], {"qty_producing": qty}]) is not None:
            self.call_kw("mrp.production", "button_mark_done", [[mo["id"]]])

    @task(1)
    def record_progress(self) -> None:
        rows = self.search_read("mrp.production", [["state", "in", ["confirmed", "progress"]]], ["product_qty"],
                                limit=20)
        if rows and not self.read_only:
            mo = random.choice(rows)
            self.call_kw("mrp.production", "write", [[mo["id"]], {"qty_producing": max(1.0, mo["product_qty"] / 2)}])


class Buyer(Persona):
    """Buys components: creates and confirms purchase orders (read-only: lists them)."""

    persona = "buyer"

    @task
    def purchase(self) -> None:
        if self.read_only:  # the purchase orders list, as a buyer opens it before ordering
            self.web_search_read("purchase.order", [["state", "in", ["draft", "sent", "purchase"]]], ORDER_FIELDS,
                                 limit=80, order="date_order desc")
            return
        if not self.partners or not self.products:
            return
        lines = [self.line(random.choice(self.products), "product_qty", float(random.randint(5, 50)), 9.5)
                 for _ in range(random.randint(1, 3))]
        po = self.call_kw("purchase.order", "create", [{"partner_id": random.choice(self.partners),
                                                        "order_line": lines}])
        if po:
            self.call_kw("purchase.order", "button_confirm", [[po]])


class Sales(Persona):
    """Sells finished goods: creates and confirms sale orders (read-only: lists them)."""

    persona = "sales"

    @task
    def sell(self) -> None:
        if self.read_only:  # the quotations and orders list
            self.web_search_read("sale.order", [["state", "in", ["draft", "sent", "sale"]]], ORDER_FIELDS,
                                 limit=80, order="date_order desc")
            return
        if not self.partners or not self.products:
            return
        lines = [self.line(random.choice(self.products), "product_uom_qty", float(random.randint(1, 10)), 25.0)
                 for _ in range(random.randint(1, 4))]
        so = self.call_kw("sale.order", "create", [{"partner_id": random.choice(self.partners), "order_line": lines}])
        if so:
            self.call_kw("sale.order", "action_confirm", [[so]])


class Warehouse(Persona):
    """Moves goods: lists ready transfers and validates one (read-only: opens one)."""

    persona = "warehouse"

    @task(4)
    def validate_transfer(self) -> None:
        rows = self.web_search_read("stock.picking", [["state", "=", "assigned"]], PICKING_FIELDS, limit=40,
                                    order="scheduled_date asc")
        if rows and self.read_only:  # opens the transfer instead of validating it
            self.call_kw("stock.picking", "read", [[random.choice(rows)["id"]], PICKING_FIELDS])
        elif rows:
            self.call_kw("stock.picking", "button_validate", [[random.choice(rows)["id"]]])

    @task(1)
    def open_inventory(self) -> None:
        self.open_app()


PERSONAS: dict[str, type[Persona]] = {cls.persona: cls for cls in (Planner, ShopFloor, Buyer, Sales, Warehouse)}
