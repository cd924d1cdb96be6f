"""How `erpops patch` acts on a stack: one driver per kind of install.

A driver knows four things: which image runs now, how to freeze Odoo (cron stopped, web in
maintenance), how to run the module update with a new image, and how to roll web and cron to an
image and bring them back. The patch engine (erpops.patch) owns the order, the backups, the
gate, the rollback and the state; drivers only act. Every action is idempotent: a re-run after
an interruption repeats it safely.

- `kubernetes`: kubectl through the stack's kubeconfig context, on the objects helm/odoo names
  (`deploy/odoo-web`, `deploy/odoo-cron`, the module Job rendered from the chart's own
  templates/job-modules.yaml with the new image). Every command is built as an argv list by a
  pure method, so unit tests check the exact command lines without a cluster.
- `command`: one shell command per step from a YAML/JSON driver file, for VM installs and tests.
  Each command gets ERPOPS_PATCH_* variables (below) plus libpq's PG* in its environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from erpops.errors import OperationFailed, UsageError

# Steps a command driver file may define. `freeze`, `apply` and `roll` are required.
COMMAND_STEPS = ("current_image", "freeze", "apply", "roll", "health", "smoke")
REQUIRED_STEPS = ("freeze", "apply", "roll")
DEFAULT_TIMEOUT = 1800.0
# helm/odoo object names with release `odoo` (erpops.naming.refs_for)
WEB_DEPLOY = "odoo-web"
CRON_DEPLOY = "odoo-cron"
CONTAINER = "odoo"


@dataclass
class PatchContext:
    """What a driver step needs to know about the run."""

    stack: str
    db: str
    to_image: str
    from_image: str | None
    modules: list[str]  # empty: every installed module (`-u all`)
    run_id: str
    pg_env: dict[str, str] = field(default_factory=dict)
    web_replicas: int | None = None  # web replicas before the freeze (kubernetes)
    check: bool = False
    # Called with the process group of a running step command (None when it ended), so the state file
    # names it and a later run can end it when this process was killed.
    on_child: Callable[[int | None], None] | None = None

    @property
    def modules_arg(self) -> str:
        return ",".join(self.modules) if self.modules else "all"


class Driver(Protocol):
    name: str

    def current_image(self, ctx: PatchContext) -> str | None: ...
    def remember(self, ctx: PatchContext) -> None: ...
    def freeze(self, ctx: PatchContext) -> None: ...
    def apply(self, ctx: PatchContext) -> None: ...
    def roll(self, ctx: PatchContext, image: str, *, rollback: bool = False) -> None: ...
    def cancel(self, ctx: PatchContext, state: dict[str, Any]) -> str | None: ...
    def extra_health(self, ctx: PatchContext) -> tuple[bool, str] | None: ...
    def smoke_command(self) -> str | None: ...
    def plan(self, ctx: PatchContext) -> dict[str, list[str]]: ...


def _fail(what: str, proc: subprocess.CompletedProcess[str]) -> OperationFailed:
    tail = (proc.stderr or proc.stdout or "").strip()[-1500:]
    rc = proc.returncode
    how = f"killed by signal {-rc}" if rc < 0 else f"exit {rc}"
    return OperationFailed(f"{what} failed ({how}){': ' + tail if tail else ''}")


def run_shell(command: str, env: dict[str, str], timeout: float | None,
              on_child: Callable[[int | None], None] | None, what: str) -> subprocess.CompletedProcess[str]:
    """A shell command in its own process group: a timeout, an exception (SIGTERM) or a later run
    ends the whole group, not just the shell (a child the shell started would go on alone)."""
    # The commands are the operator's own, from their driver file or flags: a shell is the point.
    proc = subprocess.Popen(command, shell=True, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,  # noqa: S602
                            text=True, start_new_session=True)
    if on_child:
        on_child(proc.pid)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise OperationFailed(f"{what} did not finish within {timeout:g} s") from exc
        raise
    finally:
        if on_child:
            on_child(None)
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


# ------------------------------------------------------------------------------------------------
# command driver
# ------------------------------------------------------------------------------------------------


@dataclass
class CommandDriver:
    """Shell commands from a driver file:

        driver: command
        timeout_seconds: 1800          # per command
        env: {ODOO_CONF: /etc/odoo/odoo.conf}
        steps:
          current_image: cat /srv/odoo/IMAGE          # optional: prints the running image
          freeze: systemctl stop odoo-cron && touch /srv/odoo/MAINTENANCE
          apply: /srv/odoo/bin/update "$ERPOPS_PATCH_IMAGE" "$ERPOPS_PATCH_MODULES" "$ERPOPS_DB"
          roll: /srv/odoo/bin/switch "$ERPOPS_PATCH_IMAGE" && rm -f /srv/odoo/MAINTENANCE && systemctl start odoo-cron
          health: curl -fsS http://127.0.0.1:8069/web/health   # optional, on top of erpops' checks
          smoke: erpops loadtest gate --stack vm-prod --host http://127.0.0.1:8069 --read-only --runs 1  # optional

    Environment of every command: ERPOPS_PATCH_STEP, ERPOPS_PATCH_STACK, ERPOPS_PATCH_RUN_ID,
    ERPOPS_PATCH_IMAGE (the image this step installs: the new one, or the previous one when
    rolling back), ERPOPS_PATCH_FROM_IMAGE, ERPOPS_PATCH_TO_IMAGE, ERPOPS_PATCH_MODULES
    (comma list, or `all`), ERPOPS_PATCH_ROLLBACK (0/1), ERPOPS_DB, and PGHOST/PGPORT/PGUSER.
    """

    steps: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    source: str = "driver file"
    log: Callable[[str], None] = print
    name: str = "command"

    @classmethod
    def from_file(cls, path: Path, log: Callable[[str], None] = print) -> CommandDriver:
        try:
            doc = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise UsageError(f"driver file {path} does not exist: write one (see runbooks/patch.md)") from None
        except yaml.YAMLError as exc:
            raise UsageError(f"driver file {path} is not valid YAML/JSON ({exc}): fix the syntax") from None
        return cls.from_dict(doc, str(path), log)

    @classmethod
    def from_dict(cls, doc: Any, source: str = "driver file", log: Callable[[str], None] = print) -> CommandDriver:
        problems: list[str] = []
        if not isinstance(doc, dict):
            raise UsageError(f"{source}: expected a mapping with `steps:`")
        if doc.get("driver", "command") != "command":
            problems.append(f"driver: {doc.get('driver')!r} is not `command`")
        steps = doc.get("steps")
        if not isinstance(steps, dict):
            raise UsageError(f"{source}: `steps:` must map step names ({', '.join(COMMAND_STEPS)}) to shell commands")
        unknown = sorted(set(steps) - set(COMMAND_STEPS))
        if unknown:
            problems.append(f"unknown step(s) {', '.join(unknown)}: use {', '.join(COMMAND_STEPS)}")
        missing = [s for s in REQUIRED_STEPS if not isinstance(steps.get(s), str) or not steps[s].strip()]
        if missing:
            problems.append(f"missing step(s) {', '.join(missing)}: each needs a shell command")
        env = doc.get("env") or {}
        if not isinstance(env, dict):
            problems.append("env: must be a mapping of variable names to values")
        if problems:
            raise UsageError(f"{source}: " + "; ".join(problems))
        return cls(steps={k: str(v) for k, v in steps.items() if v}, env={str(k): str(v) for k, v in env.items()},
                   timeout=float(doc.get("timeout_seconds", DEFAULT_TIMEOUT)), source=source, log=log)

    def environment(self, ctx: PatchContext, step: str, image: str, rollback: bool = False) -> dict[str, str]:
        env = {**os.environ, **ctx.pg_env, **self.env}
        env.update(
            ERPOPS_PATCH_STEP=step, ERPOPS_PATCH_STACK=ctx.stack, ERPOPS_PATCH_RUN_ID=ctx.run_id,
            ERPOPS_PATCH_IMAGE=image, ERPOPS_PATCH_FROM_IMAGE=ctx.from_image or "", ERPOPS_PATCH_TO_IMAGE=ctx.to_image,
            ERPOPS_PATCH_MODULES=ctx.modules_arg, ERPOPS_PATCH_ROLLBACK="1" if rollback else "0", ERPOPS_DB=ctx.db,
        )
        return env

    def _run(self, ctx: PatchContext, step: str, image: str | None = None, rollback: bool = False,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        command = self.steps[step]
        env = self.environment(ctx, step, image or ctx.to_image, rollback)
        self.log(f"  $ {command}")
        proc = run_shell(command, env, self.timeout, ctx.on_child, f"step {step} ({command})")
        if check and proc.returncode != 0:
            raise _fail(f"step {step} ({command})", proc)
        return proc

    def current_image(self, ctx: PatchContext) -> str | None:
        if "current_image" not in self.steps:
            return None
        out = self._run(ctx, "current_image").stdout.strip()
        return out.splitlines()[-1].strip() if out else None

    def remember(self, ctx: PatchContext) -> None:
        """Nothing to read beyond the image: the roll command brings the VM back as it was."""

    def freeze(self, ctx: PatchContext) -> None:
        self._run(ctx, "freeze")

    def apply(self, ctx: PatchContext) -> None:
        self._run(ctx, "apply")

    def roll(self, ctx: PatchContext, image: str, *, rollback: bool = False) -> None:
        self._run(ctx, "roll", image, rollback)

    def cancel(self, ctx: PatchContext, state: dict[str, Any]) -> str | None:
        """End the step command a killed run left behind (its process group, from the state file)."""
        pgid = state.get("child_pgid")
        if not pgid:
            return None
        try:
            os.killpg(int(pgid), signal.SIGKILL)
        except ProcessLookupError:
            return None
        return f"ended the orphaned step command (process group {pgid})"

    def extra_health(self, ctx: PatchContext) -> tuple[bool, str] | None:
        if "health" not in self.steps:
            return None
        proc = self._run(ctx, "health", check=False)
        text = (proc.stdout or proc.stderr or "").strip().splitlines()
        return proc.returncode == 0, f"health command exit {proc.returncode}{': ' + text[-1] if text else ''}"

    def smoke_command(self) -> str | None:
        return self.steps.get("smoke")

    def plan(self, ctx: PatchContext) -> dict[str, list[str]]:
        return {step: [cmd] for step, cmd in self.steps.items()}


# ------------------------------------------------------------------------------------------------
# kubernetes driver
# ------------------------------------------------------------------------------------------------

Runner = Callable[[list[str], str | None], subprocess.CompletedProcess[str]]


def run_argv(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False, timeout=3600)


@dataclass
class KubernetesDriver:
    """kubectl against helm/odoo's objects in the stack's namespace, through the stack's context.

    Freeze: `scale deploy/odoo-cron --replicas=0`, then web either scaled to 0 (web_mode "scale")
    or put in maintenance by the operator's `maintenance_cmd` (web_mode "command"); both wait
    until the pods are gone. Apply: the chart's module Job, rendered from the stack's spec with
    the new image, renamed `odoo-patch-<run id>` and running `--update=<modules>` only, applied
    and followed until Complete or Failed. Roll: `set image` on both Deployments, scale back
    (web to the replicas it had, cron to 1) and `rollout status` on each.
    """

    context: str
    namespace: str
    job_manifest: dict[str, Any] | None = None  # the chart's module Job (rendered), or None: render later
    web_mode: str = "scale"  # scale | command
    maintenance_cmd: str | None = None
    unmaintenance_cmd: str | None = None
    kubectl: str = "kubectl"
    timeout_seconds: int = 1800
    poll_seconds: float = 5.0
    selector_instance: str = "odoo"
    runner: Runner = run_argv
    log: Callable[[str], None] = print
    smoke: str | None = None
    name: str = "kubernetes"

    # -- pure command builders (unit-tested) ------------------------------------------------------

    def kc(self, *args: str) -> list[str]:
        return [self.kubectl, "--context", self.context, "-n", self.namespace, *args]

    def cmd_get_image(self, deploy: str = WEB_DEPLOY) -> list[str]:
        return self.kc("get", f"deploy/{deploy}", "-o",
                       f"jsonpath={{.spec.template.spec.containers[?(@.name==\"{CONTAINER}\")].image}}")

    def cmd_get_replicas(self, deploy: str = WEB_DEPLOY) -> list[str]:
        return self.kc("get", f"deploy/{deploy}", "-o", "jsonpath={.spec.replicas}")

    def cmd_scale(self, deploy: str, replicas: int) -> list[str]:
        return self.kc("scale", f"deploy/{deploy}", f"--replicas={replicas}")

    def cmd_wait_gone(self, component: str) -> list[str]:
        return self.kc("wait", "--for=delete", "pod", "-l",
                       f"app.kubernetes.io/instance={self.selector_instance},app.kubernetes.io/component={component}",
                       f"--timeout={self.timeout_seconds}s")

    def cmd_set_image(self, deploy: str, image: str) -> list[str]:
        return self.kc("set", "image", f"deploy/{deploy}", f"{CONTAINER}={image}")

    def cmd_rollout_status(self, deploy: str) -> list[str]:
        return self.kc("rollout", "status", f"deploy/{deploy}", f"--timeout={self.timeout_seconds}s")

    def cmd_apply_stdin(self) -> list[str]:
        return self.kc("apply", "-f", "-")

    def cmd_job_status(self, job: str) -> list[str]:
        return self.kc("get", f"job/{job}", "-o", "jsonpath={.status.succeeded}/{.status.failed}")

    def cmd_delete_job(self, job: str) -> list[str]:
        return self.kc("delete", f"job/{job}", "--ignore-not-found", "--cascade=foreground", "--wait=true")

    def cmd_job_logs(self, job: str) -> list[str]:
        return self.kc("logs", f"job/{job}", "--all-containers", "--tail=50")

    def job_name(self, ctx: PatchContext) -> str:
        return f"odoo-patch-{ctx.run_id}"[:63].rstrip("-")

    def patch_job(self, ctx: PatchContext) -> dict[str, Any]:
        """The chart's module Job, made the patch's: new image, `--update=<modules>` only, own name."""
        if self.job_manifest is None:
            raise UsageError("no module Job manifest: the kubernetes driver renders it from the stack's spec "
                             "(Pulumi.<stack>.yaml), or pass --module-job FILE (the chart's rendered Job)")
        job = json.loads(json.dumps(self.job_manifest))
        name = self.job_name(ctx)
        job["metadata"]["name"] = name
        job["metadata"].pop("annotations", None)
        job["metadata"].setdefault("labels", {})["erpops.io/patch-run"] = ctx.run_id
        spec = job["spec"]["template"]["spec"]
        for container in (*spec.get("initContainers", []), *spec["containers"]):
            container["image"] = ctx.to_image
        main = next(c for c in spec["containers"] if c["name"] == CONTAINER)
        args = [a for a in main.get("args", []) if not a.startswith(("--init=", "--update=", "--without-demo="))]
        main["args"] = [*args, f"--update={ctx.modules_arg}"]
        return job

    # -- actions ------------------------------------------------------------------------------------

    def _run(self, argv: list[str], stdin: str | None = None, what: str | None = None) -> str:
        self.log("  $ " + shlex.join(argv))
        proc = self.runner(argv, stdin)
        if proc.returncode != 0:
            # `wait --for=delete` on a selector that matches nothing (already scaled to 0, a re-run) is done
            if "--for=delete" in argv and "no matching resources found" in (proc.stderr or "").lower():
                return ""
            raise _fail(what or shlex.join(argv), proc)
        return proc.stdout.strip()

    def current_image(self, ctx: PatchContext) -> str | None:
        return self._run(self.cmd_get_image()) or None

    def remember(self, ctx: PatchContext) -> None:
        if ctx.web_replicas is None:
            out = self._run(self.cmd_get_replicas())
            ctx.web_replicas = int(out) if out.isdigit() else 1

    def freeze(self, ctx: PatchContext) -> None:
        self._run(self.cmd_scale(CRON_DEPLOY, 0))
        self._run(self.cmd_wait_gone("cron"))
        if self.web_mode == "command":
            if not self.maintenance_cmd:
                raise UsageError("web mode `command` needs --maintenance-cmd (puts web in maintenance)")
            self._shell(self.maintenance_cmd, ctx)
        else:
            self._run(self.cmd_scale(WEB_DEPLOY, 0))
            self._run(self.cmd_wait_gone("web"))

    def _shell(self, command: str, ctx: PatchContext) -> None:
        self.log(f"  $ {command}")
        env = {**os.environ, "ERPOPS_PATCH_STACK": ctx.stack, "ERPOPS_DB": ctx.db,
               "ERPOPS_KUBE_CONTEXT": self.context, "ERPOPS_NAMESPACE": self.namespace}
        proc = run_shell(command, env, self.timeout_seconds, ctx.on_child, command)
        if proc.returncode != 0:
            raise _fail(command, proc)

    def apply(self, ctx: PatchContext) -> None:
        job = self.patch_job(ctx)
        name = job["metadata"]["name"]
        self._run(self.cmd_apply_stdin(), json.dumps(job))
        deadline = time.monotonic() + self.timeout_seconds
        while True:
            succeeded, _, failed = self._run(self.cmd_job_status(name)).partition("/")
            if succeeded.strip() not in ("", "0"):
                return
            if failed.strip() not in ("", "0"):
                proc = self.runner(self.cmd_job_logs(name), None)
                logs = proc.stdout.strip()[-2000:]
                raise OperationFailed(f"module update Job {name} failed; last log lines:\n{logs}")
            if time.monotonic() > deadline:
                raise OperationFailed(f"module update Job {name} did not finish within {self.timeout_seconds} s")
            time.sleep(self.poll_seconds)

    def roll(self, ctx: PatchContext, image: str, *, rollback: bool = False) -> None:
        for deploy in (WEB_DEPLOY, CRON_DEPLOY):
            self._run(self.cmd_set_image(deploy, image))
        if self.web_mode == "command":
            if self.unmaintenance_cmd:
                self._shell(self.unmaintenance_cmd, ctx)
        else:
            self._run(self.cmd_scale(WEB_DEPLOY, ctx.web_replicas or 1))
        self._run(self.cmd_scale(CRON_DEPLOY, 1))
        for deploy in (WEB_DEPLOY, CRON_DEPLOY):
            self._run(self.cmd_rollout_status(deploy))

    def cancel(self, ctx: PatchContext, state: dict[str, Any]) -> str | None:
        """A killed run's module Job goes on in the cluster: delete it (and its pod) before a rollback."""
        name = self.job_name(ctx)
        self._run(self.cmd_delete_job(name))
        return f"deleted the module Job {name} if it was still there"

    def extra_health(self, ctx: PatchContext) -> tuple[bool, str] | None:
        return None

    def smoke_command(self) -> str | None:
        return self.smoke

    def plan(self, ctx: PatchContext) -> dict[str, list[str]]:
        freeze = [shlex.join(self.cmd_scale(CRON_DEPLOY, 0)), shlex.join(self.cmd_wait_gone("cron"))]
        if self.web_mode == "command":
            freeze.append(self.maintenance_cmd or "(--maintenance-cmd missing)")
        else:
            freeze += [shlex.join(self.cmd_scale(WEB_DEPLOY, 0)), shlex.join(self.cmd_wait_gone("web"))]
        name = self.job_name(ctx)
        roll = [shlex.join(self.cmd_set_image(d, ctx.to_image)) for d in (WEB_DEPLOY, CRON_DEPLOY)]
        if self.web_mode == "command":
            roll.append(self.unmaintenance_cmd or "(no --unmaintenance-cmd)")
        else:
            roll.append(shlex.join(self.cmd_scale(WEB_DEPLOY, ctx.web_replicas or 1)))
        roll += [shlex.join(self.cmd_scale(CRON_DEPLOY, 1))]
        roll += [shlex.join(self.cmd_rollout_status(d)) for d in (WEB_DEPLOY, CRON_DEPLOY)]
        return {
            "current_image": [shlex.join(self.cmd_get_image())],
            "freeze": freeze,
            "apply": [shlex.join(self.cmd_apply_stdin())
                      + f"   # Job {name}: {ctx.to_image} --update={ctx.modules_arg}",
                      shlex.join(self.cmd_job_status(name)) + "   # polled until Complete or Failed"],
            "roll": roll,
        }


def load_job_file(path: Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict) and d.get("kind") == "Job"]
    if len(docs) != 1:
        raise UsageError(f"{path} holds {len(docs)} Job objects: give a file with exactly the module Job")
    return docs[0]

