#!/usr/bin/python
"""Ansible module erpops.ops.erpops_prune: apply the retention with `erpops prune`."""

from __future__ import annotations

DOCUMENTATION = r"""
module: erpops_prune
short_description: Delete erpops backup sets outside the retention (grandfather-father-son)
version_added: 1.0.0
description:
  - Runs C(erpops prune --apply --json). Sets outside the daily, weekly and monthly retention are deleted, with
    stale incomplete sets and filestore objects no set references. The newest verified set is never deleted.
  - Reports C(changed) only when something was deleted.
  - In check mode runs C(erpops prune --json) without C(--apply), the CLI's own dry run, and reports what would be
    deleted.
options:
  daily:
    description:
      - Days to keep. Default, the O(stack)'s retention, else 7.
    type: int
  weekly:
    description:
      - ISO weeks to keep. Default, the O(stack)'s, else 4.
    type: int
  monthly:
    description:
      - Months to keep. Default, the O(stack)'s, else 0.
    type: int
extends_documentation_fragment:
  - erpops.ops.erpops
attributes:
  diff_mode:
    support: full
    description: The sets before and after the retention.
  check_mode:
    support: full
    description: The CLI's dry run.
seealso:
  - module: erpops.ops.erpops_sets
author:
  - erpops maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Apply the stack's retention
  erpops.ops.erpops_prune:
    project_root: /srv/erpops
    stack: prod

- name: Keep three days only (a scratch bucket)
  erpops.ops.erpops_prune:
    target: s3://acme-scratch/backups
    daily: 3
    weekly: 0
"""

RETURN = r"""
deleted:
  description: Ids of the sets deleted (in check mode, that would be).
  returned: always
  type: list
  elements: str
kept:
  description: Ids of the sets kept.
  returned: always
  type: list
  elements: str
prune:
  description: The CLI's result (rules, keep reasons, incomplete sets, filestore objects and bytes freed).
  returned: always
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
            "daily": {"type": "int"},
            "weekly": {"type": "int"},
            "monthly": {"type": "int"},
        }),
        supports_check_mode=True,
    )
    p = module.params
    cli = ErpopsCli(module)
    args: list[str] = []
    flag(args, "--daily", p["daily"])
    flag(args, "--weekly", p["weekly"])
    flag(args, "--monthly", p["monthly"])
    if not module.check_mode:
        args.append("--apply")
    result, argv = cli.run_or_fail(["prune"], args)
    deleted = [d["set_id"] for d in result.get("delete", [])]
    changed = bool(deleted or result.get("incomplete_delete") or result.get("filestore_delete")
                   or result.get("uploads_abort"))
    kept = [k["set_id"] for k in result.get("keep", [])]
    out = {"changed": changed, "deleted": deleted, "kept": kept, "prune": result, "command": argv}
    if module._diff:
        # --diff: the sets before and after, one per line, as `diff -u` would show them
        out["diff"] = {"before_header": "backup sets", "after_header": "backup sets after the retention",
                       "before": "".join(f"{s}\n" for s in sorted(kept + deleted)),
                       "after": "".join(f"{s}\n" for s in sorted(kept))}
    module.exit_json(**out)


if __name__ == "__main__":
    main()
