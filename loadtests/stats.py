"""The gate's statistic, pure Python (no Locust): is p95 slower than the baseline, beyond noise?

For each request name, each run (of the gate and of the baseline recording) gives a latency
histogram (1 ms buckets, recorded by the runner -> count). The point estimate is
`median over gate runs of p95 / median over baseline runs of p95`. Its uncertainty comes from a
two-level bootstrap, applied to both sides alike:

  1. resample the runs with replacement (a noisy machine makes whole runs slow or fast);
  2. inside each resampled run, draw the p95 a resample of its requests would have. The k-th
     order statistic of n draws from an empirical distribution is F_n^-1(U) with
     U ~ Beta(k, n - k + 1): exact, and one random number instead of n;
  3. the median over the resampled runs is one replicate; gate replicate / baseline replicate is
     one replicate of the ratio.

A name regresses only when the lower bound of the two-sided 95% interval exceeds 1 + tolerance:
"slower than tolerated, and not by chance".

Power: the spread of the bootstrap replicates (standard error of the log ratio, `se`) also says
what this run could have seen. A true slow-down r fails the gate with 90% probability when
r >= (1 + tolerance) * exp((z_0.975 + z_0.90) * se): that is the *detectable* slow-down printed per
name. When it is above the slow-down the gate must catch (`detect`, per name from the spec's SLO),
a pass would be a guess: the name is `inconclusive`, and so is the verdict, unless something failed.

Names the personas declare they send (`declared`) must be there: one never sent fails the gate
(`missing`), one sent too few times to judge makes it inconclusive. Other names (wizard steps that
appear only on some data) are shown, and judged only when they have enough samples.
"""

from __future__ import annotations

import bisect
import math
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

Histogram = Mapping[int, int]  # milliseconds (1 ms buckets) -> request count

TOTAL = "Aggregated"
PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"


class EmpiricalDistribution:
    """A latency histogram with fast quantiles and bootstrap quantile draws."""

    def __init__(self, hist: Mapping[Any, int]) -> None:
        items = sorted((float(ms), int(c)) for ms, c in hist.items() if int(c) > 0)
        self.values = [v for v, _ in items]
        self.cumulative: list[int] = []
        running = 0
        for _, count in items:
            running += count
            self.cumulative.append(running)
        self.n = running

    def at_rank(self, k: int) -> float:
        """The k-th smallest sample (1-based)."""
        return self.values[bisect.bisect_left(self.cumulative, k)]

    def quantile(self, q: float) -> float:
        if not self.n:
            return math.nan
        return self.at_rank(max(1, math.ceil(q * self.n)))

    def bootstrap_quantile(self, q: float, rng: random.Random) -> float:
        """The q-quantile of one bootstrap resample of the n samples (drawn exactly via Beta)."""
        k = max(1, math.ceil(q * self.n))
        u = rng.betavariate(k, self.n - k + 1)
        return self.at_rank(min(self.n, max(1, math.ceil(u * self.n))))


