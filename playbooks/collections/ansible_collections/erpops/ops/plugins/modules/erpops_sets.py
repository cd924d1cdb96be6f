#!/usr/bin/python
"""Ansible module erpops.ops.erpops_sets: list backup sets, or describe one, with `erpops list`."""

from __future__ import annotations

DOCUMENTATION = r"""
module: erpops_sets
short_description: List erpops backup sets, or describe one
version_added: 1.0.0
description:
  - Runs C(erpops list --json) - complete (restorable) sets, newest first, with their verified status and age.
  - With O(set_id), also returns that set in RV(set) and fails when it is absent or incomplete.
  - Read only - never reports C(changed), and runs as usual in check mode.
options:
  set_id:
    description:
      - Describe this set; the task fails when the target holds no complete set of that id.
    type: str
  db:
    description:
      - Only sets of this database.
    type: str
extends_documentation_fragment:
  - erpops.ops.erpops
attributes:
  check_mode:
    support: full
    description: Read only; runs as usual.
seealso:
  - module: erpops.ops.erpops_backup
  - module: erpops.ops.erpops_restore
author:
  - erpops maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Find the newest set of the production database
  erpops.ops.erpops_sets:
    project_root: /srv/erpops
    stack: prod
    db: odoo_prod
  register: erpops_sets_result

- name: Fail unless the newest set is younger than a day
  ansible.builtin.assert:
    that: erpops_sets_result.latest.age_hours < 24
"""

RETURN = r"""
target:
  description: The target listed.
  returned: always
  type: str
sets:
  description: Complete sets, newest first (set_id, db, stack, created_at, age_hours, dump_bytes, verified, ...).
  returned: always
  type: list
  elements: dict
latest:
  description: The newest readable set, or null when there is none.
  returned: always
  type: dict
set:
  description: The set named by O(set_id).
  returned: when O(set_id) is given
  type: dict
command:
  description: The erpops command line run.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erpops.ops.plugins.module_utils.erpops_cli import (  # noqa: E402
    TARGET_ARGS,
    ErpopsCli,
    argument_spec,
    flag,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(TARGET_ARGS, {
            "set_id": {"type": "str"},
            "db": {"type": "str"},
        }),
        supports_check_mode=True,
    )
    p = module.params
    cli = ErpopsCli(module)
    args: list[str] = []
    flag(args, "--db", p["db"])
    result, argv = cli.run_or_fail(["list"], args)
    sets = result.get("sets", [])
    latest = next((s for s in sets if "error" not in s), None)
    out = {"changed": False, "target": result.get("target"), "sets": sets, "latest": latest, "command": argv}
    if p["set_id"]:
        found = next((s for s in sets if s.get("set_id") == p["set_id"]), None)
        if found is None:
            module.fail_json(msg=f"no complete backup set {p['set_id']!r} in {result.get('target')}"
                                 f"{' for database ' + p['db'] if p['db'] else ''}: it does not exist, is "
                                 "incomplete, or belongs to another target", exit_code=2, error_type="UsageError",
                             **out)
        out["set"] = found
    module.exit_json(**out)


if __name__ == "__main__":
    main()
