"""`erpops patch`: move one stack's Odoo to a new image (tag or digest) and update modules, as one governed change.

Steps, each timed and recorded in the state file before the next one starts:

1. preflight  health checks pass; a verified backup set younger than backup.max_age_for_patch_hours
              exists (or one is taken and verified now); prod needs --approved-by and a --window
              that holds now. Refusal: PreflightError (exit 6), nothing changed.
2. freeze     cron stopped, web in maintenance (driver).
3. backup     the pre-patch set, taken after the freeze and verified. The engine has no tags: the
              set id is recorded as `pre_patch_set` in the state file and the audit line.
4. apply      the module update with the new image (`-u <modules>` or `-u all`).
5. roll       web and cron rolled to the new image and brought back.
6. gate       health checks again, plus a short load-test smoke (a configurable command).

Any failure after the pre-patch backup (steps 4-6) rolls back by itself: freeze again, restore
the pre-patch set into the database (restore into a new database, then swap: `--replace`),
roll web and cron to the previous image, health checks, a report (OperationFailed, exit 4).
A failure in steps 2-3 undoes the freeze (exit 4): the database was not touched. A rollback
that fails itself exits 1 with what is left to do by hand.

State: `<state dir>/patch-<stack>.json` (default `.erpops/` under the project root), written
atomically (temp file, fsync, rename) after every step, and guarded by a lock file so two runs
on a stack never overlap. The resume rule, applied when a run finds the state of an unfinished
one (killed, machine lost):

- interrupted before the pre-patch backup completed: the freeze is undone (previous image
  rolled out again); the database was never touched.
- interrupted after the pre-patch backup and before the gate passed, or during a rollback:
  the interrupted run is rolled back in full (restore of its pre-patch set, previous image).
  A module update is not idempotent once half-applied, so it is never resumed in place.
- interrupted after the gate passed: the patch is in; the run is only finalized (state done,
  audit line).

Then the new run starts from step 1 (the re-run re-applies), unless `--abort` was given (roll
back only) or the interrupted run had already completed this same patch. Every run, including
an interrupted one finished by a later run, appends one JSON line to `<state dir>/patch-audit.jsonl`
and writes it as `<target>/audit/patch-<run start>.jsonl` in the backup bucket.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import re
import secrets
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from erpops import plugins
from erpops.backup.leftovers import Terminated
from erpops.errors import ErpopsError, OperationFailed, PreflightError, SpecError, UsageError
from erpops.jsonout import envelope, error
from erpops.naming import stack_backup_target
from erpops.options import backup_target_options
from erpops.patch_drivers import CommandDriver, Driver, KubernetesDriver, PatchContext, run_shell
from erpops.plugins import HealthProbe, HealthRequest
from erpops.spec_types import image_pin

STATE_FORMAT = 1
SMOKE_TIMEOUT = 900.0  # seconds, when the driver names no timeout
ACTIVE = ("running", "rolling_back")
MODULE_RE = re.compile(r"^[a-z0-9_]+$")
WINDOW_RE = re.compile(r"^\s*(?P<start>[^/\s]+)\s*/\s*(?P<end>[^/\s]+)\s*$")


class RollbackFailed(ErpopsError):
    """The automatic rollback failed itself: the stack needs a person (exit 1, the message says what)."""

    exit_code = 1


class PatchInterrupted(Terminated):
    """SIGTERM/SIGINT during a patch: treated as a failure of the running step. A BaseException, never an
    Exception: libraries catch Exception where a signal may land (botocore turns one raised inside an HTTP send
    into a retried HTTPClientError), and a signal swallowed there let the patch run on as if none came."""

    exit_code = 130


# ------------------------------------------------------------------------------------------------
# Small pure helpers
# ------------------------------------------------------------------------------------------------


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def compact(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _parse_instant(text: str) -> datetime:
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{text!r} is not a UTC time: write it like 2026-11-29T22:00Z") from None
    if when.tzinfo is None:
        raise UsageError(f"{text!r} has no time zone: end it with Z (UTC), e.g. 2026-11-29T22:00Z")
    return when.astimezone(UTC)


def parse_window(text: str) -> tuple[datetime, datetime]:
    """`2026-11-29T22:00Z/2026-11-30T02:00Z` -> (start, end), UTC; the end must follow the start."""
    m = WINDOW_RE.match(text or "")
    if not m:
        raise UsageError(f"--window {text!r}: write it as START/END in UTC, e.g. 2026-11-29T22:00Z/2026-11-30T02:00Z")
    start, end = _parse_instant(m["start"]), _parse_instant(m["end"])
    if end <= start:
        raise UsageError(f"--window {text!r}: the end is not after the start")
    return start, end


def parse_modules(text: str | None) -> list[str]:
    """`mrp,stock` -> ['mrp', 'stock']; empty or `all` -> [] (every installed module, `-u all`)."""
    names = [m.strip() for m in (text or "").split(",") if m.strip()]
    if names in ([], ["all"]):
        return []
    bad = [m for m in names if not MODULE_RE.match(m)]
    if bad:
        raise UsageError(f"--modules: {', '.join(bad)} not module names (lowercase letters, digits, _)")
    return sorted(set(names), key=names.index)


def check_image(image: str) -> str:
    if image_pin(image) not in ("digest", "tag"):
        raise UsageError(f"--image {image!r}: give a pinned image, odoo:17.0-20261120 or odoo@sha256:<64 hex>")
    return image


def odoo_major(image: str) -> str | None:
    tag = re.search(r":(\d+\.\d)(?:[-.]|$)", image.split("@")[0].rsplit("/", 1)[-1])
    return tag.group(1) if tag else None


def approval_problems(tier: str, approved_by: str | None, window: tuple[datetime, datetime] | None,
                      now: datetime) -> list[str]:
    """Governance: prod needs a named approver and a change window holding now; a window given
    for any tier must hold now."""
    problems = []
    if tier == "prod" and not (approved_by or "").strip():
        problems.append("prod needs an approver: pass --approved-by <name of who approved the change>")
    if tier == "prod" and window is None:
        problems.append("prod needs a change window: pass --window 2026-11-29T22:00Z/2026-11-30T02:00Z")
    if window is not None and not window[0] <= now < window[1]:
        problems.append(f"now ({iso(now)}) is outside the change window {iso(window[0])}/{iso(window[1])}: "
                        "wait for it, or get a new window approved")
    return problems


def fresh_verified_set(sets: list[dict[str, Any]], max_age_hours: float) -> dict[str, Any] | None:
    """The newest set that verified ok and is younger than the limit (list_sets entries, newest first)."""
    for s in sets:
        if "error" in s:
            continue
        if s.get("verified") is True and float(s.get("age_hours", 1e9)) < max_age_hours:
            return s
    return None


def recovery_action(state: dict[str, Any] | None) -> str | None:
    """What a new run does with the state of a previous one (the resume rule, see the module doc).

    None: nothing to recover; "unfreeze": undo the freeze; "rollback": roll the interrupted run
    back; "finalize": the patch passed its gate, only record it.
    """
    if not state or state.get("status") not in ACTIVE:
        return None
    if state["status"] == "rolling_back":
        return "rollback"
    done = {s["name"] for s in state.get("steps", []) if s.get("status") == "ok"}
    if "gate" in done:
        return "finalize"
    if state.get("pre_patch_set"):
        return "rollback"
    started = {s["name"] for s in state.get("steps", [])}
    return "unfreeze" if "freeze" in started else "abandon"


def resolve_command(state: dict[str, Any]) -> str:
    """The command that finishes (rolls back, unfreezes or finalizes) an interrupted run."""
    return shlex.join(["erpops", "patch", "--stack", str(state.get("stack")), "--image", str(state.get("to_image")),
                       "--abort"])


def _lock_is_free(lock_path: Path) -> bool:
    """True when no process holds the stack's patch lock (the kernel drops it when its holder dies)."""
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops the probe's own lock
    return True