def merge(hists: Sequence[Mapping[Any, int]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for hist in hists:
        for ms, count in hist.items():
            out[int(float(ms))] = out.get(int(float(ms)), 0) + int(count)
    return out


Z_CONFIDENCE, Z_POWER = 1.959964, 1.281552  # two-sided 95% interval; 90% power
DEFAULT_DETECT = 1.30


@dataclass
class Comparison:
    name: str
    status: str  # "pass", "regression", "inconclusive", "insufficient", "new", "missing"
    baseline_p95: float | None
    current_p95: float | None  # median over runs
    ratio: float | None
    ci_low: float | None
    ci_high: float | None
    samples: int
    message: str = ""
    detectable: float | None = None  # the slow-down this run catches with 90% probability
    tolerance: float | None = None
    detect: float | None = None  # the slow-down the gate must be able to catch
    baseline_samples: int = 0


def detectable_slowdown(point: float, low: float, tolerance: float) -> float:
    """The smallest true slow-down whose interval's lower bound clears 1 + tolerance 90% of the time.

    `point` and `low` are the log of the ratio and of its interval's lower bound. Only the lower side
    decides a failure, so its half-width is the one that counts: read as 1.96 standard errors, the
    estimate varies by one, and it lies more than 1.28 of them below the truth 10% of the time. The
    bootstrap distribution is lopsided when a run of the gate was slowed by the machine (some resamples
    hold it several times): that widens the upper side only, and leaves the gate able to see a slow-down.
    """
    se = max(point - low, 0.0) / Z_CONFIDENCE
    return (1 + tolerance) * math.exp((Z_CONFIDENCE + Z_POWER) * se)


def _median_p95_draw(dists: Sequence[EmpiricalDistribution], rng: random.Random) -> float:
    """One bootstrap replicate of the median-over-runs p95: runs resampled, then requests within each."""
    picked = [dists[rng.randrange(len(dists))] for _ in dists]
    return statistics.median(d.bootstrap_quantile(0.95, rng) for d in picked)


def compare_p95(name: str, baseline: Mapping[Any, int] | Sequence[Mapping[Any, int]] | None,
                runs: Sequence[Mapping[Any, int]], tolerance: float = 0.10, iterations: int = 2000,
                min_samples: int = 20, confidence: float = 0.95, seed: int | None = 0,
                detect: float | None = None, declared: bool = False) -> Comparison:
    """Compare one request name's p95 over the gate's runs with the baseline's (one histogram or one per run).

    Ratio = median over gate runs of p95 / median over baseline runs of p95; both sides are
    bootstrapped the same way, so a baseline recorded on a noisy day widens the interval too.
    `detect` (default 1.30): the slow-down this comparison must be able to see, else `inconclusive`.
    `declared`: the personas promise this name, so its absence is `missing` (a failure).
    """
    detect = DEFAULT_DETECT if detect is None else detect
    base_hists = [baseline] if isinstance(baseline, Mapping) or baseline is None else list(baseline)
    bases = [d for d in (EmpiricalDistribution(h or {}) for h in base_hists) if d.n]
    dists = [d for d in (EmpiricalDistribution(h) for h in runs) if d.n]
    samples = sum(d.n for d in dists)
    base_n = sum(d.n for d in bases)
    current = statistics.median(d.quantile(0.95) for d in dists) if dists else None

    def result(status: str, message: str, **kw: Any) -> Comparison:
        return Comparison(name, status, kw.pop("base_p95", None), current, kw.pop("ratio", None), kw.pop("low", None),
                          kw.pop("high", None), samples, message, kw.pop("detectable", None), tolerance, detect,
                          base_n)

    if not dists and declared:
        return result("missing", "declared by the personas but never sent in this run: a step of theirs did nothing "
                                 "(see the errors and checks)",
                      base_p95=statistics.median(d.quantile(0.95) for d in bases) if bases else None)
    if not bases:
        return result("new", "not in the baseline: re-record it")
    base_p95 = statistics.median(d.quantile(0.95) for d in bases)
    if not dists:
        return result("missing", "in the baseline but not requested in this run", base_p95=base_p95)
    ratio = current / base_p95 if current is not None and base_p95 else None
    if samples < min_samples or base_n < min_samples:
        return result("insufficient", f"{samples} requests here, {base_n} in the baseline: fewer than {min_samples}, "
                                      "not judged", base_p95=base_p95, ratio=ratio)
    rng = random.Random(seed)
    logs = sorted(math.log(_median_p95_draw(dists, rng) / _median_p95_draw(bases, rng)) for _ in range(iterations))
    alpha = (1 - confidence) / 2
    low = math.exp(logs[int(alpha * (iterations - 1))])
    high = math.exp(logs[math.ceil((1 - alpha) * (iterations - 1))])
    can_see = detectable_slowdown(math.log(max(current, 0.5) / max(base_p95, 0.5)), math.log(low), tolerance)
    regressed = low > 1 + tolerance
    status = "regression" if regressed else ("pass" if can_see <= detect else "inconclusive")
    message = (f"p95 {ratio:.2f}x baseline, 95% CI [{low:.2f}, {high:.2f}] "
               f"{'above' if regressed else 'not above'} {1 + tolerance:.2f}; detects >= {can_see:.2f}x"
               + ("" if regressed or status == "pass" else
                  f", not the {detect:.2f}x required: run longer or with more users (more samples)"))
    return result(status, message, base_p95=base_p95, ratio=ratio, low=low, high=high, detectable=can_see)


@dataclass
class Check:
    """One line of the verdict: a p95 comparison, the error ratio, the request rate or an SLO."""

    kind: str  # "p95", "error_ratio", "min_rps", "slo", "crash", "check", "start_up"
    name: str
    ok: bool
    judged: bool
    message: str
    detail: dict[str, Any] = field(default_factory=dict)
    conclusive: bool = True  # False: it passed only because the run could not see (INCONCLUSIVE)


@dataclass
class Verdict:
    stack: str
    host: str
    runs: int
    checks: list[Check]
    tolerance: float
    requests: int
    failures: int
    rps: float  # median over runs

    @property
    def passed(self) -> bool:
        return self.status == PASS

    @property
    def status(self) -> str:
        if not all(c.ok for c in self.checks):
            return FAIL
        return PASS if all(c.conclusive for c in self.checks) else INCONCLUSIVE

    def to_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "host": self.host, "runs": self.runs, "passed": self.passed,
                "verdict": self.status,
                "tolerance": self.tolerance, "requests": self.requests, "failures": self.failures,
                "rps": self.rps, "checks": [asdict(c) for c in self.checks]}


def _hist(entry: Mapping[str, Any]) -> dict[int, int]:
    return {int(float(k)): int(v) for k, v in (entry.get("hist") or {}).items()}


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A baseline from runner results: per name p50/p95/p99 and the pooled histogram, error ratio, req/s."""
    names = sorted({n for r in runs for n in r["requests"]})
    requests: dict[str, Any] = {}
    for name in [*names, TOTAL]:
        entries = [r["total"] if name == TOTAL else r["requests"].get(name) for r in runs]
        entries = [e for e in entries if e and e["count"]]
        pooled = merge([_hist(e) for e in entries])
        dist = EmpiricalDistribution(pooled)
        requests[name] = {
            "count": dist.n, "failures": sum(e["failures"] for e in entries),
            "p50": dist.quantile(0.50), "p95": dist.quantile(0.95), "p99": dist.quantile(0.99),
            "p95_per_run": [e["p95"] for e in entries], "hist": {str(k): v for k, v in sorted(pooled.items())},
            "hist_per_run": [e["hist"] for e in entries],
        }
    total_requests = sum(r["total"]["count"] for r in runs)
    total_failures = sum(r["total"]["failures"] for r in runs)
    return {
        "runs": len(runs), "users": runs[0]["users"] if runs else 0,
        "run_duration_s": [r["duration_s"] for r in runs],
        "rps": statistics.median(r["rps"] for r in runs) if runs else 0.0,
        "rps_per_run": [r["rps"] for r in runs],
        "error_ratio": total_failures / total_requests if total_requests else 0.0,
        "requests": requests,
    }


def judge(stack: str, host: str, baseline: Mapping[str, Any], runs: Sequence[Mapping[str, Any]],
          error_ratio_max: float, min_rps: float, slo: Mapping[str, Mapping[str, Any]] | None = None,
          tolerance: float = 0.10, iterations: int = 2000, min_samples: int = 20, seed: int | None = 0,
          detect: float = DEFAULT_DETECT) -> Verdict:
    """Every check of the gate over `runs` (runner results) against `baseline` (a `summarize` output).

    `slo` maps request names to their limits (p50_ms/p95_ms/p99_ms, each optional) and their own
    `tolerance`/`detect`; names without one use `tolerance`/`detect`.
    """
    slo = slo or {}
    checks: list[Check] = []
    crashes = [e for r in runs for e in r.get("exceptions") or []]
    if crashes:
        checks.append(Check("crash", "user code", False, True,
                            f"{sum(e['count'] for e in crashes)} exception(s) inside the load-test users: "
                            f"{crashes[0]['msg']}"))
    declared = {n for r in runs for n in r.get("declared") or []}
    for r in runs:
        started, users = r.get("started_up"), r.get("users")
        if started is not None and users and started < users:
            checks.append(Check("start_up", TOTAL, True, False, f"only {started} of {users} users finished start-up "
                                f"within the time allowed: measured with fewer users", conclusive=False))
            break
    request_names = {n for n in declared if not n.startswith("check:")}
    names = sorted(({n for r in runs for n in r["requests"]} | set(baseline.get("requests", {})) | request_names)
                   - {TOTAL})

    def limits(name: str) -> tuple[float, float]:
        own = slo.get(name) or {}
        return (tolerance if own.get("tolerance") is None else float(own["tolerance"]),
                detect if own.get("detect") is None else float(own["detect"]))

    for name in [*names, TOTAL]:
        current = [_hist(r["total"] if name == TOTAL else r["requests"].get(name) or {}) for r in runs]
        base_entry = baseline.get("requests", {}).get(name) or {}
        per_run = base_entry.get("hist_per_run")
        base_hists = [_hist({"hist": h}) for h in per_run] if per_run else [_hist(base_entry)]
        tol, det = limits(name)
        is_declared = name in declared
        c = compare_p95(name, base_hists, current, tol, iterations, min_samples, seed=seed, detect=det,
                        declared=is_declared)
        judged = c.status in ("pass", "regression")
        ok = c.status != "regression" and not (c.status == "missing" and is_declared)
        # a declared (or the aggregate) name that could not be judged leaves the verdict open
        conclusive = c.status in ("pass", "regression") or not (is_declared or name == TOTAL) \
            or (c.status == "missing" and is_declared)
        checks.append(Check("p95", name, ok, judged, c.message or c.status, asdict(c), conclusive))
    check_names = sorted({n for r in runs for n in r.get("checks") or {}} | {n for n in declared if
                                                                             n.startswith("check:")})
    for name in check_names:
        done = sum((r.get("checks") or {}).get(name, {}).get("ok", 0) for r in runs)
        failed = sum((r.get("checks") or {}).get(name, {}).get("failed", 0) for r in runs)
        total = done + failed
        if not total:
            checks.append(Check("check", name, False, True, "declared by the personas but never reached: the steps "
                                "before it failed or did nothing", {"ok": 0, "failed": 0}))
            continue
        share = failed / total
        checks.append(Check("check", name, share <= error_ratio_max, True,
                            f"{done} of {total} held ({share:.2%} failed, allowed {error_ratio_max:.2%})",
                            {"ok": done, "failed": failed}))
    total_requests = sum(r["total"]["count"] for r in runs)
    total_failures = sum(r["total"]["failures"] for r in runs)
    ratio = total_failures / total_requests if total_requests else 1.0
    checks.append(Check("error_ratio", TOTAL, ratio <= error_ratio_max, True,
                        f"{total_failures} of {total_requests} requests failed ({ratio:.2%}, "
                        f"allowed {error_ratio_max:.2%})", {"error_ratio": ratio, "max": error_ratio_max}))
    rps = statistics.median(r["rps"] for r in runs) if runs else 0.0
    checks.append(Check("min_rps", TOTAL, rps >= min_rps, True,
                        f"{rps:.1f} req/s (median of runs), required {min_rps:g}", {"rps": rps, "min": min_rps}))
    for name, lim in sorted(slo.items()):
        quantiles = [q for q in ("p50", "p95", "p99") if lim.get(f"{q}_ms") is not None]
        if not quantiles:
            continue
        entries = [r["requests"].get(name) for r in runs]
        entries = [e for e in entries if e and e["count"]]
        if not entries:
            checks.append(Check("slo", name, True, False, "not requested in this run: SLO not judged"))
            continue
        observed = {q: statistics.median(e[q] for e in entries) for q in ("p50", "p95", "p99")}
        over = [f"{q} {observed[q]:.0f} ms > {lim[f'{q}_ms']:g} ms" for q in quantiles
                if observed[q] > lim[f"{q}_ms"]]
        checks.append(Check("slo", name, not over, True, "; ".join(over) or
                            "within " + "/".join(f"{lim[f'{q}_ms']:g}" for q in quantiles) + " ms",
                            {"observed": observed, "limits": dict(lim)}))
    return Verdict(stack, host, len(runs), checks, tolerance, total_requests, total_failures, rps)
