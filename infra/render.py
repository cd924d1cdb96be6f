"""`erpops render`: what `pulumi up` would create for a stack, as plain files, without a cluster or the CLI.

Runs the real Pulumi program (infra/__main__.py) under Pulumi's mocks, captures every resource it
registers, renders the helm/odoo chart with the exact values the Odoo component passed, and writes:

  <out>/k8s/<kind>-<name>.yaml     every Kubernetes object the program registers, one per file
  <out>/chart/<kind>-<name>.yaml   every object of the helm/odoo chart, one per file
  <out>/aws.yaml                   the pulumi-aws resources (buckets, IAM), as plain dicts
  <out>/resources.json             every registration: type, name, URN, parent, provider, inputs
  <out>/odoo-values.yaml           the values the Odoo component passed to the chart
  <out>/ops.json                   the stack's `ops` output

Secret values never reach a file: the program's secrets (Pulumi secret config, generated passwords,
access keys) are fed in or mocked as placeholders and written as references like
`<secret:pulumi-random/redis-password>`.

Pulumi is imported inside functions only: the `erpops` CLI stays importable without it. Pulumi's mocks
keep global state between runs; `render_all` renders each stack in its own process (in parallel).
"""

from __future__ import annotations

import json
import math
import os
import runpy
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import yaml

from erpops import jsonout, spec
from erpops.errors import ErpopsError, UsageError
from infra.chart import render_chart

PROJECT = "erpops"
# Every placeholder carries this, so a test can grep rendered files for any leaked secret value
PLACEHOLDER_PREFIX = "erpops-render-placeholder"
# Pulumi's wire marker of a secret value (sdk/go/common/resource/properties.go), not a credential
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"  # noqa: S105
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"  # noqa: S105


class ProgramError(ErpopsError):
    """The Pulumi program refused the stack's config (it raised pulumi.RunError): nothing was rendered."""

    exit_code = 2


class RenderError(ErpopsError):
    """The program rendered objects that cannot be applied (a bug in erpops, not in the spec)."""

    exit_code = 1


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    parent: str
    provider: str
    custom: bool
    inputs: dict[str, Any]
    depends_on: list[str] = field(default_factory=list)  # URNs of the resource's dependencies

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "urn": self.urn, "parent": self.parent,
                "provider": self.provider, "custom": self.custom, "depends_on": self.depends_on,
                "inputs": self.inputs}


@dataclass
class Rendered:
    stack: str
    registrations: list[Registration]
    manifests: list[dict[str, Any]]  # Kubernetes objects the program registers itself
    chart_objects: list[dict[str, Any]]  # objects of helm/odoo with the program's values
    chart_values: dict[str, Any]
    aws: list[dict[str, Any]]
    ops: dict[str, Any]


# --------------------------------------------------------------------------------------------
# Values: secrets to references, floats to ints
# --------------------------------------------------------------------------------------------

class _Secrets:
    """Placeholder secret values handed to the program, and the reference each stands for."""

    def __init__(self) -> None:
        self.by_value: dict[str, str] = {}

    def make(self, source: str) -> str:
        value = f"{PLACEHOLDER_PREFIX}-{source.replace('/', '-').replace(':', '-')}"
        self.by_value[value] = f"<secret:{source}>"
        return value

    def reference(self, value: Any) -> str:
        return self.by_value.get(value, "<secret>") if isinstance(value, str) else "<secret>"


