#!/usr/bin/python
"""Ansible module erpops.ops.erpops_patch: patch a stack's Odoo with `erpops patch`."""

from __future__ import annotations

DOCUMENTATION = r"""
module: erpops_patch
short_description: Patch one stack's Odoo (new image, module updates) as one governed change
version_added: 1.0.0
description:
  - Runs C(erpops patch --json) - pre-flight (health checks, a verified backup set younger than the spec's
    C(backup.max_age_for_patch_hours) or one taken now, approval and change window on prod), freeze (cron
    stopped, web in maintenance), a verified pre-patch backup set, the module update with the new image, web and
    cron rolled to it, then a gate (health checks and a load-test smoke).
  - Any failure after the pre-patch backup rolls back by itself (pre-patch set restored with C(--replace)
    semantics, previous image rolled out again, health checks); the task then fails with exit code 4 and the
    rollback report.
  - A run that finds an unfinished run of the same stack (state file C(.erpops/patch-<stack>.json)) first rolls it
    back (or finishes it when its gate had passed), then patches.
  - Reports C(changed) whenever the CLI changed the stack (a patch done, or a rollback).
  - In check mode the CLI's own C(--check) runs - the plan, every command it would run, and the pre-flight
    findings - and nothing changes.
options:
  image:
    description:
      - New image, pinned, C(odoo:17.0-20261120) or C(odoo@sha256:<64 hex>).
    type: str
    required: true
  modules:
    description:
      - Modules to update (C(-u)). Empty means every installed module (C(-u all)).
    type: list
    elements: str
    default: []
  driver:
    description:
      - C(kubernetes) (kubectl through the stack's context) or C(command) (shell commands from O(driver_file)).
    type: str
    choices: [kubernetes, command]
    default: kubernetes
  driver_file:
    description:
      - The command driver's YAML/JSON file, one shell command per step.
    type: path
  from_image:
    description:
      - The image running now. Default, read by the driver.
    type: str
  approved_by:
    description:
      - Who approved the change. Required on prod.
    type: str
  window:
    description:
      - Change window C(START/END) in UTC, e.g. C(2026-11-29T22:00Z/2026-11-30T02:00Z). Required on prod; the run is
        refused outside it.
    type: str
  db:
    description:
      - Odoo database. Default, the stack's.
    type: str
  filestore:
    description:
      - Local filestore root to back up and restore with the database. Default, the database alone.
    type: path
  max_backup_age_hours:
    description:
      - Youngest verified set the pre-flight accepts. Default, the spec's C(backup.max_age_for_patch_hours).
    type: float
  odoo_url:
    description:
      - Odoo URL for health checks and the smoke. Default C(https://<kubernetes.host>) of the stack.
    type: str
  health_checks:
    description:
      - Only run health checks whose name starts with one of these. Default, every check that applies.
    type: list
    elements: str
    default: []
  smoke_cmd:
    description:
      - Gate smoke command. Default C(erpops loadtest gate --stack <stack> --host <url> --read-only --runs 1).
    type: str
  no_smoke:
    description:
      - Gate on health checks only.
    type: bool
    default: false
  web_mode:
    description:
      - kubernetes driver - freeze web by scaling it to 0 (C(scale)), or with O(maintenance_cmd) (C(command)).
    type: str
    choices: [scale, command]
    default: scale
  maintenance_cmd:
    description:
      - Command that puts web in maintenance (O(web_mode=command)).
    type: str
  unmaintenance_cmd:
    description:
      - Command that takes web out of maintenance (O(web_mode=command)).
    type: str
  module_job:
    description:
      - kubernetes driver - the module Job manifest. Default, rendered from helm/odoo and the stack's spec.
    type: path
  state_dir:
    description:
      - Directory of the state file and the local audit log. Default C(<project root>/.erpops).
    type: path
  abort:
    description:
      - Only roll back (or finish) an interrupted run; start no new patch.
    type: bool
    default: false
extends_documentation_fragment:
  - erpops.ops.erpops
  - erpops.ops.erpops.postgres
attributes:
  diff_mode:
    support: full
    description: The Odoo image before and after a patch that changed the stack.
  check_mode:
    support: full
    description: Runs C(erpops patch --check) - the plan and the pre-flight findings, nothing changed.
seealso:
  - module: erpops.ops.erpops_backup
  - module: erpops.ops.erpops_restore
author:
  - erpops maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Patch prod to a new Odoo build, updating mrp and stock
  erpops.ops.erpops_patch:
    project_root: /srv/erpops
    stack: prod
    image: odoo:17.0-20261120
    modules: [mrp, stock]
    approved_by: alice
    window: 2026-11-29T22:00Z/2026-11-30T02:00Z
  register: erpops_patch_result

- name: Patch a VM install with the command driver
  erpops.ops.erpops_patch:
    stack: dev-vm
    db: odoo
    target: s3://acme-erpops-dev-backups/dev-vm
    image: odoo:17.0-20261120
    driver: command
    driver_file: /etc/erpops/patch-driver.yml
"""

