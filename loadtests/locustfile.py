"""The manufacturing personas for Locust's own command line and web UI (a person exploring load by hand).

    export ERPOPS_ODOO_PASSWORD=<load-test user's password>      # never on the command line
    locust -f loadtests/locustfile.py --host https://<odoo host> --stack <stack> --odoo-login <login>
    # then open http://localhost:8089: Odoo database, login and read-only are editable there too

    locust -f loadtests/locustfile.py --headless -u 10 -r 10 -t 60s --host https://<odoo host> --stack dev

The same five personas as `erpops loadtest` (planner, shop floor, buyer, sales, warehouse), with the
weights and think times of the stack's spec (`slo.persona_weights`, `slo.think_time_seconds`); the
database defaults to the stack's `odoo.database`. `--read-only` makes them only read, as for the gate;
on a prod-tier stack write personas are refused unless `--allow-writes` (the same guard as the CLI).
For a pass/fail verdict against a baseline use `erpops loadtest gate`, not this file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import gevent
from locust import between, events

if __package__ in (None, ""):  # `locust -f loadtests/locustfile.py` imports this file by path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from erpops import spec
from loadtests.modes import write_guard
from loadtests.odoo_user import OdooUser
from loadtests.personas import PERSONAS, Buyer, Planner, Sales, ShopFloor, Warehouse

PASSWORD_ENV = "ERPOPS_ODOO_PASSWORD"  # noqa: S105 (the variable's name)
__all__ = ["Buyer", "Planner", "Sales", "ShopFloor", "Warehouse"]  # the user classes Locust picks up


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--stack", default=os.environ.get("ERPOPS_STACK", "dev"), include_in_web_ui=False,
                        help="erpops stack whose spec gives persona weights, think times and the database")
    parser.add_argument("--odoo-db", default="", include_in_web_ui=True,
                        help="Odoo database (default: the stack's odoo.database)")
    parser.add_argument("--odoo-login", default="admin", include_in_web_ui=True,
                        help=f"Odoo login of the simulated users (password: ${PASSWORD_ENV})")
    parser.add_argument("--read-only", action="store_true", default=False, include_in_web_ui=True,
                        help="personas only read (search_read, web_search_read, read, search_count, pages)")
    parser.add_argument("--allow-writes", action="store_true", default=False, include_in_web_ui=False,
                        help="run the write personas on a prod-tier stack")


def _spec(stack: str) -> Any:
    """The stack's spec from the project around the working directory, else from this file's checkout."""
    try:
        root = spec.find_root()
    except spec.SpecError:
        root = spec.find_root(Path(__file__).resolve().parents[1])
    return spec.load(stack, root)


@events.init.add_listener
def _configure(environment: Any, **_: Any) -> None:
    opts = environment.parsed_options
    if opts is None:  # library use (the runner configures the classes itself)
        return
    sized = _spec(opts.stack)
    slo = sized.spec.slo
    for persona, cls in PERSONAS.items():
        cls.weight = int(slo.persona_weights.get(persona, 0))
        cls.wait_time = between(*slo.think_time_seconds)
    # a persona with weight 0 is not started: Locust only runs the classes we hand it
    environment.user_classes = [cls for cls in PERSONAS.values() if cls.weight > 0]
    environment.erpops_sized = sized
    # Locust arms the --run-time timer next, from the event loop's cached clock, which has not moved since
    # before the imports and this spec load: without this, on a busy machine a `-t 20s` run ends at once
    gevent.get_hub().loop.update_now()


@events.test_start.add_listener
def _credentials(environment: Any, **_: Any) -> None:
    """At each start (the web UI can change the options between runs): database, login, password, mode."""
    opts = environment.parsed_options
    if opts is None:
        return
    sized = getattr(environment, "erpops_sized", None) or _spec(opts.stack)
    read_only = bool(opts.read_only) if not isinstance(opts.read_only, str) else opts.read_only == "true"
    write_guard(opts.stack, sized.spec.tier, read_only, bool(opts.allow_writes))
    OdooUser.db = opts.odoo_db or sized.database
    OdooUser.login = opts.odoo_login
    OdooUser.password = os.environ.get(PASSWORD_ENV, "")
    OdooUser.read_only = read_only
    if not OdooUser.password:
        print(f"warning: ${PASSWORD_ENV} is empty: the logins will be refused", file=sys.stderr)
