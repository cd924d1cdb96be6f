#!/usr/bin/python
"""Ansible module erpops.ops.erpops_rehearse: a restore rehearsal with `erpops rehearse`."""

from __future__ import annotations

DOCUMENTATION = r"""
module: erpops_rehearse
short_description: Rehearse a restore of a stack's newest verified erpops backup set
version_added: 1.0.0
description:
  - Runs C(erpops rehearse --from FROM --to TO --json) - the newest verified set of the O(from_stack) restored into
    a new, neutralized database on the O(to_stack) server, checked, timed against the RPO and RTO of O(from_stack),
    then dropped unless O(keep).
  - Reports C(changed) only when O(keep) leaves the rehearsal database behind.
  - Fails the task when the rehearsal misses its RPO or RTO or a check fails (the CLI's exit code 1), with the report.
  - Never lands in a prod tier; the CLI refuses O(to_stack) of tier prod.
  - In check mode nothing runs; the command that would run is returned.
options:
  from_stack:
    description:
      - Stack whose backups are rehearsed (its RPO and RTO apply). Default O(stack).
    type: str
  to_stack:
    description:
      - Stack whose PostgreSQL server receives the copy (never a prod tier).
    type: str
    required: true
  db:
    description:
      - Name of the rehearsal database. Default C(<db>_rehearsal_<YYYYmmddHHMM>).
    type: str
  report_dir:
    description:
      - Where C(rehearsal-<from>-<to>-<ts>.md) and C(.json) are written.
    type: path
  filestore:
    description:
      - Filestore root for the copy. Default, a temporary directory.
    type: path
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
      - Keep the rehearsal database and filestore for inspection (then the task reports C(changed)).
    type: bool
    default: false
  addons_path:
    description:
      - Odoo's addons directories (Enterprise included where installed). The installed modules' own
        C(data/neutralize.sql) files run from there, as C(odoo-bin neutralize) does. Default, erpops' own rules.
    type: list
    elements: path
  allow_unneutralized:
    description:
      - Installed modules accepted as not covered by neutralization (a neutralize file erpops has no rule for).
        Without it such a module fails the rehearsal (exit code 4, the copy rolled back).
    type: list
    elements: str
extends_documentation_fragment:
  - erpops.ops.erpops
  - erpops.ops.erpops.postgres
attributes:
  check_mode:
    support: partial
    description: Can run in check mode; nothing is restored.
    details: >-
      Nothing is restored. The set a real run would pick (the newest verified one of the stack) is looked up and
      returned with the plan; no verified set fails as a real run would (exit code 6).
seealso:
  - module: erpops.ops.erpops_restore
  - module: erpops.ops.erpops_verify
author:
  - erpops maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Rehearse a restore of the newest verified production set on the staging server
  erpops.ops.erpops_rehearse:
    from_stack: prod
    to_stack: staging
    report_dir: /var/lib/erpops/rehearsals
    pg_host: odoo-db-rw.erpops-staging.svc
    pg_password: "{{ erpops_pg_password }}"
  register: erpops_rehearse_result
"""