def clean(value: Any, secrets: _Secrets, *, in_secret: bool = False) -> Any:
    """Wire values -> plain data: secrets unwrapped to references, 8080.0 -> 8080.

    Inside a secret-wrapped mapping or list (e.g. a Secret's whole stringData) every leaf becomes a
    reference: the one it stands for when it is a known placeholder, else `<secret>`.
    """
    if isinstance(value, dict):
        if value.get(SECRET_SIG_KEY) == SECRET_SIG:
            return clean(value.get("value"), secrets, in_secret=True)
        return {k: clean(v, secrets, in_secret=in_secret) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v, secrets, in_secret=in_secret) for v in value]
    if in_secret:
        return secrets.reference(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def _is_manifest(reg: Registration) -> bool:
    return reg.custom and reg.type.startswith("kubernetes:") and "apiVersion" in reg.inputs and "kind" in reg.inputs


def _manifest(inputs: dict[str, Any]) -> dict[str, Any]:
    head = {k: inputs[k] for k in ("apiVersion", "kind", "metadata") if k in inputs}
    return {**head, **{k: v for k, v in inputs.items() if k not in head}}


# --------------------------------------------------------------------------------------------
# Running the program under mocks
# --------------------------------------------------------------------------------------------

def mock_config(raw: Any, sized: spec.Sized, secrets: _Secrets) -> tuple[dict[str, str], list[str]]:
    """The stack's config as the program reads it: the spec, and a placeholder per secret key it names."""
    config = {f"{PROJECT}:spec": json.dumps(raw)}
    secret_keys = []
    names = [sized.spec.secrets.odoo_admin_password]
    if sized.spec.object_storage.mode == "s3-compatible":
        names += [sized.spec.secrets.s3_access_key_id or "", sized.spec.secrets.s3_secret_access_key or ""]
    sp = sized.spec
    names += [k for k in (sp.secrets.backup_s3_access_key_id, sp.secrets.backup_s3_secret_access_key,
                          sp.mail.outgoing.password_key if sp.mail.outgoing else None,
                          sp.secrets.redis_password if sp.redis.enabled and sp.redis.mode == "managed" else None,
                          sp.image.build.registry_username_key, sp.image.build.registry_password_key,
                          *((sp.drill.s3_access_key_id_key, sp.drill.s3_secret_access_key_key)
                            if sp.drill.enabled and sp.object_storage.mode == "s3-compatible" else ())) if k]
    for name in names:
        key = f"{PROJECT}:{name}"
        config[key] = secrets.make(f"pulumi-config/{key}")
        secret_keys.append(key)
    return config, secret_keys


def run_program(root: Path, stack: str, config: dict[str, str], secret_keys: list[str],
                secrets: _Secrets | None = None,
                inspect: Callable[[dict[str, Any]], Any] | None = None,
                sink: list[Registration] | None = None) -> tuple[list[Registration], Any]:
    """Run infra/__main__.py under mocks; return every registration and the resolved `ops` output.

    `inspect(program_globals)` may return an Output (e.g. `Output.all(...).apply(check)`): it is awaited
    with the program, so assertions made inside it fail the run instead of being silently skipped.
    A pulumi.RunError from the program (e.g. a bad spec) propagates unchanged; `sink`, when given,
    collects the registrations even then.
    """
    import pulumi
    from pulumi.runtime import mocks as pulumi_mocks
    from pulumi.runtime import settings as pulumi_settings

    secrets = secrets or _Secrets()
    registrations: list[Registration] = sink if sink is not None else []
    parents: dict[tuple[str, str], tuple[str, str, list[str]]] = {}

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
            state = dict(args.inputs)
            resource_id = f"{args.name}-id"
            if args.typ == "random:index/randomPassword:RandomPassword":
                state["result"] = secrets.make(f"pulumi-random/{args.name}")
            elif args.typ == "aws:iam/accessKey:AccessKey":
                resource_id = secrets.make(f"aws-iam-access-key-id/{args.name}")
                state["secret"] = secrets.make(f"aws-iam-secret-access-key/{args.name}")
            elif args.typ == "aws:s3/bucket:Bucket":
                resource_id = str(args.inputs.get("bucket", args.name))
                state["arn"] = f"arn:aws:s3:::{resource_id}"
            elif args.typ == "aws:iam/user:User":
                state["arn"] = f"arn:aws:iam::000000000000:user/{args.inputs.get('name', args.name)}"
            parent, urn, deps = parents.get((args.typ, args.name), ("", "", []))
            registrations.append(Registration(
                type=args.typ, name=args.name, urn=urn, parent=parent, provider=args.provider or "",
                custom=bool(args.custom), inputs=clean(args.inputs, secrets), depends_on=deps))
            return resource_id, state

        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
            return {}, None

    class Monitor(pulumi_mocks.MockMonitor):
        """Records each registration's parent URN and dependencies, which the mocks' arguments do not carry."""

        def RegisterResource(self, request: Any) -> Any:
            urn = self.make_urn(request.parent, request.type, request.name)
            parents[(request.type, request.name)] = (request.parent, urn, sorted(request.dependencies))
            return super().RegisterResource(request)

    mocks = Mocks()
    # set_mocks keeps an earlier run's root Stack resource: drop it so this run's URNs name this stack
    pulumi_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=Monitor(mocks))
    pulumi.runtime.set_all_config(config, secret_keys)

    resolved: dict[str, Any] = {}

    def program() -> Any:
        namespace = runpy.run_path(str(root / "infra" / "__main__.py"), run_name="__main__")
        extra = inspect(namespace) if inspect else None
        return pulumi.Output.all(namespace["ops"], extra).apply(lambda out: resolved.update(ops=out[0]))

    pulumi.runtime.test(program)()
    return registrations, clean(resolved.get("ops"), secrets)


