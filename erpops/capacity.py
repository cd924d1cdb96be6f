"""Capacity from measurement: the calibration `erpops loadtest capacity` records, and the sizing it feeds.

A calibration (loadtests/baselines/<stack>.calibration.json, versioned) says, for one stack's Odoo
version and persona mix, how many concurrent users and requests per second one Odoo worker carries
before latency breaks (the first of: a request's p95 above its spec SLO, or the overall p50 twice
the one of the lightest step), and how much memory a worker holds under that load. `plan()` turns a
target user count into replicas, workers per pod, HPA bounds, pod memory, PostgreSQL connections and
the pooler, from the calibration when one fits the stack and from the Odoo deploy docs' rules
otherwise, every number with its arithmetic. Pure functions and file reads only.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from erpops import sizing
from erpops.errors import UsageError

CALIBRATION_VERSION = 1
# erpops: HPA headroom above the steady replicas for peaks (a third more users than the target)
HPA_PEAK_FACTOR = 1.5
# the same share the limit_memory_soft formula keeps for workers: 80% of the pod
WORKER_SHARE = 0.8
P50_FACTOR = 2.0


def calibration_path(root: Path, stack: str) -> Path:
    return root / "loadtests" / "baselines" / f"{stack}.calibration.json"


# ---- recording ---------------------------------------------------------------------------------

def _breach(step: dict[str, Any], first_p50: float, slo_p95: dict[str, float]) -> tuple[float, str] | None:
    """How far past its limit the step is (ratio >= 1 means broken), and which limit, or None if unmeasurable."""
    worst: tuple[float, str] | None = None
    if first_p50 and step.get("p50"):
        worst = (step["p50"] / (P50_FACTOR * first_p50), f"p50 {step['p50']:.0f} ms vs 2 x {first_p50:.0f} ms")
    for name, limit in slo_p95.items():
        p95 = (step.get("p95_by_name") or {}).get(name)
        if p95 is not None and (worst is None or p95 / limit > worst[0]):
            worst = (p95 / limit, f"{name} p95 {p95:.0f} ms vs SLO {limit:.0f} ms")
    return worst


def broken(step: dict[str, Any], first_p50: float, slo_p95: dict[str, float]) -> bool:
    got = _breach(step, first_p50, slo_p95)
    return bool(got and got[0] >= 1.0)


def calibration(*, stack: str, host: str, odoo_serie: str, read_only: bool, personas: dict[str, int],
                think_time_seconds: tuple[float, float], workers: int, steps: list[dict[str, Any]],
                slo_p95: dict[str, float], memory: dict[str, Any]) -> dict[str, Any]:
    """The calibration document from the ramp's steps (each: users, rps, p50, p95, p95_by_name)."""
    if workers < 1:
        raise UsageError("--workers must be at least 1: the Odoo workers serving --host")
    first_p50 = float(steps[0]["p50"] or 0.0)
    knee_i = next((i for i, s in enumerate(steps) if i > 0 and broken(s, first_p50, slo_p95)), None)
    arithmetic: list[str] = []
    if knee_i is None:
        raise UsageError(f"latency did not break up to {steps[-1]['users']} users ({steps[-1]['rps']:.1f} req/s): "
                         "raise --max-users (or --workers is larger than what serves --host); nothing recorded")
    below, knee = steps[knee_i - 1], steps[knee_i]
    m_below, _ = _breach(below, first_p50, slo_p95) or (0.0, "")
    m_knee, why = _breach(knee, first_p50, slo_p95) or (1.0, "")
    # linear interpolation of the breach ratio between the last good step and the first broken one
    frac = (1.0 - m_below) / (m_knee - m_below) if m_knee > m_below else 1.0
    frac = min(max(frac, 0.0), 1.0)
    users = below["users"] + frac * (knee["users"] - below["users"])
    arithmetic.append(f"breach ratio {m_below:.2f} at {below['users']} users, {m_knee:.2f} at {knee['users']} "
                      f"users ({why}): crosses 1.0 at {below['users']} + {frac:.2f} x "
                      f"({knee['users']} - {below['users']}) = {users:.1f} users")
    # throughput is flat once the workers are saturated: the broken step's req/s is the capacity
    rps = max(s["rps"] for s in steps[: knee_i + 1])
    arithmetic.append(f"capacity {rps:.1f} req/s (highest step up to the knee)")
    upw, rpw = users / workers, rps / workers
    arithmetic.append(f"per worker: {users:.1f} users / {workers} workers = {upw:.2f} users; "
                      f"{rps:.1f} req/s / {workers} = {rpw:.2f} req/s")
    return {
        "version": CALIBRATION_VERSION, "stack": stack, "host": host, "odoo_serie": odoo_serie,
        "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "read_only": read_only,
        "persona_weights": dict(personas), "think_time_seconds": list(think_time_seconds), "workers": workers,
        "criterion": why, "knee_users": round(users, 2), "knee_rps": round(rps, 2),
        "users_per_worker": round(upw, 3), "rps_per_worker": round(rpw, 3),
        "worker_rss_mib": memory.get("rss_mib"), "worker_vms_mib": memory.get("vms_mib"),
        "memory_source": memory.get("source"), "arithmetic": arithmetic, "steps": steps,
    }


