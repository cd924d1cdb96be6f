"""Shared plumbing of the erpops.ops modules: find the erpops CLI, run it with --json, read its result.

The CLI prints one JSON object on stdout (on failure {"ok": false, "error", "error_type",
"exit_code"}); `erpops verify` of a damaged set prints its report first, then the error object,
so every object on stdout is read and the last one wins for errors. Progress goes to stderr as
JSON lines and is kept only as a tail for failure messages.

Secrets go into the child's environment (PGPASSWORD, AWS_SECRET_ACCESS_KEY, ...), never on argv:
argv is returned to the user as `command`.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

ERPOPS_URL = "https://example.invalid/erpops (pip install -e <erpops checkout> into the venv Ansible runs modules with)"

# Where the CLI is and which project it works on: every module.
CLI_ARGS: dict[str, dict[str, Any]] = {
    "erpops_bin": {"type": "path"},
    "project_root": {"type": "path"},
}

# Which stack and backup target: every module working on backup sets.
TARGET_ARGS: dict[str, dict[str, Any]] = {
    **CLI_ARGS,
    "stack": {"type": "str"},
    "target": {"type": "str"},
    "endpoint_url": {"type": "str"},
    "region": {"type": "str"},
    "aws_access_key_id": {"type": "str", "no_log": True},
    "aws_secret_access_key": {"type": "str", "no_log": True},
    "aws_session_token": {"type": "str", "no_log": True},
}

# Options of the modules that talk to PostgreSQL.
PG_ARGS: dict[str, dict[str, Any]] = {
    "pg_host": {"type": "str"},
    "pg_port": {"type": "int"},
    "pg_user": {"type": "str"},
    "pg_password": {"type": "str", "no_log": True},
}

_ENV = {
    "pg_host": "PGHOST",
    "pg_port": "PGPORT",
    "pg_user": "PGUSER",
    "pg_password": "PGPASSWORD",
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "aws_session_token": "AWS_SESSION_TOKEN",
}

STDERR_TAIL = 20


def argument_spec(*parts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    spec: dict[str, dict[str, Any]] = {}
    for part in parts:
        spec.update({name: dict(opts) for name, opts in part.items()})
    return spec


def json_objects(text: str) -> list[dict[str, Any]]:
    """Every JSON object printed on stdout, in order (anything else is skipped)."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    i = 0
    while True:
        start = text.find("{", i)
        if start < 0:
            return found
        try:
            obj, end = decoder.raw_decode(text, start)
        except ValueError:
            i = start + 1
            continue
        if isinstance(obj, dict):
            found.append(obj)
        i = end


class CliFailed(Exception):
    """The CLI exited non-zero; carries what fail_json needs."""

    def __init__(self, msg: str, details: dict[str, Any]) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details