# --------------------------------------------------------------------------------------------
# The chart, with the values the Odoo component passed (rendered by infra.chart)
# --------------------------------------------------------------------------------------------

def _chart_registration(registrations: list[Registration]) -> Registration:
    charts = [r for r in registrations if r.type == "kubernetes:helm.sh/v4:Chart" and "erpops:k8s:Odoo::" in r.parent]
    if len(charts) != 1:
        raise RenderError(f"expected one helm/odoo Chart under the Odoo component, found {len(charts)}")
    return charts[0]


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------

def render(stack: str, root: Path | None = None) -> Rendered:
    """Everything stack `stack` would create. Raises SpecError (exit 2) on a bad spec."""
    root = root or spec.find_root()
    path = spec.stack_file(root, stack)
    raw = spec.read_raw(path)
    sized = spec.validate(raw, stack, str(path), root=root)  # the program runs the same validator: exit 2
    secrets = _Secrets()
    config, secret_keys = mock_config(raw, sized, secrets)
    import pulumi

    try:
        registrations, ops = run_program(root, stack, config, secret_keys, secrets)
    except pulumi.RunError as exc:
        raise ProgramError(str(exc)) from None

    manifests = [_manifest(r.inputs) for r in registrations if _is_manifest(r)]
    chart_reg = _chart_registration(registrations)
    values = chart_reg.inputs.get("values") or {}
    chart_dir = (Path.cwd() / chart_reg.inputs["chart"]).resolve()
    chart_objects = render_chart(chart_dir, values, chart_reg.inputs["name"], chart_reg.inputs["namespace"])
    # registration order depends on which outputs resolve first: sort, so renders diff cleanly
    registrations = sorted(registrations, key=lambda r: (r.type, r.name))
    aws = [{"type": r.type, "name": r.name, "inputs": r.inputs}
           for r in registrations if r.type.startswith(("aws:", "pulumi:providers:aws"))]
    rendered = Rendered(stack, registrations, manifests, chart_objects, values, aws, ops or {})
    _check(rendered)
    return rendered


def _check(rendered: Rendered) -> None:
    """Objects that would fail at apply time fail here: duplicates, and CloudNativePG typos."""
    from infra import crdschema

    seen: dict[tuple[str, str, str], str] = {}
    problems: list[str] = []
    for origin, objects in (("program", rendered.manifests), ("chart", rendered.chart_objects)):
        for obj in objects:
            meta = obj.get("metadata") or {}
            key = (obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))
            if key in seen:
                problems.append(f"{key[0]} {key[1]}/{key[2]} is made by both the {seen[key]} and the {origin}")
            seen[key] = origin
    for obj in rendered.manifests:
        for err in crdschema.validate(obj):
            problems.append(f"{obj['kind']} {obj['metadata']['name']}: {err}")
    if problems:
        raise RenderError("rendered objects would not apply:\n" + "\n".join(f"  - {p}" for p in problems))