def stuck_runs(state_dir: Path, stack: str | None = None) -> list[dict[str, Any]]:
    """Unfinished patch runs whose process is gone (state running/rolling_back, lock free).

    Each: stack, run_id, status, last step, what recovery does, and the command that resolves it.
    The freeze (maintenance mode, cron stopped) stays until that command (or a new patch run) runs.
    """
    stuck = []
    for path in sorted(state_dir.glob(f"patch-{stack or '*'}.json")):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(state, dict) or state.get("status") not in ACTIVE:
            continue
        name = path.stem[len("patch-"):]
        if not _lock_is_free(path.with_name(f"patch-{name}.lock")):
            continue  # a live run holds it: in progress, not stuck
        steps = state.get("steps") or []
        last = steps[-1] if steps else {}
        frozen = any(s.get("name") == "freeze" for s in steps) and recovery_action(state) != "finalize"
        stuck.append({
            "stack": state.get("stack", name), "run_id": state.get("run_id"), "status": state.get("status"),
            "started_at": state.get("started_at"), "to_image": state.get("to_image"),
            "last_step": f"{last.get('name')}: {last.get('status')}" if last else None,
            "frozen": frozen, "would": recovery_action(state), "state_file": str(path),
            "resolve": resolve_command(state),
        })
    return stuck


def stuck_message(run: dict[str, Any]) -> str:
    frozen = "; Odoo is still in maintenance with cron stopped" if run["frozen"] else ""
    return (f"patch run {run['run_id']} of stack {run['stack']} is stuck: its process died with the state "
            f"'{run['status']}' (last step {run['last_step']}){frozen}. Resolve with `{run['resolve']}` "
            f"(it will {run['would']}), or start the patch again, which does that first")


# ------------------------------------------------------------------------------------------------
# State file
# ------------------------------------------------------------------------------------------------


