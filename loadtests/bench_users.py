"""Users for the load-generator benchmark: the same cheap call through OdooUser and plain FastHttpUser.

Imports Locust: run only inside `python -m loadtests.runner --scenario bench-odoo|bench-plain`.
"""

from __future__ import annotations

import os

from locust import FastHttpUser, constant, constant_throughput, task

from loadtests.odoo_user import OdooUser

VERSION_INFO = "/web/webclient/version_info"
PAYLOAD = {"jsonrpc": "2.0", "method": "call", "params": {}, "id": 1}
# Requests per second per user; 0 = as fast as possible. Pacing both generators at the same rate keeps
# the (shared, single-process) server out of the comparison: CPU per request is then like for like.
RATE = float(os.environ.get("ERPOPS_BENCH_RATE", "0"))
WAIT = constant_throughput(RATE) if RATE > 0 else constant(0)


class OdooVersionInfo(OdooUser):
    """Our client: JSON-RPC envelope, response validated (status, JSON, `error`), event named."""

    wait_time = WAIT

    def on_start(self) -> None:
        self.odoo_context = {}  # no login: the benchmark compares the per-request cost only

    @task
    def version_info(self) -> None:
        self.rpc(VERSION_INFO, {}, name="session:version_info")


class PlainVersionInfo(FastHttpUser):
    """The floor: plain FastHttpUser posting the same body, trusting whatever comes back."""

    wait_time = WAIT
    max_retries = 0

    @task
    def version_info(self) -> None:
        self.client.post(VERSION_INFO, json=PAYLOAD, name="session:version_info")