def _file_name(obj: dict[str, Any]) -> str:
    return f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


def write(rendered: Rendered, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for sub, objects in (("k8s", rendered.manifests), ("chart", rendered.chart_objects)):
        directory = out / sub
        shutil.rmtree(directory, ignore_errors=True)  # stale objects from an earlier render would mislead
        directory.mkdir()
        for obj in objects:
            path = directory / _file_name(obj)
            # sorted keys: apiVersion, kind, metadata, spec come first anyway, and diffs stay stable
            path.write_text(yaml.safe_dump(obj, sort_keys=True))
            written.append(path)
    files = {
        "aws.yaml": yaml.safe_dump(rendered.aws, sort_keys=True),
        "odoo-values.yaml": yaml.safe_dump(rendered.chart_values, sort_keys=True),
        "resources.json": json.dumps([r.as_dict() for r in rendered.registrations], indent=2),
        "ops.json": json.dumps(rendered.ops, indent=2, sort_keys=True),
    }
    for name, text in files.items():
        (out / name).write_text(text + ("\n" if not text.endswith("\n") else ""))
        written.append(out / name)
    return written


def render_to(stack: str, out: Path, root: Path | None = None) -> list[Path]:
    return write(render(stack, root), out)


def render_all(out: Path, root: Path | None = None, stacks: list[str] | None = None) -> dict[str, Path]:
    """Every stack into <out>/<stack>, each in its own process (Pulumi's mocks run once per process)."""
    root = root or spec.find_root()
    stacks = stacks or spec.list_stacks(root)
    procs = {}
    for stack in stacks:
        cmd = [sys.executable, "-m", "infra.render", "--root", str(root), "--stack", stack,
               "--out", str(out / stack)]
        procs[stack] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    failures = []
    for stack, proc in procs.items():
        _, stderr = proc.communicate()
        if proc.returncode != 0:
            failures.append((stack, proc.returncode, stderr.strip()))
    if failures:
        message = "\n".join(f"{stack}: {err}" for stack, _, err in failures)
        # exit 2 only when every failure is the user's (a spec refused); anything else is ours
        raise (ProgramError if all(rc == 2 for _, rc, _ in failures) else RenderError)(message)
    return {stack: out / stack for stack in stacks}


# --------------------------------------------------------------------------------------------
# `erpops render` (registered in pyproject.toml, entry points erpops.commands)
# --------------------------------------------------------------------------------------------

@click.command("render")
@click.option("--stack", "-s", default=None, help="Stack to render (default: every stack, each into OUT/<stack>).")
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write the rendered objects to (created when missing).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (docs/json-output.md).")
@click.pass_context
@jsonout.json_errors
def render_cmd(ctx: click.Context, stack: str | None, out_dir: Path, as_json: bool) -> None:
    """Write what `pulumi up` would create (Kubernetes objects, chart objects, AWS resources, ops output)."""
    from erpops.cli import _root, out

    root = _root(ctx)
    if stack:
        written = render_to(stack, out_dir, root)
        stacks = [{"stack": stack, "out": str(out_dir), "files": len(written)}]
    else:
        stacks = [{"stack": name, "out": str(directory)} for name, directory in render_all(out_dir, root).items()]
    if as_json:
        click.echo(json.dumps(jsonout.envelope({"stacks": stacks}), indent=2))
        return
    for s in stacks:
        count = f"{s['files']} files in " if "files" in s else ""
        out.print(f"[green]ok[/green] {s['stack']}: {count}{s['out']}")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m infra.render", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--root", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        if not args.stack:
            raise UsageError("--stack is empty: name a stack, e.g. --stack dev")
        written = render_to(args.stack, args.out, args.root)
    except ErpopsError as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    print(f"{args.stack}: {len(written)} files in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
