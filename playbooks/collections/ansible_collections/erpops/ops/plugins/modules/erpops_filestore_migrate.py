#!/usr/bin/python
"""Ansible module erpops.ops.erpops_filestore_migrate: move Odoo attachments with `erpops filestore migrate`."""

from __future__ import annotations

DOCUMENTATION = r"""
module: erpops_filestore_migrate
short_description: Move an Odoo database's attachments between a filestore directory and object storage
version_added: 1.1.0
description:
  - Runs C(erpops filestore migrate --db DB --from SRC --to DEST --apply --json) - every file copied in parallel,
    read back and compared with its sha1, then the attachment rows switched per batch to the OCA fs_attachment
    layout (C(<storage_code>://<sha1>)) or back to Odoo's own (C(<sha1[:2]>/<sha1>)).
  - Resumable - a killed or failed run continues from its checkpoint when the task runs again.
  - Reports C(changed) when rows were switched.
  - Refused (exit 6, nothing changed) while other sessions are connected to the database - freeze Odoo first - or
    when the fs.storage record does not read the bucket given.
  - In check mode the CLI's plan runs (read only) and C(changed) says whether rows would move.
options:
  db:
    description:
      - The Odoo database.
    type: str
    required: true
  src:
    description:
      - Where the bytes are, Odoo's C(<data_dir>/filestore/<db>) or C(s3://bucket[/prefix]).
    type: str
    required: true
    aliases: [from]
  dest:
    description:
      - Where they go, C(s3://bucket[/prefix]) or a filestore directory.
    type: str
    required: true
    aliases: [to]
  storage_code:
    description:
      - Code of the fs.storage record reading the bucket (the chart's C(erpops_filestore)).
    type: str
  jobs:
    description:
      - Parallel copies.
    type: int
  batch:
    description:
      - Rows per batch (one checkpoint and one switch transaction each).
    type: int
  checkpoint:
    description:
      - Checkpoint file. Default C(~/.local/state/erpops/filestore-<db>-<hash>.json) of the user running the CLI.
    type: path
  allow_connected:
    description:
      - Run although other sessions are connected to the database (only when they are not Odoo).
    type: bool
    default: false
extends_documentation_fragment:
  - erpops.ops.erpops
  - erpops.ops.erpops.postgres
attributes:
  check_mode:
    support: full
    description: The plan runs (counts, bytes, files already at the destination); nothing is copied or switched.
seealso:
  - module: erpops.ops.erpops_backup
author:
  - erpops maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Move the production filestore into the bucket Odoo's fs_attachment reads
  erpops.ops.erpops_filestore_migrate:
    db: odoo_prod
    src: /var/lib/odoo/filestore/odoo_prod
    dest: s3://acme-erpops-prod-filestore
    pg_host: odoo-db-rw.erpops-prod.svc
    pg_password: "{{ erpops_pg_password }}"
  delegate_to: localhost
  register: erpops_filestore_result
"""

RETURN = r"""
report:
  description: The CLI's report (rows, files, bytes, already_switched, present, copied, resent, moved, conflicts,
    failed, bytes_copied, duration_s, resumed_from).
  returned: always
  type: dict
command:
  description: The erpops command line run.
  returned: always
  type: list
  elements: str
exit_code:
  description: The CLI's exit code on failure (4 some files not moved, 5 a checksum mismatch, 6 refused).
  returned: failure
  type: int
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erpops.ops.plugins.module_utils.erpops_cli import (  # noqa: E402
    CLI_ARGS,
    PG_ARGS,
    CliFailed,
    ErpopsCli,
    argument_spec,
    flag,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(CLI_ARGS, PG_ARGS, {
            "db": {"type": "str", "required": True},
            "src": {"type": "str", "required": True, "aliases": ["from"]},
            "dest": {"type": "str", "required": True, "aliases": ["to"]},
            "storage_code": {"type": "str"},
            "jobs": {"type": "int"},
            "batch": {"type": "int"},
            "checkpoint": {"type": "path"},
            "allow_connected": {"type": "bool", "default": False},
            "stack": {"type": "str"},
            "endpoint_url": {"type": "str"},
            "region": {"type": "str"},
            "target": {"type": "str"},
            "aws_access_key_id": {"type": "str", "no_log": True},
            "aws_secret_access_key": {"type": "str", "no_log": True},
            "aws_session_token": {"type": "str", "no_log": True},
        }),
        supports_check_mode=True,
    )
    p = module.params
    cli = ErpopsCli(module)
    args: list[str] = []
    for name, option in (("db", "--db"), ("src", "--from"), ("dest", "--to"), ("storage_code", "--storage-code"),
                         ("jobs", "--jobs"), ("batch", "--batch"), ("checkpoint", "--checkpoint"),
                         ("endpoint_url", "--endpoint-url"), ("region", "--region")):
        flag(args, option, p[name])
    if p["allow_connected"]:
        args.append("--allow-connected")
    if not module.check_mode:
        args.append("--apply")
    try:
        report, argv = cli.run(["filestore", "migrate"], args, target=False)
    except CliFailed as exc:
        module.fail_json(msg=exc.msg, **exc.details)
        raise AssertionError("unreachable") from exc
    changed = bool(report.get("rows")) if module.check_mode else bool(report.get("moved"))
    module.exit_json(changed=changed, report=report, command=argv)


if __name__ == "__main__":
    main()
