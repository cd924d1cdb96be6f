"""The one JSON envelope every `--json` output of erpops carries (documented in docs/json-output.md).

    {"schema_version": 1, "command": "erpops backup", "ok": true, ...the command's own fields...}
    {"schema_version": 1, "command": "erpops restore", "ok": false, "error": "...", "error_type": "PreflightError",
     "exit_code": 6, "problems": ["..."]}

The command's fields stay at the top level (scripts and the Ansible collection read them there), so
the envelope only adds keys. `schema_version` changes when a field is removed or changes meaning.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

import click

SCHEMA_VERSION = 1


def command_path(default: str = "erpops") -> str:
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return default
    path = ctx.command_path
    return path if path.startswith("erpops") else f"erpops {path.split(' ', 1)[-1]}".strip()


def envelope(body: Mapping[str, Any], *, command: str | None = None, ok: bool | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "command": command or command_path()}
    out.update(body)
    if ok is not None:
        out["ok"] = ok
    out.setdefault("ok", True)
    out["schema_version"] = SCHEMA_VERSION  # a body cannot override it
    return out


def error(exc: BaseException, *, command: str | None = None) -> dict[str, Any]:
    from erpops.errors import ErpopsError, PreflightError, SpecError

    body: dict[str, Any] = {"error": str(exc), "error_type": type(exc).__name__,
                            "exit_code": exc.exit_code if isinstance(exc, ErpopsError) else 70}
    if isinstance(exc, PreflightError):
        body["problems"] = exc.problems
    if isinstance(exc, SpecError):
        body["problems"] = [{"key": key, "message": message} for key, message in exc.problems]
    return envelope(body, command=command, ok=False)


def json_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """With --json (a click parameter named as_json), an erpops error is also printed as this envelope on
    stdout, once, then re-raised for the exit code."""
    from erpops.errors import ErpopsError

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ErpopsError as exc:
            if kwargs.get("as_json") and not getattr(exc, "json_printed", False):
                click.echo(json.dumps(error(exc), indent=2))
                exc.json_printed = True  # type: ignore[attr-defined]
            raise

    return wrapper
