#!/usr/bin/python
"""Ansible module erpops.ops.erpops_calibrate: record a stack's sizing calibration with `erpops loadtest capacity`."""

from __future__ import annotations

DOCUMENTATION = r"""
module: erpops_calibrate
short_description: Measure where an Odoo stack's latency breaks and record the sizing calibration
version_added: 1.1.0
description:
  - Runs C(erpops loadtest capacity --stack STACK --host HOST) - Locust personas ramped until a request's p95 crosses
    its spec SLO or the p50 doubles - and records C(loadtests/baselines/<stack>.calibration.json) (users and req/s
    per worker, worker memory under load, host, Odoo version, personas, date), which C(erpops size --users) and
    C(odoo.web.target_users) then use.
  - Always C(changed) - a new calibration is written - unless the ramp never broke (the task fails then).
  - Write personas are refused on a prod-tier stack unless O(read_only) or O(allow_writes).
  - In check mode nothing runs; the command and the calibration recorded now (if any) are returned.
options:
  stack:
    description:
      - Stack name (C(Pulumi.<stack>.yaml)); its spec gives the SLOs, the Odoo version and the defaults below.
    type: str
    required: true
  host:
    description:
      - Odoo base URL. Default C(https://<kubernetes.host>) of the stack.
    type: str
  db:
    description:
      - Database. Default the stack's.
    type: str
  login:
    description:
      - Login of the simulated users.
    type: str
  odoo_password:
    description:
      - Their password, passed as E(ERPOPS_ODOO_PASSWORD) in the CLI's environment.
    type: str
  workers:
    description:
      - Odoo workers serving O(host). Default the stack's workers per pod times its replicas.
    type: int
  worker_rss_mib:
    description:
      - A worker's resident memory under load, when its processes are not on the host running the CLI.
    type: float
  worker_vms_mib:
    description:
      - A worker's virtual memory under load, likewise.
    type: float
  max_users:
    description:
      - Highest user count of the ramp.
    type: int
  factor:
    description:
      - Users multiply by this at each step.
    type: float
  duration:
    description:
      - Run time of each step, e.g. C(30s).
    type: str
  read_only:
    description:
      - Personas only read (allowed on prod).
    type: bool
    default: false
  allow_writes:
    description:
      - Run the write personas on a prod-tier stack.
    type: bool
    default: false
  calibration:
    description:
      - Where to record. Default C(loadtests/baselines/<stack>.calibration.json) of the project.
    type: path
extends_documentation_fragment:
  - erpops.ops.erpops
attributes:
  check_mode:
    support: full
    description: Nothing runs; C(changed) is true because a run would record a calibration.
author:
  - erpops maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Calibrate staging's sizing (read-only personas)
  erpops.ops.erpops_calibrate:
    project_root: /srv/erpops
    stack: staging
    host: https://erp-staging.example.com
    odoo_password: "{{ erpops_loadtest_password }}"
    read_only: true
  delegate_to: localhost
"""

RETURN = r"""
calibration:
  description: The recorded calibration (users_per_worker, rps_per_worker, worker_rss_mib, worker_vms_mib, criterion,
    odoo_serie, persona_weights, steps, arithmetic); in check mode the one recorded before, if any.
  returned: always
  type: dict
path:
  description: The calibration file.
  returned: always
  type: str
command:
  description: The erpops command line run (or that would run).
  returned: always
  type: list
  elements: str
"""

import json  # noqa: E402
import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erpops.ops.plugins.module_utils.erpops_cli import (  # noqa: E402
    CLI_ARGS,
    STDERR_TAIL,
    ErpopsCli,
    argument_spec,
    flag,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(CLI_ARGS, {
            "stack": {"type": "str", "required": True},
            "target": {"type": "str"},
            "endpoint_url": {"type": "str"},
            "region": {"type": "str"},
            "aws_access_key_id": {"type": "str", "no_log": True},
            "aws_secret_access_key": {"type": "str", "no_log": True},
            "aws_session_token": {"type": "str", "no_log": True},
            "host": {"type": "str"},
            "db": {"type": "str"},
            "login": {"type": "str"},
            "odoo_password": {"type": "str", "no_log": True},
            "workers": {"type": "int"},
            "worker_rss_mib": {"type": "float"},
            "worker_vms_mib": {"type": "float"},
            "max_users": {"type": "int"},
            "factor": {"type": "float"},
            "duration": {"type": "str"},
            "read_only": {"type": "bool", "default": False},
            "allow_writes": {"type": "bool", "default": False},
            "calibration": {"type": "path"},
        }),
        supports_check_mode=True,
    )
    p = module.params
    cli = ErpopsCli(module)
    root = p["project_root"] or os.getcwd()
    path = p["calibration"] or os.path.join(root, "loadtests", "baselines", f"{p['stack']}.calibration.json")
    argv: list[str] = ["--stack", p["stack"], "--calibration", path]
    for name, option in (("host", "--host"), ("db", "--db"), ("login", "--login"), ("workers", "--workers"),
                         ("worker_rss_mib", "--worker-rss-mib"), ("worker_vms_mib", "--worker-vms-mib"),
                         ("max_users", "--max-users"), ("factor", "--factor"), ("duration", "--duration")):
        flag(argv, option, p[name])
    argv += ["--read-only"] if p["read_only"] else []
    argv += ["--allow-writes"] if p["allow_writes"] else []
    # capacity takes --json FILE, not the stdout flag every other command takes: drop the one argv() adds
    argv = [a for a in cli.argv(["loadtest", "capacity"], argv, target=False) if a != "--json"]

    def current() -> dict:
        try:
            with open(path) as f:
                return dict(json.load(f))
        except (OSError, ValueError):
            return {}

    if module.check_mode:
        module.exit_json(changed=True, calibration=current(), path=path, command=argv)
    env = cli.env()
    if p["odoo_password"] is not None:
        env["ERPOPS_ODOO_PASSWORD"] = p["odoo_password"]
    before = os.path.getmtime(path) if os.path.exists(path) else None
    rc, out, err = module.run_command(argv, environ_update=env, check_rc=False)
    tail = [line for line in err.splitlines() if line.strip()][-STDERR_TAIL:]
    if rc != 0:
        module.fail_json(msg=(tail[-1] if tail else f"erpops loadtest capacity exited {rc}"), rc=rc, exit_code=rc,
                         command=argv, stderr_lines=tail)
    if not os.path.exists(path) or os.path.getmtime(path) == before:
        module.fail_json(msg="no calibration recorded: " + (out.strip().splitlines() or ["latency never broke"])[-1],
                         command=argv, stderr_lines=tail)
    module.exit_json(changed=True, calibration=current(), path=path, command=argv)


if __name__ == "__main__":
    main()
