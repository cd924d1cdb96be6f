#!/usr/bin/python
"""Ansible module erpops.ops.erpops_restore: restore a backup set with `erpops restore`."""

from __future__ import annotations

DOCUMENTATION = r"""
module: erpops_restore
short_description: Restore an erpops backup set into a new database, or replace one
version_added: 1.0.0
description:
  - Runs C(erpops restore --json) - pre-flight checks, a verify of the set, a restore into a side database,
    row counts compared, then a rename into place. A failure after the pre-flight rolls everything back.
  - Restores into a new database unless O(replace=true). An existing database without O(replace) is refused by
    the pre-flight (exit code 6) and left untouched.
  - O(replace=true) passes C(--yes) to the CLI (no prompt in automation); the playbook asks for its own
    confirmation variable first.
  - Always reports C(changed) on success.
  - In check mode the set is looked up (the newest one when O(set_id) is not given) and C(erpops restore --dry-run)
    makes the pre-flight of a real run - the server answers with these credentials, the role may create (and
    replace) the database, the database is absent (or present with O(replace)), versions, disk - and returns the
    plan. A check that fails fails the task as the real run would; nothing is changed either way.
options:
  set_id:
    description:
      - Set to restore. Default, the newest complete set (of O(source_db), if given).
    type: str
  source_db:
    description:
      - With no O(set_id), pick the newest set of this database.
    type: str
  db:
    description:
      - Database to restore into.
    type: str
    required: true
    aliases: [to]
  filestore:
    description:
      - Odoo's filestore root (C(data_dir/filestore)); files go to C(<root>/<db>/).
    type: path
  skip_filestore:
    description:
      - Restore the database only.
    type: bool
    default: false
  replace:
    description:
      - Replace an existing database. It is kept until the new one is complete, then dropped.
    type: bool
    default: false
  neutralize:
    description:
      - Neutralize the restored copy (mail servers and crons off). Default, on for Odoo databases unless the
        O(stack) tier is prod.
    type: bool
  addons_path:
    description:
      - Odoo's addons directories (Enterprise included where installed). The installed modules' own
        C(data/neutralize.sql) files run from there, as C(odoo-bin neutralize) does. Default, erpops' own rules.
    type: list
    elements: path
  allow_unneutralized:
    description:
      - Installed modules accepted as not covered by neutralization (a neutralize file erpops has no rule for).
        Without it such a module fails the neutralized restore, rolled back.
    type: list
    elements: str
  odoo_version:
    description:
      - Odoo version of the image that will run the database, e.g. C(17.0); majors must match the set's.
    type: str
  owner:
    description:
      - Role to own the database and its objects. Default, the connecting role.
    type: str
  jobs:
    description:
      - C(pg_restore) jobs.
    type: int
    default: 2
  work_dir:
    description:
      - Where the dump is decompressed for C(pg_restore -j).
    type: path
extends_documentation_fragment:
  - erpops.ops.erpops
  - erpops.ops.erpops.postgres
attributes:
  diff_mode:
    support: full
    description: The database before (absent or replaced) and after (the set, row counts).
  check_mode:
    support: full
    description: Can run in check mode and return the changed status a real run would have, without changing anything.
    details: >-
      C(erpops restore --dry-run) runs the real run's pre-flight and changes nothing; C(changed) is reported only
      for a restore that passed it (a real run would restore). The set's bytes are verified on a real run only,
      before anything is built.
seealso:
  - module: erpops.ops.erpops_sets
  - module: erpops.ops.erpops_verify
author:
  - erpops maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Restore the newest set into a new database
  erpops.ops.erpops_restore:
    project_root: /srv/erpops
    stack: staging
    db: odoo_staging_copy
    skip_filestore: true

- name: Replace the staging database with a given set
  erpops.ops.erpops_restore:
    stack: staging
    set_id: prod-odoo_prod-20261129T020000Z-3f2a
    db: odoo_staging
    filestore: /var/lib/odoo/filestore
    replace: true
    odoo_version: "17.0"
    pg_password: "{{ erpops_pg_password }}"
"""

