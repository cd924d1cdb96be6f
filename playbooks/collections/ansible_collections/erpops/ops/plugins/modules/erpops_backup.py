#!/usr/bin/python
"""Ansible module erpops.ops.erpops_backup: take a backup set with `erpops backup`."""

from __future__ import annotations

DOCUMENTATION = r"""
module: erpops_backup
short_description: Back up an Odoo database and its filestore into a new erpops backup set
version_added: 1.0.0
description:
  - Runs C(erpops backup --json) - a zstd-compressed C(pg_dump), the filestore and a C(manifest.json) written last -
    into the backup target.
  - Every successful run creates a new set, so the task always reports C(changed).
  - In check mode nothing is dumped or written; the result shows the planned target and command.
  - With O(from_zip), an Odoo database-manager zip is stored as a set instead (no database needed).
options:
  db:
    description:
      - Database to back up. Required unless O(from_zip) is given.
    type: str
  filestore:
    description:
      - Odoo's filestore root (C(data_dir/filestore), holding C(<db>/)) or C(s3://bucket/prefix) holding C(<db>/).
    type: str
  jobs:
    description:
      - Parallel filestore transfers.
      - When not given, 8 where the filestore or the target is S3, and one more than the cores where both are local.
    type: int
  neutralized:
    description:
      - Back up a neutralized copy (mail servers, crons off) instead of the database as it is.
    type: bool
    default: false
  addons_path:
    description:
      - With O(neutralized), Odoo's addons directories (Enterprise included where installed). The installed
        modules' own C(data/neutralize.sql) files run from there, as C(odoo-bin neutralize) does. Default, erpops'
        own rules.
    type: list
    elements: path
  allow_unneutralized:
    description:
      - With O(neutralized), installed modules accepted as not covered by neutralization (a neutralize file erpops
        has no rule for). Without it such a module fails the neutralized backup; nothing is stored.
    type: list
    elements: str
  from_zip:
    description:
      - Store this Odoo database-manager zip as a set instead of dumping a database.
    type: path
  sse:
    description:
      - S3 server-side encryption.
    type: str
    choices: [AES256, aws:kms]
  kms_key_id:
    description:
      - KMS key for O(sse=aws:kms).
    type: str
  storage_class:
    description:
      - S3 storage class, e.g. C(STANDARD_IA).
    type: str
extends_documentation_fragment:
  - erpops.ops.erpops
  - erpops.ops.erpops.postgres
attributes:
  diff_mode:
    support: full
    description: The new set (none before).
  check_mode:
    support: full
    description: >-
      Runs C(erpops backup --dry-run) - the target must exist and be readable, the database must exist, a local
      filestore folder must exist - and reports the planned set (changed) without dumping or writing anything. A
      failed pre-flight fails the task (exit code 6; 2 for a missing bucket; 3 for an unreachable server).
seealso:
  - module: erpops.ops.erpops_verify
  - module: erpops.ops.erpops_sets
author:
  - erpops maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Back up the stack's database into its backup bucket
  erpops.ops.erpops_backup:
    project_root: /srv/erpops
    stack: prod
    db: odoo_prod
    filestore: /var/lib/odoo/filestore
    pg_host: odoo-db-rw.erpops-prod.svc
    pg_user: odoo
    pg_password: "{{ erpops_pg_password }}"
  delegate_to: localhost
  register: erpops_backup_result

- name: Store a zip downloaded from Odoo's database manager as a set
  erpops.ops.erpops_backup:
    target: s3://acme-backups/imports
    from_zip: /tmp/mfg.zip
    endpoint_url: https://minio.example.com
"""

RETURN = r"""
set_id:
  description: Id of the new set; null in check mode.
  returned: always
  type: str
  sample: prod-odoo_prod-20261129T020000Z-3f2a
target:
  description: The backup target (in check mode, the planned one).
  returned: always
  type: str
  sample: s3://acme-erpops-prod-backups/prod
backup:
  description: The CLI's result (artifacts with sizes and sha256, filestore counts, row counts, duration).
  returned: success, not in check mode
  type: dict
planned:
  description: What a real run would do.
  returned: check mode
  type: dict
command:
  description: The erpops command line run (or that would run). Secrets are never on it.
  returned: always
  type: list
  elements: str
exit_code:
  description: The CLI's exit code (2 usage, 3 service or credentials, 4 failed and rolled back, 5 integrity).
  returned: failure
  type: int
"""

import os  # noqa: E402

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
            "db": {"type": "str"},
            "filestore": {"type": "str"},
            "jobs": {"type": "int"},
            "neutralized": {"type": "bool", "default": False},
            "addons_path": {"type": "list", "elements": "path"},
            "allow_unneutralized": {"type": "list", "elements": "str"},
            "from_zip": {"type": "path"},
            "sse": {"type": "str", "choices": ["AES256", "aws:kms"]},
            "kms_key_id": {"type": "str"},
            "storage_class": {"type": "str"},
        }),
        required_one_of=[("db", "from_zip")],
        mutually_exclusive=[("from_zip", "filestore"), ("from_zip", "neutralized")],
        supports_check_mode=True,
    )
    p = module.params
    cli = ErpopsCli(module)
    args: list[str] = []
    flag(args, "--db", p["db"])
    flag(args, "--filestore", p["filestore"])
    flag(args, "--jobs", p["jobs"])
    flag(args, "--from-zip", p["from_zip"])
    flag(args, "--sse", p["sse"])
    flag(args, "--kms-key-id", p["kms_key_id"])
    flag(args, "--storage-class", p["storage_class"])
    if p["neutralized"]:
        args.append("--neutralized")
    for path in p["addons_path"] or []:
        args += ["--addons-path", path]
    for name in p["allow_unneutralized"] or []:
        args += ["--allow-unneutralized", name]

    if module.check_mode:
        if p["from_zip"] and not os.path.isfile(p["from_zip"]):
            module.fail_json(msg=f"from_zip {p['from_zip']} does not exist", exit_code=2, error_type="UsageError")
        # `erpops backup --dry-run`: the target, the database and the filestore folder are checked, nothing written;
        # a missing one fails here as the real run would, so `changed` is only reported for a backup that can run
        plan, argv = cli.run_or_fail(["backup"], [*args, "--dry-run"])
        module.exit_json(changed=True, set_id=None, target=plan.get("target"), command=cli.argv(["backup"], args),
                         planned={**plan, "stack": p["stack"]})

    result, argv = cli.run_or_fail(["backup"], args)
    out = {"changed": True, "set_id": result.get("set_id"), "target": result.get("target"), "backup": result,
           "command": argv}
    if module._diff:
        out["diff"] = {"before": "", "after": f"set {result.get('set_id')} in {result.get('target')}\n",
                       "after_header": "new backup set"}
    module.exit_json(**out)


if __name__ == "__main__":
    main()
