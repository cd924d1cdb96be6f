"""What OdooDouble learnt from a real Odoo 17 database, called in-process (no HTTP, no Locust).

Each behaviour here broke the old personas on a real server: BoMs on templates, tracked products,
wizard returns instead of a done MO or transfer, internal partners. The load tests rely on the
double keeping them.
"""

from __future__ import annotations

from typing import Any

import pytest

from loadtests.testing.odoo_double import OdooDouble, RpcFault

# In process, but an OdooDouble binds and listens on a loopback port when built: a server, not a unit.
pytestmark = pytest.mark.integration

BUTTONS = {"mrp.immediate.production": "process", "mrp.consumption.warning": "action_confirm",
           "mrp.production.backorder": "action_backorder", "stock.immediate.transfer": "process",
           "stock.backorder.confirmation": "process"}


def call(odoo: OdooDouble, model: str, method: str, *args: Any, context: dict[str, Any] | None = None) -> Any:
    return odoo.call_kw(model, method, list(args), {"context": context or {}})


def follow(odoo: OdooDouble, result: Any) -> tuple[Any, list[str]]:
    """Click through the wizards as the web client does: create from the action's context, press the button."""
    seen = []
    while isinstance(result, dict) and result.get("res_model") in BUTTONS:
        model = result["res_model"]
        seen.append(model)
        wizard = call(odoo, model, "create", {}, context=result["context"])
        result = call(odoo, model, BUTTONS[model], [wizard], context=result["context"])
    return result, seen


def new_mo(odoo: OdooDouble, product: int, qty: float) -> int:
    mo = call(odoo, "mrp.production", "create", {"product_id": product, "product_qty": qty})
    call(odoo, "mrp.production", "action_confirm", [mo])
    return mo


def state(odoo: OdooDouble, model: str, rec_id: int) -> str:
    return call(odoo, model, "read", [rec_id], ["state"])[0]["state"]


def test_demo_like_boms_name_no_product_only_a_template() -> None:
    odoo = OdooDouble(template_only_boms=True)
    boms = call(odoo, "mrp.bom", "search_read", [], ["product_id", "product_tmpl_id"])
    assert boms and all(b["product_id"] is False for b in boms)
    variants = call(odoo, "product.product", "search_read", [["product_tmpl_id", "in", [9]]], ["name"])
    assert len(variants) == 3  # a template BoM makes every variant of it


@pytest.mark.parametrize(("serie", "wizards"), [("17.0", []), ("16.0", ["mrp.immediate.production"])])
def test_mark_done_of_a_fresh_mo(serie: str, wizards: list[str]) -> None:
    odoo = OdooDouble(serie=serie)
    mo = new_mo(odoo, 1, 3.0)
    result, seen = follow(odoo, call(odoo, "mrp.production", "button_mark_done", [mo]))
    assert (result, seen, state(odoo, "mrp.production", mo)) == (True, wizards, "done")


def test_a_written_qty_producing_gets_the_consumption_warning_then_the_backorder_question() -> None:
    odoo = OdooDouble()
    mo = new_mo(odoo, 2, 4.0)
    call(odoo, "mrp.production", "write", [mo], {"qty_producing": 3.0})
    first = call(odoo, "mrp.production", "button_mark_done", [mo])
    assert first["res_model"] == "mrp.consumption.warning"
    assert state(odoo, "mrp.production", mo) == "confirmed"  # a wizard is not a done MO
    result, seen = follow(odoo, first)
    assert (result, seen) == (True, ["mrp.consumption.warning", "mrp.production.backorder"])
    assert state(odoo, "mrp.production", mo) == "done"
    backorders = call(odoo, "mrp.production", "search_read", [["origin", "=", f"WH/MO/{mo:05d}"]], ["product_qty"])
    assert [b["product_qty"] for b in backorders] == [1.0]


@pytest.mark.parametrize("product", [3, 4])  # tracked by lot, by serial number
def test_a_tracked_product_needs_a_lot(product: int) -> None:
    odoo = OdooDouble()
    mo = new_mo(odoo, product, 1.0)
    with pytest.raises(RpcFault, match="You need to supply a Lot/Serial number for product"):
        call(odoo, "mrp.production", "button_mark_done", [mo])
    call(odoo, "mrp.production", "action_generate_serial", [mo])
    assert follow(odoo, call(odoo, "mrp.production", "button_mark_done", [mo]))[0] is True
    assert state(odoo, "mrp.production", mo) == "done"


def _receipt(odoo: OdooDouble, product: int, qty: float) -> int:
    picking = call(odoo, "stock.picking", "create", {"picking_type_id": 1, "partner_id": 6,
                                                      "move_ids": [[0, 0, {"product_id": product,
                                                                           "product_uom_qty": qty}]]})
    call(odoo, "stock.picking", "action_confirm", [picking])
    return picking


def test_a_receipt_of_a_tracked_product_needs_lots_then_validates() -> None:
    odoo = OdooDouble()
    picking = _receipt(odoo, 4, 2.0)
    with pytest.raises(RpcFault, match="You need to supply a Lot/Serial number for product"):
        call(odoo, "stock.picking", "button_validate", [picking])
    lines = call(odoo, "stock.move.line", "search_read", [["picking_id", "=", picking]], ["quantity"])
    assert [line["quantity"] for line in lines] == [1.0, 1.0]  # one line per serial number
    for n, line in enumerate(lines):
        call(odoo, "stock.move.line", "write", [line["id"]], {"lot_name": f"SN-{n}"})
    assert call(odoo, "stock.picking", "button_validate", [picking]) is True
    assert state(odoo, "stock.picking", picking) == "done"


def test_short_quantities_ask_for_a_backorder() -> None:
    odoo = OdooDouble()
    picking = _receipt(odoo, 11, 5.0)
    line = call(odoo, "stock.move.line", "search_read", [["picking_id", "=", picking]], ["quantity"])[0]
    call(odoo, "stock.move.line", "write", [line["id"]], {"quantity": 3.0})
    result, seen = follow(odoo, call(odoo, "stock.picking", "button_validate", [picking]))
    assert (result, seen, state(odoo, "stock.picking", picking)) == (True, ["stock.backorder.confirmation"], "done")


def test_a_transfer_with_nothing_to_move_is_refused() -> None:
    odoo = OdooDouble()
    picking = call(odoo, "stock.picking", "create", {"picking_type_id": 2, "move_ids": [[0, 0, {"product_id": 11}]]})
    call(odoo, "stock.picking", "action_confirm", [picking])  # a delivery: nothing reserved yet
    with pytest.raises(RpcFault, match="no quantities are reserved"):
        call(odoo, "stock.picking", "button_validate", [picking])


def test_selling_to_an_internal_partner_fails_and_customers_are_not_internal() -> None:
    odoo = OdooDouble()
    customers = call(odoo, "res.partner", "search_read", [["customer_rank", ">", 0]], ["name"])
    assert customers and not any(odoo.snapshot()["res.partner"][c["id"]]["internal"] for c in customers)
    so = call(odoo, "sale.order", "create", {"partner_id": 1, "order_line": [[0, 0, {"product_id": 1}]]})
    with pytest.raises(RpcFault, match="No rule has been found to replenish"):
        call(odoo, "sale.order", "action_confirm", [so])