RETURN = r"""
set_id:
  description: The set rehearsed with (in check mode, the set a real run would pick).
  returned: success
  type: str
planned:
  description: What a real run would do.
  returned: check mode
  type: dict
ok:
  description: Whether every check passed and RPO and RTO were met (null in check mode).
  returned: always
  type: bool
rehearsal:
  description: The CLI's rehearsal report (rpo, rto with per-step timings, checks, row_counts, report paths).
  returned: success, not in check mode
  type: dict
command:
  description: The erpops command line run (or that would run).
  returned: always
  type: list
  elements: str
exit_code:
  description: The CLI's exit code on failure (1 - completed but a check failed or an objective was missed).
  returned: failure
  type: int
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erpops.ops.plugins.module_utils.erpops_cli import (  # noqa: E402
    CLI_ARGS,
    PG_ARGS,
    ErpopsCli,
    argument_spec,
    flag,
)


def main() -> None:
    module = AnsibleModule(
        # the target options are mapped here, not by ErpopsCli.argv: rehearse names its stacks --from/--to
        argument_spec=argument_spec(CLI_ARGS, PG_ARGS, {
            "stack": {"type": "str"},
            "from_stack": {"type": "str"},
            "to_stack": {"type": "str", "required": True},
            "target": {"type": "str"},
            "endpoint_url": {"type": "str"},
            "region": {"type": "str"},
            "aws_access_key_id": {"type": "str", "no_log": True},
            "aws_secret_access_key": {"type": "str", "no_log": True},
            "aws_session_token": {"type": "str", "no_log": True},
            "db": {"type": "str"},
            "report_dir": {"type": "path"},
            "filestore": {"type": "path"},
            "jobs": {"type": "int"},
            "work_dir": {"type": "path"},
            "keep": {"type": "bool", "default": False},
            "addons_path": {"type": "list", "elements": "path"},
            "allow_unneutralized": {"type": "list", "elements": "str"},
        }),
        supports_check_mode=True,
    )
    p = module.params
    from_stack = p["from_stack"] or p["stack"]
    if not from_stack:
        module.fail_json(msg="from_stack (or stack) is required: the stack whose backups are rehearsed")
    cli = ErpopsCli(module)
    args: list[str] = []
    flag(args, "--from", from_stack)
    flag(args, "--to", p["to_stack"])
    flag(args, "--target", p["target"])
    flag(args, "--endpoint-url", p["endpoint_url"])
    flag(args, "--region", p["region"])
    flag(args, "--db", p["db"])
    flag(args, "--report-dir", p["report_dir"])
    flag(args, "--filestore", p["filestore"])
    flag(args, "--jobs", p["jobs"])
    flag(args, "--work-dir", p["work_dir"])
    if p["keep"]:
        args.append("--keep")
    for path in p["addons_path"] or []:
        args += ["--addons-path", path]
    for name in p["allow_unneutralized"] or []:
        args += ["--allow-unneutralized", name]
    if module.check_mode:
        # pre-flight what can be read without restoring: the set a real run would pick (newest verified of the stack)
        listing_args: list[str] = []
        for name, value in (("--stack", from_stack), ("--target", p["target"]), ("--endpoint-url", p["endpoint_url"]),
                            ("--region", p["region"])):
            flag(listing_args, name, value)
        listing = cli.run_or_fail(["list"], listing_args, target=False)[0]
        ours = [s for s in listing.get("sets", []) if "error" not in s and s.get("stack") == from_stack]
        verified = [s for s in ours if s.get("verified") is True]
        if not verified:
            module.fail_json(msg=f"no verified complete backup set of stack {from_stack} in {listing.get('target')} "
                                 f"({len(ours)} unverified): a rehearsal restores only a verified set; take one "
                                 "with playbooks/backup.yml (it verifies the new set)", exit_code=6,
                             error_type="PreflightError", command=cli.argv(["rehearse"], args, target=False))
        chosen = verified[0]
        module.exit_json(changed=False, ok=None, set_id=chosen["set_id"],
                         command=cli.argv(["rehearse"], args, target=False),
                         planned={"action": f"restore set {chosen['set_id']} into a new neutralized database on "
                                            f"{p['pg_host'] or 'PGHOST'} (stack {p['to_stack']}), check, time, "
                                            + ("keep it" if p["keep"] else "drop it"),
                                  "set": chosen, "to_stack": p["to_stack"]})
    result, argv = cli.run_or_fail(["rehearse"], args, target=False)
    module.exit_json(changed=bool(p["keep"] and result.get("restored")), ok=bool(result.get("ok")),
                     set_id=(result.get("set") or {}).get("set_id"), rehearsal=result, command=argv)


if __name__ == "__main__":
    main()