class ErpopsCli:
    """The erpops command line, as seen from one module run."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.path = self._locate()

    def _locate(self) -> str:
        explicit = self.module.params.get("erpops_bin")
        if explicit:
            if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
                return str(explicit)
            self.module.fail_json(msg=f"erpops_bin {explicit} is not an executable file: point it at the erpops "
                                      "command line (<venv>/bin/erpops)")
        # Beside the interpreter running this module: the venv erpops is installed in.
        beside = os.path.join(os.path.dirname(sys.executable), "erpops")
        if os.path.isfile(beside) and os.access(beside, os.X_OK):
            return beside
        found = self.module.get_bin_path("erpops")
        if found:
            return str(found)
        self.module.fail_json(
            msg=missing_required_lib("erpops", reason="to run the erpops command line", url=ERPOPS_URL)
            + f" Looked for erpops_bin, {beside} and PATH; set ansible_python_interpreter to the venv "
              "erpops is installed in, or pass erpops_bin.")
        raise AssertionError("unreachable")  # fail_json exits

    def env(self) -> dict[str, str]:
        params = self.module.params
        return {var: str(params[name]) for name, var in _ENV.items() if params.get(name) is not None}

    def argv(self, command: list[str], args: list[str], *, target: bool = True) -> list[str]:
        params = self.module.params
        argv = [self.path]
        if params.get("project_root"):
            argv += ["--root", str(params["project_root"])]
        argv += command
        if target:
            for name, flag in (("target", "--target"), ("stack", "--stack"), ("endpoint_url", "--endpoint-url"),
                               ("region", "--region")):
                if params.get(name):
                    argv += [flag, str(params[name])]
        return [*argv, "--json", *args]

    def run(self, command: list[str], args: list[str] | None = None, *,
            target: bool = True) -> tuple[dict[str, Any], list[str]]:
        """Run `erpops <command> ... --json <args>`: (result object, argv), or raise CliFailed."""
        argv = self.argv(command, args or [], target=target)
        rc, out, err = self.module.run_command(argv, environ_update=self.env(), check_rc=False)
        objects = json_objects(out)
        tail = [line for line in err.splitlines() if line.strip()][-STDERR_TAIL:]
        if rc == 0 and objects:
            return objects[-1], argv
        if rc == 2 and "No such command" in err:
            raise CliFailed(f"this erpops ({self.path}) has no `{' '.join(command)}` command: upgrade erpops",
                            {"rc": rc, "exit_code": rc, "error_type": "UsageError", "command": argv,
                             "stderr_lines": tail})
        error = next((o for o in reversed(objects) if "error" in o), None)
        details: dict[str, Any] = {"rc": rc, "exit_code": rc, "command": argv, "stderr_lines": tail}
        if error is not None:
            details["error_type"] = error.get("error_type")
            if "problems" in error:
                details["problems"] = error["problems"]
            reports = [o for o in objects if o is not error]
            if reports:
                details["report"] = reports[-1]
            raise CliFailed(str(error.get("error")), details)
        msg = (tail[-1] if tail else "") or f"erpops {' '.join(command)} exited {rc} without a JSON result"
        raise CliFailed(msg, details)

    def run_or_fail(self, command: list[str], args: list[str] | None = None, *,
                    target: bool = True) -> tuple[dict[str, Any], list[str]]:
        try:
            return self.run(command, args, target=target)
        except CliFailed as exc:
            self.module.fail_json(msg=exc.msg, **exc.details)
            raise AssertionError("unreachable") from exc

    def list_sets(self, db: str | None = None) -> dict[str, Any]:
        """`erpops list --json` (read only)."""
        return self.run_or_fail(["list"], ["--db", db] if db else [])[0]

    def resolve_set(self, set_id: str | None, db: str | None = None) -> tuple[str, dict[str, Any]]:
        """(set id, its listing entry): the given set, else the newest complete set (of db, if given)."""
        listing = self.list_sets(None if set_id else db)  # a named set is found whatever its database
        sets = [s for s in listing.get("sets", []) if "error" not in s]
        if set_id:
            entry = next((s for s in listing.get("sets", []) if s.get("set_id") == set_id), None)
            if entry is None:
                self.module.fail_json(msg=f"no complete backup set {set_id!r} in {listing.get('target')}: list "
                                          "the sets with erpops.ops.erpops_sets (or `erpops list`)",
                                      exit_code=2, error_type="UsageError")
            return set_id, entry or {}
        if not sets:
            which = f" of database {db}" if db else ""
            self.module.fail_json(msg=f"no complete backup set{which} in {listing.get('target')}: take one "
                                      "first (playbooks/backup.yml)", exit_code=2, error_type="UsageError")
        return str(sets[0]["set_id"]), sets[0]

    def planned_target(self) -> str:
        params = self.module.params
        if params.get("target"):
            return str(params["target"])
        if params.get("stack"):
            return f"the backup bucket of stack {params['stack']} (s3://<backup_bucket>/{params['stack']})"
        return os.environ.get("ERPOPS_BACKUP_TARGET", "") or "(none: pass target or stack)"


def flag(args: list[str], name: str, value: Any) -> None:
    """Append `name value` when value is set (0 counts as set)."""
    if value is not None and value != "":
        args += [name, str(value)]