RETURN = r"""
result:
  description: C(done), C(aborted), C(nothing to abort); in check mode C(plan).
  returned: success
  type: str
run_id:
  description: The patch run's id, as in the state file and the audit line.
  returned: when a patch ran
  type: str
audit:
  description: The audit line written to the local log and to C(<target>/audit/patch-<ts>.jsonl).
  returned: when a patch ran
  type: dict
recovered:
  description: What was done with an interrupted run found in the state file (run_id, action, status).
  returned: when there was one
  type: dict
plan:
  description: The CLI's plan (steps, commands, pre-flight notes and problems).
  returned: check mode
  type: dict
problems:
  description: Why the pre-flight refused the patch.
  returned: when refused (exit code 6)
  type: list
  elements: str
command:
  description: The erpops command line run (or that would run).
  returned: always
  type: list
  elements: str
exit_code:
  description: The CLI's exit code (4 failed and rolled back, 6 refused, 1 the rollback failed too).
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
            "image": {"type": "str", "required": True},
            "modules": {"type": "list", "elements": "str", "default": []},
            "driver": {"type": "str", "choices": ["kubernetes", "command"], "default": "kubernetes"},
            "driver_file": {"type": "path"},
            "from_image": {"type": "str"},
            "approved_by": {"type": "str"},
            "window": {"type": "str"},
            "db": {"type": "str"},
            "filestore": {"type": "path"},
            "max_backup_age_hours": {"type": "float"},
            "odoo_url": {"type": "str"},
            "health_checks": {"type": "list", "elements": "str", "default": []},
            "smoke_cmd": {"type": "str"},
            "no_smoke": {"type": "bool", "default": False},
            "web_mode": {"type": "str", "choices": ["scale", "command"], "default": "scale"},
            "maintenance_cmd": {"type": "str"},
            "unmaintenance_cmd": {"type": "str"},
            "module_job": {"type": "path"},
            "state_dir": {"type": "path"},
            "abort": {"type": "bool", "default": False},
        }),
        required_if=[("driver", "command", ("driver_file",)), ("web_mode", "command", ("maintenance_cmd",))],
        supports_check_mode=True,
    )
    p = module.params
    if not p["stack"]:
        module.fail_json(msg="stack is required: the stack to patch (Pulumi.<stack>.yaml)", exit_code=2,
                         error_type="UsageError")
    cli = ErpopsCli(module)
    args = ["--image", p["image"], "--modules", ",".join(p["modules"]) or "all", "--driver", p["driver"]]
    for name in ("driver_file", "from_image", "approved_by", "window", "db", "filestore", "max_backup_age_hours",
                 "odoo_url", "smoke_cmd", "maintenance_cmd", "unmaintenance_cmd", "module_job", "state_dir"):
        flag(args, "--" + name.replace("_", "-"), p[name])
    for prefix in p["health_checks"]:
        flag(args, "--health-check", prefix)
    if p["web_mode"] != "scale":
        flag(args, "--web-mode", p["web_mode"])
    if p["no_smoke"]:
        args.append("--no-smoke")
    if p["abort"]:
        args.append("--abort")

    if module.check_mode:
        try:
            plan, argv = cli.run(["patch"], [*args, "--check"])
        except CliFailed as exc:
            details = dict(exc.details)
            details["plan"] = details.pop("report", None)
            module.fail_json(msg=exc.msg, **details)
        module.exit_json(changed=bool(plan.get("ok")) and not p["abort"], result="plan", plan=plan, command=argv)
    try:
        result, argv = cli.run(["patch"], args)
    except CliFailed as exc:
        # exit 4: failed and rolled back (the stack changed twice); 6: refused, nothing changed
        module.fail_json(msg=exc.msg, changed=exc.details.get("exit_code") != 6, **exc.details)
    changed = result.get("result") == "done" or bool(result.get("recovered"))
    out = {"changed": changed, "result": result.get("result"), "run_id": result.get("run_id"),
           "audit": result.get("audit"), "recovered": result.get("recovered"), "command": argv}
    if module._diff and changed:
        audit = result.get("audit") if isinstance(result.get("audit"), dict) else {}
        before = result.get("from_image") or audit.get("from_image") or p.get("from_image")
        after = result.get("to_image") or audit.get("to_image") or p["image"]
        out["diff"] = {"before": f"image: {before}\n", "after": f"image: {after}\n",
                       "before_header": "Odoo image", "after_header": "Odoo image"}
    module.exit_json(**out)


if __name__ == "__main__":
    main()
