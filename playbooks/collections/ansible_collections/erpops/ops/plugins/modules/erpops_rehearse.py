#!/usr/bin/python
"""Ansible module erpops.ops.erpops_rehearse: a restore rehearsal with `erpops rehearse`."""

from __future__ import annotations

DOCUMENTATION = r"""
module: erpops_rehearse
short_description: Rehearse a restore of an erpops backup set into a scratch database
version_added: 1.0.0
description:
  - Runs C(erpops rehearse --json) on one set, the newest one when O(set_id) is not given - a full restore into a
    scratch database, checked, timed against the stack's RTO, then dropped.
  - Leaves nothing behind, so it reports C(changed) only when the CLI says it changed something (O(keep)).
  - In check mode the set is looked up and the plan returned; nothing is restored.
  - Needs an erpops with the C(rehearse) command; an older one fails the task saying so.
options:
  set_id:
    description:
      - Set to rehearse with. Default, the newest complete set (of O(db), if given).
    type: str
  db:
    description:
      - With no O(set_id), pick the newest set of this database.
    type: str
  odoo_version:
    description:
      - Odoo version of the image that would run the database, e.g. C(17.0).
    type: str
  jobs:
    description:
      - C(pg_restore) jobs.
    type: int
  work_dir:
    description:
      - Where the dump may be decompressed for C(pg_restore -j).
    type: path
  keep:
    description:
      - Keep the scratch database for inspection (then the task reports C(changed)).
    type: bool
    default: false
extends_documentation_fragment:
  - erpops.ops.erpops
  - erpops.ops.erpops.postgres
attributes:
  check_mode:
    support: partial
    description: The set is looked up and the plan reported; nothing is restored.
seealso:
  - module: erpops.ops.erpops_restore
  - module: erpops.ops.erpops_verify
author:
  - erpops maintainers
"""

EXAMPLES = r"""
- name: Rehearse a restore of the newest production set on the staging server
  erpops.ops.erpops_rehearse:
    project_root: /srv/erpops
    stack: prod
    odoo_version: "17.0"
    pg_host: odoo-db-rw.erpops-staging.svc
    pg_password: "{{ erpops_pg_password }}"
  register: erpops_rehearse_result
"""

RETURN = r"""
set_id:
  description: The set rehearsed with.
  returned: always
  type: str
ok:
  description: Whether the rehearsal passed (null in check mode).
  returned: always
  type: bool
rehearsal:
  description: The CLI's rehearsal report (timings against the RTO, row counts, checks).
  returned: success, not in check mode
  type: dict
planned:
  description: What a real run would do.
  returned: check mode
  type: dict
command:
  description: The erpops command line run (or that would run).
  returned: always
  type: list
  elements: str
exit_code:
  description: The CLI's exit code on failure.
  returned: failure
  type: int
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erpops.ops.plugins.module_utils.erpops_cli import (  # noqa: E402
    PG_ARGS,
    TARGET_ARGS,
    ErpopsCli,
    argument_spec,
    flag,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(TARGET_ARGS, PG_ARGS, {
            "set_id": {"type": "str"},
            "db": {"type": "str"},
            "odoo_version": {"type": "str"},
            "jobs": {"type": "int"},
            "work_dir": {"type": "path"},
            "keep": {"type": "bool", "default": False},
        }),
        supports_check_mode=True,
    )
    p = module.params
    cli = ErpopsCli(module)
    set_id, entry = cli.resolve_set(p["set_id"], p["db"])
    args = [set_id]
    flag(args, "--odoo-version", p["odoo_version"])
    flag(args, "--jobs", p["jobs"])
    flag(args, "--work-dir", p["work_dir"])
    if p["keep"]:
        args.append("--keep")
    if module.check_mode:
        module.exit_json(changed=False, ok=None, set_id=set_id, command=cli.argv(["rehearse"], args),
                         planned={"action": "restore into a scratch database, check, time, drop", "set": entry,
                                  "keep": p["keep"]})
    result, argv = cli.run_or_fail(["rehearse"], args)
    module.exit_json(changed=bool(result.get("changed", p["keep"])), ok=bool(result.get("ok", True)),
                     set_id=result.get("set_id", set_id), rehearsal=result, command=argv)


if __name__ == "__main__":
    main()