RETURN = r"""
set_id:
  description: The set restored (or that would be).
  returned: always
  type: str
db:
  description: The database restored into.
  returned: always
  type: str
replaced:
  description: Whether an existing database was replaced.
  returned: success, not in check mode
  type: bool
row_counts:
  description: Row counts of the restored database (Odoo's main tables), equal to the manifest's.
  returned: success, not in check mode
  type: dict
restore:
  description: The CLI's restore report (filestore, neutralization, notes, timings, leftovers).
  returned: success, not in check mode
  type: dict
planned:
  description: What a real run would do, with the pre-flight checks that passed (C(checks)) and its notes.
  returned: check mode
  type: dict
problems:
  description: The pre-flight checks that refused the restore, each with its fix.
  returned: when refused by pre-flight
  type: list
  elements: str
command:
  description: The erpops command line run (or that would run).
  returned: always
  type: list
  elements: str
exit_code:
  description: The CLI's exit code (6 refused by pre-flight, nothing changed; 4 failed and rolled back; 5 integrity).
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
            "source_db": {"type": "str"},
            "db": {"type": "str", "required": True, "aliases": ["to"]},
            "filestore": {"type": "path"},
            "skip_filestore": {"type": "bool", "default": False},
            "replace": {"type": "bool", "default": False},
            "neutralize": {"type": "bool"},
            "addons_path": {"type": "list", "elements": "path"},
            "allow_unneutralized": {"type": "list", "elements": "str"},
            "odoo_version": {"type": "str"},
            "owner": {"type": "str"},
            "jobs": {"type": "int", "default": 2},
            "work_dir": {"type": "path"},
        }),
        supports_check_mode=True,
    )
    p = module.params
    # Not Ansible's mutually_exclusive: it counts a parameter given as false (skip_filestore: false, as a playbook
    # passes it) as present. Only filestore together with skip_filestore=true contradicts.
    if p["filestore"] and p["skip_filestore"]:
        module.fail_json(msg="filestore and skip_filestore=true contradict each other: give the filestore root to "
                             "restore the files, or skip_filestore=true to restore the database only",
                         exit_code=2, error_type="UsageError")
    cli = ErpopsCli(module)
    set_id, entry = cli.resolve_set(p["set_id"], p["source_db"])
    args = [set_id, "--to", p["db"]]
    flag(args, "--filestore", p["filestore"])
    if p["skip_filestore"]:
        args.append("--skip-filestore")
    if p["replace"]:
        args += ["--replace", "--yes"]
    if p["neutralize"] is not None:
        args.append("--neutralize" if p["neutralize"] else "--no-neutralize")
    for path in p["addons_path"] or []:
        args += ["--addons-path", path]
    for name in p["allow_unneutralized"] or []:
        args += ["--allow-unneutralized", name]
    flag(args, "--odoo-version", p["odoo_version"])
    flag(args, "--owner", p["owner"])
    flag(args, "--jobs", p["jobs"])
    flag(args, "--work-dir", p["work_dir"])

    if module.check_mode:
        # the real run's pre-flight, nothing changed: a restore that would be refused fails here too
        plan = cli.run_or_fail(["restore"], [*args, "--dry-run"])[0]
        module.exit_json(changed=True, set_id=set_id, db=p["db"], command=cli.argv(["restore"], args),
                         planned={**plan, "set": entry})

    result, argv = cli.run_or_fail(["restore"], args)
    out = {"changed": True, "set_id": set_id, "db": result.get("db", p["db"]), "replaced": result.get("replaced"),
           "row_counts": result.get("row_counts"), "restore": result, "command": argv}
    if module._diff:
        db = out["db"]
        out["diff"] = {"before_header": f"database {db}", "after_header": f"database {db}",
                       "before": f"{db}: {'a database (replaced)' if result.get('replaced') else 'absent'}\n",
                       "after": f"{db}: restored from set {set_id}\n"
                                + "".join(f"  {t}: {n} rows\n" for t, n in sorted((out['row_counts'] or {}).items())
                                          if n is not None)}
    module.exit_json(**out)


if __name__ == "__main__":
    main()