class StateStore:
    """`patch-<stack>.json` written atomically, and an exclusive lock while a run is active."""

    def __init__(self, directory: Path, stack: str) -> None:
        self.dir = directory
        self.path = directory / f"patch-{stack}.json"
        self.lock_path = directory / f"patch-{stack}.lock"
        self.audit_path = directory / "patch-audit.jsonl"
        self._lock_fd: int | None = None

    def load(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise UsageError(f"{self.path} is not valid JSON ({exc}): it is written atomically, so something else "
                             "changed it; look at it, then move it away") from None
        return data if isinstance(data, dict) else None

    def save(self, state: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as fh:
            json.dump(state, fh, indent=1, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Only one patch run per stack; the kernel drops the lock when a killed run's process dies."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise PreflightError([f"another erpops patch holds {self.lock_path}: wait for it to end"],
                                 "patch") from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def append_audit(self, line: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.audit_path, "a") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------


@dataclass
class PatchOptions:
    stack: str
    to_image: str
    modules: list[str]
    db: str
    tier: str
    target: Any  # erpops.backup.storage.Target
    pg: Any  # erpops.pg.Pg
    driver: Driver
    state_dir: Path
    from_image: str | None = None
    approved_by: str | None = None
    window: tuple[datetime, datetime] | None = None
    window_text: str | None = None
    who: str = ""
    max_backup_age_hours: float = 24.0
    filestore: Path | None = None
    health_checks: list[str] = field(default_factory=list)  # name prefixes; empty: all that apply
    odoo_url: str | None = None
    sized: Any = None  # erpops.spec.Sized: the health checks' thresholds (defaults when None)
    health_probe: HealthProbe | None = None  # default: the installed provider (erpops.plugins)
    smoke_cmd: str | None = None
    no_smoke: bool = False
    check: bool = False
    abort: bool = False
    now: Callable[[], datetime] = utc_now
    log: Callable[[str], None] = lambda m: click.echo(m, err=True)


class Patch:
    def __init__(self, opts: PatchOptions) -> None:
        self.o = opts
        self.store = StateStore(opts.state_dir, opts.stack)
        self.log = opts.log
        self._rolling_back = False

    # -- state -----------------------------------------------------------------------------------

    def _new_state(self) -> dict[str, Any]:
        started = self.o.now()
        return {
            "format": STATE_FORMAT, "run_id": f"{compact(started).lower()}-{secrets.token_hex(3)}",
            "stack": self.o.stack, "tier": self.o.tier, "db": self.o.db, "driver": self.o.driver.name,
            "target": self.o.target.url, "who": self.o.who, "approved_by": self.o.approved_by,
            "window": self.o.window_text, "from_image": self.o.from_image, "to_image": self.o.to_image,
            "modules": self.o.modules, "started_at": iso(started), "status": "running", "steps": [],
            "rollback_steps": [], "pre_patch_set": None, "preflight_set": None, "web_replicas": None,
            "error": None, "pid": os.getpid(), "child_pgid": None,
        }

    def _ctx(self, state: dict[str, Any]) -> PatchContext:
        def on_child(pgid: int | None) -> None:
            if "status" in state:  # a real run's state, not a probe
                state["child_pgid"] = pgid
                self.store.save(state)

        return PatchContext(stack=state["stack"], db=state["db"], to_image=state["to_image"],
                            from_image=state.get("from_image"), modules=list(state.get("modules") or []),
                            run_id=state["run_id"], pg_env=self._pg_env(), web_replicas=state.get("web_replicas"),
                            check=self.o.check, on_child=on_child)

    def _pg_env(self) -> dict[str, str]:
        pg = self.o.pg
        env = {"PGHOST": pg.host, "PGPORT": str(pg.port), "PGUSER": pg.user}
        if pg.password:
            env["PGPASSWORD"] = pg.password
        return env

    @contextlib.contextmanager
    def _step(self, state: dict[str, Any], name: str, key: str = "steps") -> Iterator[dict[str, Any]]:
        record: dict[str, Any] = {"name": name, "status": "running", "started_at": iso(self.o.now()),
                                  "seconds": None, "detail": None}
        state[key].append(record)
        self.store.save(state)
        self.log(f"[{name}] ...")
        t0 = time.monotonic()
        try:
            yield record
        except BaseException as exc:
            record.update(status="failed", seconds=round(time.monotonic() - t0, 3), detail=str(exc)[:2000])
            self.store.save(state)
            self.log(f"[{name}] FAILED: {exc}")
            raise
        record.update(status="ok", seconds=round(time.monotonic() - t0, 3))
        self.store.save(state)
        self.log(f"[{name}] ok ({record['seconds']:.1f} s){': ' + str(record['detail']) if record['detail'] else ''}")

    # -- checks ------------------------------------------------------------------------------------

    def health(self) -> tuple[bool, list[str]]:
        """(ok, one line per check): OK and WARN pass; CRIT and UNKNOWN fail."""
        prefixes = self.o.health_checks
        request = HealthRequest(pg=self.o.pg, pg_db=self.o.db, odoo_url=self.o.odoo_url,
                                odoo_db=self.o.db if self.o.odoo_url else None, sized=self.o.sized,
                                selected=lambda name: not prefixes or any(name.startswith(p) for p in prefixes))
        lines: list[str] = []
        ok = True
        for finding in (self.o.health_probe or plugins.health_probe())(request):
            ok = ok and finding.passed
            lines.append(f"{finding.check} {finding.state}: {finding.message}")
        extra = self.o.driver.extra_health(self._ctx({**self._state_stub(), "run_id": "health"}))
        if extra is not None:
            ok = ok and extra[0]
            lines.append(extra[1])
        if not lines:
            lines.append("no health check selected")
        return ok, lines

    def _state_stub(self) -> dict[str, Any]:
        return {"stack": self.o.stack, "db": self.o.db, "to_image": self.o.to_image, "from_image": self.o.from_image,
                "modules": self.o.modules, "web_replicas": None}

    def _smoke(self, state: dict[str, Any]) -> str:
        command = self.o.smoke_cmd or self.o.driver.smoke_command() or self._default_smoke()
        if self.o.no_smoke or not command:
            self.log("WARNING: no load-test smoke in the gate (--no-smoke, or no odoo URL): health checks only")
            return "skipped"
        ctx = self._ctx(state)
        # The driver file's env: and its per-command timeout apply to the smoke as to every step.
        driver_env = getattr(self.o.driver, "env", None)
        env = {**os.environ, **ctx.pg_env, **(driver_env if isinstance(driver_env, dict) else {}),
               "ERPOPS_PATCH_STACK": ctx.stack, "ERPOPS_PATCH_RUN_ID": ctx.run_id,
               "ERPOPS_PATCH_IMAGE": ctx.to_image, "ERPOPS_PATCH_TO_IMAGE": ctx.to_image,
               "ERPOPS_PATCH_FROM_IMAGE": ctx.from_image or "", "ERPOPS_PATCH_MODULES": ctx.modules_arg,
               "ERPOPS_DB": ctx.db, "ERPOPS_PATCH_STEP": "smoke", "ERPOPS_PATCH_ROLLBACK": "0"}
        timeout = float(getattr(self.o.driver, "timeout", None) or getattr(self.o.driver, "timeout_seconds", None)
                        or SMOKE_TIMEOUT)
        self.log(f"  $ {command} (timeout {timeout:g} s)")
        proc = run_shell(command, env, timeout, ctx.on_child, "load-test smoke")
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip()[-1500:]
            raise OperationFailed(f"load-test smoke failed (exit {proc.returncode}): {tail or 'no output'}")
        return f"smoke passed: {command}"

    def _default_smoke(self) -> str | None:
        if not self.o.odoo_url:
            return None
        beside = Path(sys.executable).with_name("erpops")
        erpops = str(beside) if beside.exists() else "erpops"
        return shlex.join([erpops, "loadtest", "gate", "--stack", self.o.stack, "--host", self.o.odoo_url,
                           "--db", self.o.db, "--read-only", "--runs", "1", "--duration", "20s"])

    def preflight_problems(self) -> tuple[list[str], list[str], dict[str, Any] | None]:
        """(problems, notes, fresh verified set or None): read-only."""
        from erpops.backup import engine

        problems = approval_problems(self.o.tier, self.o.approved_by, self.o.window, self.o.now())
        notes: list[str] = []
        if self.o.from_image is None:
            problems.append("the running image is unknown (the driver cannot read it): pass --from-image <image>, "
                            "needed to roll back")
        elif self.o.from_image == self.o.to_image and not self.o.modules:
            notes.append(f"{self.o.to_image} already runs: this run updates every module (-u all) on it")
        src, dst = odoo_major(self.o.from_image or ""), odoo_major(self.o.to_image)
        if src and dst and src != dst:
            problems.append(f"{self.o.from_image} -> {self.o.to_image} changes the Odoo major ({src} -> {dst}): that "
                            "is a migration (OpenUpgrade), not a patch")
        ok, lines = self.health()
        notes += [f"health: {line}" for line in lines]
        if not ok:
            problems.append("health checks fail before the patch: " + "; ".join(lines))
        fresh = fresh_verified_set(engine.list_sets(self.o.target, db=self.o.db), self.o.max_backup_age_hours)
        if fresh:
            notes.append(f"backup: {fresh['set_id']} verified, {fresh['age_hours']:.1f} h old "
                         f"(limit {self.o.max_backup_age_hours:g} h)")
        else:
            notes.append(f"backup: no verified set younger than {self.o.max_backup_age_hours:g} h: one is taken now")
        return problems, notes, fresh

    # -- backups -----------------------------------------------------------------------------------

    def _backup(self, label: str) -> str:
        from erpops.backup import engine
        from erpops.backup.progress import Reporter

        result = engine.backup(self.o.target, self.o.pg, self.o.db, stack=self.o.stack,
                               filestore=str(self.o.filestore) if self.o.filestore else None, reporter=Reporter())
        set_id = str(result["set_id"])
        report = engine.verify(self.o.target, set_id, reporter=Reporter())
        if not report["ok"]:
            raise OperationFailed(f"{label} backup {set_id} failed verification: {'; '.join(report['problems'])}")
        return set_id

    def _restore(self, set_id: str, db: str) -> dict[str, Any]:
        from erpops.backup.progress import Reporter
        from erpops.backup.restore import restore

        return restore(self.o.target, set_id, pg=self.o.pg, db=db, filestore_root=self.o.filestore,
                       skip_filestore=self.o.filestore is None, replace=True, confirm=None, neutralize=False,
                       reporter=Reporter())

    # -- audit -------------------------------------------------------------------------------------

    def audit(self, state: dict[str, Any], result: str) -> dict[str, Any]:
        ended = self.o.now()
        started = datetime.strptime(state["started_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        entry = {
            "ts": iso(ended), "run_id": state["run_id"], "stack": state["stack"], "tier": state["tier"],
            "db": state["db"], "driver": state["driver"], "who": state["who"], "approved_by": state["approved_by"],
            "window": state["window"], "from_image": state["from_image"], "to_image": state["to_image"],
            "modules": state["modules"] or ["all"], "started_at": state["started_at"], "ended_at": iso(ended),
            "duration_seconds": round((ended - started).total_seconds(), 3), "result": result,
            "pre_patch_set": state.get("pre_patch_set"), "preflight_set": state.get("preflight_set"),
            "steps": [{k: s[k] for k in ("name", "status", "started_at", "seconds")} for s in state["steps"]],
            "rollback_steps": [{k: s[k] for k in ("name", "status", "started_at", "seconds")}
                               for s in state.get("rollback_steps", [])],
            "error": state.get("error"), "recovered_by": state.get("recovered_by"),
        }
        line = json.dumps(entry, sort_keys=False, default=str)
        self.store.append_audit(line)
        key = f"audit/patch-{compact(started)}.jsonl"
        try:
            self.o.target.put_bytes(key, (line + "\n").encode())
            entry["audit_object"] = self.o.target.child(key)
        except ErpopsError as exc:
            self.log(f"WARNING: audit line not written to {self.o.target.child(key)} ({exc}); it is in "
                     f"{self.store.audit_path}")
        return entry

    # -- flow ----------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        if self.o.check:
            return self.plan()
        with self.store.locked(), self._signals():
            prior = self.store.load()
            recovered = None
            action = recovery_action(prior)
            if prior is not None and action is not None:
                recovered = self._recover(prior, action)
                if self.o.abort:
                    return {"ok": True, "recovered": recovered, "result": "aborted"}
                if (action == "finalize" and prior["to_image"] == self.o.to_image
                        and prior["modules"] == self.o.modules):
                    return {"ok": True, "recovered": recovered, "result": "done", "run_id": prior["run_id"]}
                if action == "finalize" and self.o.from_image in (None, prior["from_image"]):
                    self.o.from_image = prior["to_image"]
            elif self.o.abort:
                return {"ok": True, "recovered": None, "result": "nothing to abort"}
            result = self._run_new()
            if recovered is not None:
                result["recovered"] = recovered
            return result

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        def handler(signum: int, _frame: Any) -> None:
            if self._rolling_back:
                self.log(f"WARNING: signal {signum} ignored: a rollback is running (a SIGKILL leaves it to the next "
                         "run, which finishes it)")
                return
            raise PatchInterrupted(f"interrupted by signal {signum}")

        previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _run_new(self) -> dict[str, Any]:
        if self.o.from_image is None:
            with contextlib.suppress(ErpopsError):
                self.o.from_image = self.o.driver.current_image(self._ctx({**self._state_stub(), "run_id": "probe"}))
        state = self._new_state()
        self.log(f"erpops patch {state['stack']} ({state['tier']}): {state['from_image']} -> {state['to_image']}, "
                 f"modules {','.join(state['modules']) or 'all'}, driver {state['driver']}, run {state['run_id']}")
        # 1. pre-flight
        try:
            with self._step(state, "preflight") as rec:
                problems, notes, fresh = self.preflight_problems()
                for note in notes:
                    self.log(f"  {note}")
                if problems:
                    raise PreflightError(problems, f"patch of {self.o.stack}")
                if fresh is None:
                    state["preflight_set"] = self._backup("pre-flight")
                    rec["detail"] = f"took and verified {state['preflight_set']}"
                else:
                    state["preflight_set"] = fresh["set_id"]
                    rec["detail"] = f"recent verified set {fresh['set_id']}"
        except (ErpopsError, PatchInterrupted) as exc:  # nothing was changed yet: the run ends here, audited
            state.update(status="refused" if isinstance(exc, PreflightError) else "failed", error=str(exc))
            self.store.save(state)
            self.audit(state, state["status"])
            raise
        ctx = self._ctx(state)
        # 2-3. freeze, pre-patch backup: a failure undoes the freeze, the database is untouched
        try:
            with self._step(state, "freeze") as rec:
                self.o.driver.remember(ctx)
                state["web_replicas"] = ctx.web_replicas
                self.o.driver.freeze(ctx)
            with self._step(state, "backup") as rec:
                state["pre_patch_set"] = self._backup("pre-patch")
                rec["detail"] = f"pre-patch set {state['pre_patch_set']} verified"
        except BaseException as exc:
            self._undo_freeze(state, exc)
            raise OperationFailed(f"patch of {self.o.stack} failed before the update: {exc}; the freeze was undone "
                                  f"({state['from_image']} rolled out again), the database was not touched") from exc
        # 4-6. apply, roll, gate: a failure rolls back
        try:
            with self._step(state, "apply") as rec:
                self.o.driver.apply(ctx)
                rec["detail"] = f"modules {ctx.modules_arg} updated with {ctx.to_image}"
            with self._step(state, "roll") as rec:
                self.o.driver.roll(ctx, ctx.to_image)
                rec["detail"] = f"web and cron on {ctx.to_image}"
            with self._step(state, "gate") as rec:
                ok, lines = self.health()
                for line in lines:
                    self.log(f"  health: {line}")
                if not ok:
                    raise OperationFailed("health checks fail after the patch: " + "; ".join(lines))
                rec["detail"] = self._smoke(state)
        except BaseException as exc:
            report = self._roll_back(state, exc)
            raise OperationFailed(f"patch of {self.o.stack} to {state['to_image']} failed and was rolled back: "
                                  f"{exc}\n{report}") from exc
        state["status"] = "done"
        self.store.save(state)
        entry = self.audit(state, "done")
        self.log(f"patch {state['run_id']} done: {state['stack']} runs {state['to_image']}")
        self.log(f"WARNING: set odoo.image to {state['to_image']} in Pulumi.{state['stack']}.yaml, or the next "
                 "`pulumi up` rolls the old image back")
        return {"ok": True, "result": "done", "run_id": state["run_id"], "state_file": str(self.store.path),
                "audit": entry}

    def _undo_freeze(self, state: dict[str, Any], exc: BaseException) -> None:
        state["error"] = str(exc)
        self._rolling_back = True
        try:
            if state.get("from_image") and any(s["name"] == "freeze" for s in state["steps"]):
                with self._step(state, "unfreeze", "rollback_steps"):
                    self.o.driver.roll(self._ctx(state), state["from_image"], rollback=True)
            state["status"] = "failed"
        except BaseException as undo_exc:
            state["status"] = "rollback_failed"
            state["error"] = f"{exc}; undoing the freeze failed: {undo_exc}"
        finally:
            self._rolling_back = False
        self.store.save(state)
        self.audit(state, state["status"])
        if state["status"] == "rollback_failed":
            raise RollbackFailed(f"MANUAL ACTION: {state['error']}; bring web and cron back on {state['from_image']}")

    def _roll_back(self, state: dict[str, Any], exc: BaseException | str) -> str:
        """Freeze, restore the pre-patch set (new db then swap), previous image, health; the report."""
        state.update(status="rolling_back", error=str(exc)[:2000])
        self.store.save(state)
        self._rolling_back = True
        self.log(f"WARNING: rolling back {state['stack']} to {state['from_image']} and set {state['pre_patch_set']}")
        ctx = self._ctx(state)
        health_lines: list[str] = []
        try:
            with self._step(state, "freeze", "rollback_steps"):
                self.o.driver.freeze(ctx)
            with self._step(state, "restore", "rollback_steps") as rec:
                restored = self._restore(state["pre_patch_set"], state["db"])
                rec["detail"] = f"{state['pre_patch_set']} restored into {restored['db']} (replaced)"
            with self._step(state, "roll_back_image", "rollback_steps") as rec:
                self.o.driver.roll(ctx, state["from_image"], rollback=True)
                rec["detail"] = f"web and cron on {state['from_image']}"
            with self._step(state, "health", "rollback_steps") as rec:
                ok, health_lines = self.health()
                rec["detail"] = "; ".join(health_lines)
            state["status"] = "rolled_back" if ok else "rolled_back_unhealthy"
        except BaseException as rb_exc:
            state["status"] = "rollback_failed"
            state["error"] = f"{state['error']}; rollback failed: {rb_exc}"
            self.store.save(state)
            self.audit(state, "rollback_failed")
            self._rolling_back = False
            raise RollbackFailed(
                f"MANUAL ACTION: patch of {state['stack']} failed ({exc}) and its rollback failed too ({rb_exc}). "
                f"Restore by hand: erpops restore {state['pre_patch_set']} --target {self.o.target.url} --to "
                f"{state['db']} --replace --yes --no-neutralize; then roll web and cron to {state['from_image']}. "
                f"State: {self.store.path}") from rb_exc
        self._rolling_back = False
        self.store.save(state)
        self.audit(state, state["status"])
        lines = [f"rollback report ({state['status']}):"]
        lines += [f"  {s['name']}: {s['status']} ({s['seconds']} s){' - ' + s['detail'] if s['detail'] else ''}"
                  for s in state["rollback_steps"]]
        if state["status"] == "rolled_back_unhealthy":
            lines.append("WARNING: the stack was rolled back but its health checks still fail: " +
                         "; ".join(health_lines))
        report = "\n".join(lines)
        self.log(report)
        return report

    def _recover(self, prior: dict[str, Any], action: str) -> dict[str, Any]:
        self.log(f"WARNING: patch run {prior['run_id']} was stuck (its process died; {prior['status']}, last steps "
                 f"{', '.join(s['name'] + ':' + s['status'] for s in prior.get('steps', [])) or 'none'}): "
                 f"{action}")
        prior["recovered_by"] = os.getpid()
        if action != "finalize":
            with contextlib.suppress(ErpopsError):
                cancelled = self.o.driver.cancel(self._ctx(prior), prior)
                if cancelled:
                    self.log(f"  {cancelled}")
        for s in prior.get("steps", []) + prior.get("rollback_steps", []):
            if s.get("status") == "running":
                s.update(status="interrupted")
        if action == "finalize":
            prior["status"] = "done"
            self.store.save(prior)
            self.audit(prior, "done")
        elif action == "rollback":
            self._roll_back(prior, prior.get("error") or "interrupted")
        elif action == "unfreeze":
            self._undo_freeze(prior, RuntimeError(prior.get("error") or "interrupted before the pre-patch backup"))
        else:  # abandoned during pre-flight: nothing had changed
            prior["status"] = "failed"
            prior["error"] = prior.get("error") or "interrupted during pre-flight (nothing changed)"
            self.store.save(prior)
            self.audit(prior, "failed")
        return {"run_id": prior["run_id"], "action": action, "status": prior["status"]}

    # -- check mode ----------------------------------------------------------------------------------

    def plan(self) -> dict[str, Any]:
        """What a run would do; reads only (health, backup listing, the running image). No state, no audit."""
        if self.o.from_image is None:
            with contextlib.suppress(ErpopsError):
                self.o.from_image = self.o.driver.current_image(self._ctx({**self._state_stub(), "run_id": "probe"}))
        problems, notes, fresh = self.preflight_problems()
        prior = self.store.load()
        ctx = self._ctx({**self._state_stub(), "from_image": self.o.from_image, "run_id": "<run id>"})
        commands = self.o.driver.plan(ctx)
        smoke = None if self.o.no_smoke else (self.o.smoke_cmd or self.o.driver.smoke_command()
                                               or self._default_smoke())
        steps = [
            {"step": "preflight", "does": "health checks, approval and window" +
             ("" if fresh else "; take and verify a backup set now")},
            {"step": "freeze", "commands": commands.get("freeze", [])},
            {"step": "backup", "does": f"pre-patch set of {self.o.db} into {self.o.target.url}, verified"},
            {"step": "apply", "commands": commands.get("apply", [])},
            {"step": "roll", "commands": commands.get("roll", [])},
            {"step": "gate", "does": "health checks" + (f"; smoke: {smoke}" if smoke else "; no smoke")},
        ]
        result = {"ok": not problems, "check": True, "stack": self.o.stack, "tier": self.o.tier,
                  "from_image": self.o.from_image, "to_image": self.o.to_image, "modules": self.o.modules or ["all"],
                  "db": self.o.db, "problems": problems, "notes": notes, "steps": steps,
                  "on_failure": "after the backup: freeze, restore the pre-patch set (--replace), roll back to "
                                f"{self.o.from_image}, health checks",
                  "interrupted_run": {"run_id": prior["run_id"], "would": recovery_action(prior)}
                  if recovery_action(prior) else None,
                  "stuck": stuck_runs(self.store.dir, self.o.stack)}
        return result


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------


def _load_sized(stack: str, root: Path | None) -> Any:
    """The stack's validated spec, or None when there is no Pulumi.<stack>.yaml (a VM install, tests)."""
    from erpops import spec

    try:
        base = root or spec.find_root()
    except SpecError:
        return None
    if not spec.stack_file(base, stack).is_file():
        return None
    return spec.load(stack, base)


def _human(result: dict[str, Any]) -> None:
    if result.get("check"):
        click.echo(f"plan (check mode, nothing changed): {result['stack']} ({result['tier']}) "
                   f"{result['from_image']} -> {result['to_image']}, modules {','.join(result['modules'])}, db "
                   f"{result['db']}")
        for note in result["notes"]:
            click.echo(f"  {note}")
        for step in result["steps"]:
            click.echo(f"  {step['step']}: {step.get('does', '')}")
            for cmd in step.get("commands", []):
                click.echo(f"      $ {cmd}")
        click.echo(f"  on failure: {result['on_failure']}")
        if result.get("interrupted_run"):
            r = result["interrupted_run"]
            click.echo(f"  WARNING: unfinished run {r['run_id']}: a real run first does `{r['would']}`")
        for run in result.get("stuck") or []:
            click.echo(f"  STUCK: {stuck_message(run)}")
        for p in result["problems"]:
            click.echo(f"  REFUSED: {p}")
        return
    if result.get("recovered"):
        r = result["recovered"]
        click.echo(f"recovered interrupted run {r['run_id']}: {r['action']} -> {r['status']}")
    click.echo(f"result: {result['result']}{' (run ' + result['run_id'] + ')' if result.get('run_id') else ''}")


@click.command("patch")
@click.option("--stack", "-s", required=True, help="Stack to patch (Pulumi.<stack>.yaml gives tier, db, context).")
@click.option("--image", "to_image", required=True, help="New image: odoo:17.0-YYYYMMDD or odoo@sha256:<64 hex>.")
@click.option("--modules", "-m", default="all", show_default=True, help="Modules to update (-u), a,b, or all.")
@click.option("--driver", "driver_name", type=click.Choice(["kubernetes", "command"]), default="kubernetes",
              show_default=True)
@click.option("--driver-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Command driver: YAML/JSON file with one shell command per step.")
@click.option("--from-image", default=None, help="The image running now (default: read by the driver).")
@click.option("--approved-by", default=None, help="Who approved the change (required for prod).")
@click.option("--window", default=None, help="Change window START/END, UTC: 2026-11-29T22:00Z/2026-11-30T02:00Z.")
@click.option("--db", default=None, help="Odoo database (default: the stack's).")
@backup_target_options(target_default="s3://<backup_bucket>/<stack>")
@click.option("--filestore", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Local filestore root to back up and restore with the database (default: database only).")
@click.option("--max-backup-age-hours", type=float, default=None,
              help="Youngest verified set needed (default: the spec's backup.max_age_for_patch_hours, else 24).")
@click.option("--odoo-url", default=None, help="Odoo URL for health and smoke (default: https://<kubernetes.host>).")
@click.option("--health-check", "health_checks", multiple=True,
              help="Run only health checks whose name starts with this (repeatable; default all that apply).")
@click.option("--smoke-cmd", default=None,
              help="Gate smoke command (default: erpops loadtest gate ... --read-only --runs 1).")
@click.option("--no-smoke", is_flag=True, help="Gate on health checks only.")
@click.option("--web-mode", type=click.Choice(["scale", "command"]), default="scale", show_default=True,
              help="kubernetes: freeze web by scaling it to 0, or by --maintenance-cmd.")
@click.option("--maintenance-cmd", default=None, help="kubernetes, --web-mode command: puts web in maintenance.")
@click.option("--unmaintenance-cmd", default=None, help="kubernetes, --web-mode command: takes it out again.")
@click.option("--module-job", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="kubernetes: the module Job manifest (default: rendered from helm/odoo and the spec).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where patch-<stack>.json and patch-audit.jsonl live (default: <project root>/.erpops).")
@click.option("--check", is_flag=True, help="Print the plan; change nothing.")
@click.option("--abort", is_flag=True, help="Only roll back / finish an interrupted run, start no new one.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.pass_context
def patch(ctx: click.Context, stack: str, to_image: str, modules: str, driver_name: str, driver_file: Path | None,
          from_image: str | None, approved_by: str | None, window: str | None, db: str | None, target: str | None,
          endpoint_url: str | None, region: str | None, filestore: Path | None, max_backup_age_hours: float | None,
          odoo_url: str | None, health_checks: tuple[str, ...], smoke_cmd: str | None, no_smoke: bool,
          web_mode: str, maintenance_cmd: str | None, unmaintenance_cmd: str | None, module_job: Path | None,
          state_dir: Path | None, check: bool, abort: bool, as_json: bool) -> None:
    """Patch one stack's Odoo: new image and module updates, backed up, gated, rolled back on failure."""
    from erpops import spec
    from erpops.backup.storage import open_target
    from erpops.pg import Pg

    try:
        obj = ctx.find_root().obj
        root = obj.get("root") if isinstance(obj, dict) else None
        sized = _load_sized(stack, root)
        tier = sized.spec.tier if sized else spec.infer_tier(stack)
        if tier is None:
            raise UsageError(f"stack {stack!r} has no Pulumi.{stack}.yaml and its name names no tier: name it "
                             "dev-*, staging-* or prod-*, or create the stack file")
        database = db or (sized.database if sized else None)
        if not database:
            raise UsageError("--db is required when the stack has no Pulumi.<stack>.yaml")
        url = target
        if not url:
            if sized is None:
                raise UsageError("no backup target: pass --target s3://bucket/prefix or set ERPOPS_BACKUP_TARGET")
            stack_target = stack_backup_target(sized.spec, stack)
            url = stack_target.url
            endpoint_url = endpoint_url or stack_target.endpoint_url
            region = region or stack_target.region
        store = open_target(url, endpoint_url=endpoint_url, region=region)
        store.check(create=False)
        log: Callable[[str], None] = lambda m: click.echo(m, err=True)  # noqa: E731
        driver: Driver
        if driver_name == "command":
            if driver_file is None:
                raise UsageError("--driver command needs --driver-file FILE (one shell command per step)")
            driver = CommandDriver.from_file(driver_file, log)
        else:
            if sized is None:
                raise UsageError(f"--driver kubernetes needs Pulumi.{stack}.yaml (context, namespace, chart values)")
            from erpops.patch_drivers import load_job_file

            job = load_job_file(module_job) if module_job else plugins.module_job_source()(sized)
            driver = KubernetesDriver(context=sized.spec.kubernetes.context, namespace=sized.namespace,
                                      job_manifest=job, web_mode=web_mode, maintenance_cmd=maintenance_cmd,
                                      unmaintenance_cmd=unmaintenance_cmd, log=log)
        if odoo_url is None and sized is not None and driver_name == "kubernetes":
            odoo_url = f"https://{sized.spec.kubernetes.host}"
        base = root or (spec.find_root() if sized else Path.cwd())
        opts = PatchOptions(
            stack=stack, to_image=check_image(to_image), modules=parse_modules(modules), db=database, tier=tier,
            target=store, pg=Pg.from_env(), driver=driver, state_dir=state_dir or base / ".erpops",
            from_image=check_image(from_image) if from_image else None, approved_by=approved_by,
            window=parse_window(window) if window else None, window_text=window,
            who=os.environ.get("ERPOPS_OPERATOR") or getpass.getuser(),
            max_backup_age_hours=max_backup_age_hours if max_backup_age_hours is not None
            else float(sized.spec.backup.max_age_for_patch_hours if sized else 24),
            filestore=filestore, health_checks=list(health_checks), odoo_url=odoo_url,
            sized=sized, health_probe=plugins.health_probe(),
            smoke_cmd=smoke_cmd, no_smoke=no_smoke, check=check, abort=abort, log=log,
        )
        result = Patch(opts).run()
        if check and not result["ok"]:
            if as_json:
                click.echo(json.dumps(envelope(result), indent=2, default=str))
            else:
                _human(result)
            raise PreflightError(result["problems"], f"patch of {stack}")
    except ErpopsError as exc:
        if as_json and not getattr(exc, "json_printed", False):
            click.echo(json.dumps(error(exc), indent=2))
        raise
    if as_json:
        click.echo(json.dumps(envelope(result), indent=2, default=str))
    else:
        _human(result)


def main() -> None:
    """`python -m erpops.patch ...`: the command alone, with erpops' exit codes."""
    from erpops.cli import run

    run(patch, prog_name="erpops patch", obj={})


if __name__ == "__main__":
    main()
