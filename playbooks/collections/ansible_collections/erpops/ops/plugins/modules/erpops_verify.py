#!/usr/bin/python
"""Ansible module erpops.ops.erpops_verify: check a backup set with `erpops verify`."""

from __future__ import annotations

DOCUMENTATION = r"""
module: erpops_verify
short_description: Verify an erpops backup set (checksums, optionally a scratch restore)
version_added: 1.0.0
description:
  - Runs C(erpops verify --json) on one set, the newest one when O(set_id) is not given; every artifact and
    filestore object is re-read and checked against the manifest.
  - With O(deep), the dump is also restored into a scratch database (dropped afterwards) and row counts compared.
  - Never reports C(changed); the set's C(verify.json) record is bookkeeping, not a change.
  - A damaged set fails the task (exit code 5) with every problem found.
  - In check mode nothing is re-read; the result shows the set's last recorded verification.
options:
  set_id:
    description:
      - Set to verify. Default, the newest complete set (of O(db), if given).
    type: str
  db:
    description:
      - With no O(set_id), pick the newest set of this database.
    type: str
  deep:
    description:
      - Also restore into a scratch database and compare row counts with the manifest.
    type: bool
    default: false
  jobs:
    description:
      - C(pg_restore) jobs for O(deep).
    type: int
    default: 2
  work_dir:
    description:
      - Where O(deep) may decompress the dump for C(pg_restore -j).
    type: path
extends_documentation_fragment:
  - erpops.ops.erpops
  - erpops.ops.erpops.postgres
attributes:
  check_mode:
    support: full
    description: Reports the last recorded verification of the set without re-reading it.
seealso:
  - module: erpops.ops.erpops_backup
  - module: erpops.ops.erpops_sets
author:
  - erpops maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Verify the newest set of the stack, restoring it into a scratch database
  erpops.ops.erpops_verify:
    project_root: /srv/erpops
    stack: staging
    deep: true
  register: erpops_verify_result

- name: Verify one set
  erpops.ops.erpops_verify:
    target: s3://acme-erpops-prod-backups/prod
    set_id: "{{ erpops_backup_result.set_id }}"
"""

RETURN = r"""
ok:
  description: Whether the set passed verification (in check mode, its last recorded result; null if never).
  returned: always
  type: bool
set_id:
  description: The set verified.
  returned: always
  type: str
report:
  description: The CLI's verify report (checked counts and bytes, problems, deep row counts).
  returned: success, not in check mode; also on an integrity failure
  type: dict
last_verification:
  description: The set's listing entry (verified, verified_at, verified_deep, age_hours).
  returned: check mode
  type: dict
problems:
  description: Every problem found in a damaged set.
  returned: when the set failed verification
  type: list
  elements: str
command:
  description: The erpops command line run (or that would run).
  returned: always
  type: list
  elements: str
exit_code:
  description: The CLI's exit code (5 when the set is damaged).
  returned: failure
  type: int
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erpops.ops.plugins.module_utils.erpops_cli import (  # noqa: E402
    PG_ARGS,
    TARGET_ARGS,
    CliFailed,
    ErpopsCli,
    argument_spec,
    flag,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(TARGET_ARGS, PG_ARGS, {
            "set_id": {"type": "str"},
            "db": {"type": "str"},
            "deep": {"type": "bool", "default": False},
            "jobs": {"type": "int", "default": 2},
            "work_dir": {"type": "path"},
        }),
        supports_check_mode=True,
    )
    p = module.params
    cli = ErpopsCli(module)
    set_id, entry = cli.resolve_set(p["set_id"], p["db"])
    args = [set_id]
    if p["deep"]:
        args.append("--deep")
    flag(args, "--jobs", p["jobs"])
    flag(args, "--work-dir", p["work_dir"])

    if module.check_mode:
        module.exit_json(changed=False, ok=entry.get("verified"), set_id=set_id, last_verification=entry,
                         command=cli.argv(["verify"], args))
    try:
        report, argv = cli.run(["verify"], args)
    except CliFailed as exc:
        details = dict(exc.details)
        details.setdefault("problems", (details.get("report") or {}).get("problems", []))
        module.fail_json(msg=exc.msg, ok=False, set_id=set_id, **details)
    module.exit_json(changed=False, ok=bool(report.get("ok")), set_id=set_id, report=report, command=argv)


if __name__ == "__main__":
    main()