# ---- reading -----------------------------------------------------------------------------------

def load_calibration(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise UsageError(f"calibration {path} is not JSON ({exc}): re-record it with `erpops loadtest capacity`") \
            from None
    if not isinstance(doc, dict) or doc.get("version") != CALIBRATION_VERSION:
        raise UsageError(f"calibration {path} has version {doc.get('version') if isinstance(doc, dict) else None}, "
                         f"erpops reads version {CALIBRATION_VERSION}: re-record it with `erpops loadtest capacity`")
    return doc


def refusal(doc: dict[str, Any], odoo_version: str, personas: dict[str, int],
            think: tuple[float, float]) -> str | None:
    """Why this calibration does not describe the stack (None when it does)."""
    if str(doc.get("odoo_serie")) != odoo_version:
        return (f"it was measured on Odoo {doc.get('odoo_serie')} and the stack runs {odoo_version}: workers of "
                "another version carry another load; re-calibrate against this version")
    if dict(doc.get("persona_weights") or {}) != dict(personas):
        return (f"it was measured with persona weights {doc.get('persona_weights')} and the spec's "
                f"slo.persona_weights are {dict(personas)}: re-calibrate with the current mix")
    if [float(t) for t in doc.get("think_time_seconds") or []] != [float(t) for t in think]:
        return (f"it was measured with think times {doc.get('think_time_seconds')} s and the spec's "
                f"slo.think_time_seconds are {list(think)}: re-calibrate")
    return None


# ---- planning ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    users: int
    source: str  # "calibration <path> (<date>)" or the docs' rule
    replicas: int
    workers_per_pod: int
    hpa_min: int
    hpa_max: int
    pod_memory_mib: int
    budget: sizing.ConnectionBudget
    settings: list[sizing.Setting] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plan(sized: Any, users: int, doc: dict[str, Any] | None, doc_path: Path | None = None) -> Plan:
    """Replicas, HPA bounds, pod memory and connections for `users` concurrent users of stack `sized`."""
    if users < 1:
        raise UsageError("--users must be at least 1")
    spec = sized.spec
    w = sized.odoo.workers
    s: list[sizing.Setting] = []
    notes: list[str] = []

    def add(name: str, value: int | float, formula: str, source: str) -> None:
        s.append(sizing.Setting(name, value, str(value), formula, source))

    if doc is not None:
        source = f"calibration {doc_path} ({doc.get('recorded_at')}, {doc.get('host')})"
        upw, rss = float(doc["users_per_worker"]), doc.get("worker_rss_mib")
        add("users_per_worker", round(upw, 2), f"measured: {doc.get('criterion')}", "calibration")
        rpw = float(doc["rps_per_worker"])
        add("rps_per_worker", round(rpw, 2), "measured: highest req/s up to the knee / workers", "calibration")
        if doc.get("read_only"):
            notes.append("the calibration ran read-only personas: writes cost more, keep headroom")
    else:
        source = f"{sizing.ODOO_DOC} rules (no calibration: run `erpops loadtest capacity`)"
        upw, rss, rpw = float(sizing.USERS_PER_WORKER), None, None
        add("users_per_worker", upw, "Odoo deploy docs: about 6 concurrent users per worker", sizing.ODOO_DOC)
    rss_mib = float(rss) if rss else sizing.WORKER_MIB
    rss_src = "calibration" if rss else sizing.ODOO_DOC
    add("worker_memory_mib", round(rss_mib, 1),
        "measured resident memory under load (max over workers)" if rss else
        f"{sizing.LIGHT_RATIO:.0%} x {sizing.LIGHT_MIB}MiB + {sizing.HEAVY_RATIO:.0%} x {sizing.HEAVY_MIB}MiB", rss_src)

    workers_needed = math.ceil(users / upw)
    add("workers_needed", workers_needed, f"ceil({users} users / {upw:g} users per worker)", "erpops")
    add("workers_per_pod", w, f"the stack's pod ({spec.odoo.web.cpu} CPU, {spec.odoo.web.memory}): "
        + (sized.odoo.settings[0].formula if sized.odoo.settings else ""), sizing.ODOO_DOC)
    floor = 2 if spec.tier == "prod" else 1
    replicas = max(math.ceil(workers_needed / w), floor)
    add("replicas", replicas, f"max(ceil({workers_needed} / {w}), {floor} for tier {spec.tier})", "erpops")
    hpa_max = max(math.ceil(replicas * HPA_PEAK_FACTOR), replicas + 1)
    add("hpa_min", replicas, "the steady replicas", "erpops")
    add("hpa_max", hpa_max, f"max(ceil({replicas} x {HPA_PEAK_FACTOR}), {replicas} + 1): peak headroom", "erpops")
    if rpw is not None:
        add("capacity_rps", round(replicas * w * rpw, 1), f"{replicas} x {w} workers x {rpw:g} req/s", "calibration")
    pod_mib = math.ceil((w + 1) * rss_mib / WORKER_SHARE / 64) * 64
    add("pod_memory_mib", pod_mib,
        f"({w} workers + 1 gevent) x {rss_mib:.1f}MiB / {WORKER_SHARE:.0%}, rounded up to 64MiB", rss_src)
    if pod_mib > spec.odoo.web.memory_mib:
        notes.append(f"the stack's pods have {spec.odoo.web.memory} ({spec.odoo.web.memory_mib}MiB), below the "
                     f"{pod_mib}MiB needed: raise odoo.web.memory or lower odoo.web.workers")
    budget = sizing.connection_budget(
        web_replicas_max=hpa_max, workers=w, cron_replicas=spec.odoo.cron.replicas,
        cron_threads=spec.odoo.cron.threads, headroom_processes=spec.pooler.headroom_processes,
        db_maxconn=spec.odoo.db_maxconn, pooler_instances=spec.pooler.instances,
        direct_connections=spec.postgres.direct_connections)
    s += budget.settings
    add("pooler_instances", spec.pooler.instances, "spec pooler.instances (PgBouncer, session mode)", "erpops")
    return Plan(users, source, replicas, w, replicas, hpa_max, pod_mib, budget, s, notes)


def stack_calibration(sized: Any, root: Path | None) -> tuple[dict[str, Any] | None, Path | None]:
    """The stack's calibration if there is one; UsageError with the reason when it does not fit the stack."""
    if root is None:
        return None, None
    path = calibration_path(root, sized.stack)
    doc = load_calibration(path)
    if doc is None:
        return None, None
    slo = sized.spec.slo
    why = refusal(doc, sized.spec.odoo.version, dict(slo.persona_weights), tuple(slo.think_time_seconds))
    if why:
        raise UsageError(f"calibration {path} refused: {why}")
    return doc, path


def target_raw(sized: Any, raw: dict[str, Any], root: Path | None) -> dict[str, Any]:
    """The raw spec with odoo.web.replicas and the HPA bounds that odoo.web.target_users needs."""
    doc, path = stack_calibration(sized, root)
    p = plan(sized, int(sized.spec.odoo.web.target_users), doc, path)
    out = copy.deepcopy(raw)
    web = out.setdefault("odoo", {}).setdefault("web", {})
    web["replicas"] = p.replicas
    auto = web.setdefault("autoscale", {})
    if sized.spec.odoo.web.autoscale.enabled:
        auto.update(min_replicas=p.hpa_min, max_replicas=p.hpa_max)
    return out
