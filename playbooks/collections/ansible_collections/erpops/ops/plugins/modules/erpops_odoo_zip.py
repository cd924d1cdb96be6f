#!/usr/bin/python
"""Ansible module erpops.ops.erpops_odoo_zip: Odoo database-manager zips in and out, with `erpops import|export`."""

from __future__ import annotations

DOCUMENTATION = r"""
module: erpops_odoo_zip
short_description: Import an Odoo database-manager zip as a database, or export a set or a database as one
version_added: 1.0.0
description:
  - O(mode=import) runs C(erpops import odoo-zip --json) - the zip's C(dump.sql) restored in one transaction into a
    new database O(db), its filestore into C(<filestore>/<db>/), every file's sha1 checked; any failure drops what was
    created. An existing database is refused, nothing changed. The copy is not neutralized.
  - O(mode=export) runs C(erpops export odoo-zip --json) - a backup set (O(set_id), default the newest one) or, with
    O(db), a live database, written as the zip Odoo's C(/web/database/restore) accepts. The zip is written beside
    O(dest) and renamed into place. When O(dest) exists and O(force) is false, nothing is done and the task reports
    C(ok), like C(creates).
  - Reports C(changed) when it imported or exported.
  - In check mode nothing is imported or written; the result shows the plan.
  - Needs an erpops with the C(import odoo-zip) / C(export odoo-zip) commands; an older one fails the task saying so.
  - To store a zip as a backup set instead, use M(erpops.ops.erpops_backup) with
    O(erpops.ops.erpops_backup#module:from_zip).
options:
  mode:
    description:
      - Import a zip as a new database, or export a set or a database as a zip.
    type: str
    choices: [import, export]
    required: true
  db:
    description:
      - O(mode=import), the new database to create (required).
      - O(mode=export), export this live database instead of a set (needs O(filestore)).
    type: str
  set_id:
    description:
      - O(mode=export), the set to export. Default, the newest complete set.
    type: str
  src:
    description:
      - The zip to import.
    type: path
  dest:
    description:
      - Where to write the exported zip.
    type: path
  filestore:
    description:
      - Odoo's filestore root (C(data_dir/filestore)); the database's files are in (or go to) C(<filestore>/<db>/).
      - O(mode=import), default the CLI's (Odoo's default data_dir).
    type: path
  copy:
    description:
      - O(mode=import), give the database a new identity (database.uuid, database.secret), as Odoo's "This database
        is a copy" does.
    type: bool
    default: false
  odoo_version:
    description:
      - O(mode=export) of a live database, the Odoo version to record in the zip's manifest. Default, base's.
    type: str
  work_dir:
    description:
      - O(mode=export) of a set, where a custom-format dump is decompressed for C(pg_restore).
    type: path
  force:
    description:
      - O(mode=export), overwrite O(dest) when it exists.
    type: bool
    default: false
extends_documentation_fragment:
  - erpops.ops.erpops
  - erpops.ops.erpops.postgres
attributes:
  check_mode:
    support: full
    description: Can run in check mode and return the changed status a real run would have, without changing anything.
    details: >-
      Import runs C(erpops import odoo-zip --dry-run), the real run's pre-flight - the zip is Odoo's, the server
      answers, the database and its filestore folder are absent, the disk has room, the role may create the
      database and the sandbox role, the whole dump passes the screen - and fails where the real run would.
      Export looks the set up (or checks O(filestore) for a live database); nothing is imported or written.
seealso:
  - module: erpops.ops.erpops_backup
  - module: erpops.ops.erpops_sets
author:
  - erpops maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Import a zip downloaded from Odoo's database manager
  erpops.ops.erpops_odoo_zip:
    mode: import
    src: /tmp/mfg.zip
    db: mfg_copy
    filestore: /var/lib/odoo/filestore
    copy: true

- name: Export the newest backup set of the stack for Odoo's database manager
  erpops.ops.erpops_odoo_zip:
    mode: export
    project_root: /srv/erpops
    stack: staging
    dest: /tmp/odoo_staging.zip

- name: Export a live database
  erpops.ops.erpops_odoo_zip:
    mode: export
    db: odoo_staging
    filestore: /var/lib/odoo/filestore
    dest: /tmp/odoo_staging-live.zip
"""

RETURN = r"""
db:
  description: The database imported or exported (null for a set export).
  returned: always
  type: str
set_id:
  description: The set exported.
  returned: O(mode=export) of a set
  type: str
path:
  description: The zip read or written.
  returned: always
  type: str
result:
  description: The CLI's result (the zip's manifest, file counts, sizes).
  returned: when something was imported or exported
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

import os  # noqa: E402
from typing import Any  # noqa: E402

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
            "mode": {"type": "str", "choices": ["import", "export"], "required": True},
            "db": {"type": "str"},
            "set_id": {"type": "str"},
            "src": {"type": "path"},
            "dest": {"type": "path"},
            "filestore": {"type": "path"},
            "copy": {"type": "bool", "default": False},
            "odoo_version": {"type": "str"},
            "work_dir": {"type": "path"},
            "force": {"type": "bool", "default": False},
        }),
        required_if=[("mode", "import", ("src", "db")), ("mode", "export", ("dest",))],
        mutually_exclusive=[("db", "set_id")],
        supports_check_mode=True,
    )
    p = module.params
    cli = ErpopsCli(module)
    set_id = None
    if p["mode"] == "import":
        command, path, target = ["import", "odoo-zip"], p["src"], False
        args = [path, "--to", p["db"]]
        flag(args, "--filestore", p["filestore"])
        if p["copy"]:
            args.append("--copy")
        if not os.path.isfile(path):
            module.fail_json(msg=f"src {path} does not exist", exit_code=2, error_type="UsageError")
        action = f"import {path} as new database {p['db']}"
    else:
        command, path, target = ["export", "odoo-zip"], p["dest"], True
        if os.path.exists(path) and not p["force"]:
            module.exit_json(changed=False, db=p["db"], path=path, command=[],
                             msg=f"{path} exists: nothing exported (force=true overwrites it)")
        if p["db"]:
            if not p["filestore"]:
                module.fail_json(msg="exporting a live database needs filestore (Odoo's data_dir/filestore)",
                                 exit_code=2, error_type="UsageError")
            args = ["--db", p["db"], "--filestore", p["filestore"]]
            flag(args, "--odoo-version", p["odoo_version"])
            action = f"export database {p['db']} to {path}"
        else:
            set_id = cli.resolve_set(p["set_id"])[0]
            args = [set_id]
            flag(args, "--work-dir", p["work_dir"])
            action = f"export set {set_id} to {path}"
        args += ["--out", path]
        if p["force"]:
            args.append("--force")
    if module.check_mode:
        planned: dict[str, Any] = {"action": action}
        if p["mode"] == "import":  # the real run's pre-flight, nothing changed
            planned = {**cli.run_or_fail(command, [*args, "--dry-run"], target=target)[0], **planned}
        module.exit_json(changed=True, db=p["db"], set_id=set_id, path=path,
                         command=cli.argv(command, args, target=target), planned=planned)
    result, argv = cli.run_or_fail(command, args, target=target)
    module.exit_json(changed=True, db=p["db"], set_id=set_id, path=path, result=result, command=argv)


if __name__ == "__main__":
    main()
