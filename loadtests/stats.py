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
"slower than tolerated, and not by chance". Names with too few requests are reported, not judged.
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


@dataclass
class Comparison:
    name: str
    status: str  # "pass", "regression", "insufficient", "new", "missing"
    baseline_p95: float | None
    current_p95: float | None  # median over runs
    ratio: float | None
    ci_low: float | None
    ci_high: float | None
    samples: int
    message: str = ""


def _median_p95_draw(dists: Sequence[EmpiricalDistribution], rng: random.Random) -> float:
    """One bootstrap replicate of the median-over-runs p95: runs resampled, then requests within each."""
    picked = [dists[rng.randrange(len(dists))] for _ in dists]
    return statistics.median(d.bootstrap_quantile(0.95, rng) for d in picked)


def compare_p95(name: str, baseline: Mapping[Any, int] | Sequence[Mapping[Any, int]] | None,
                runs: Sequence[Mapping[Any, int]], tolerance: float = 0.10, iterations: int = 2000,
                min_samples: int = 20, confidence: float = 0.95, seed: int | None = 0) -> Comparison:
    """Compare one request name's p95 over the gate's runs with the baseline's (one histogram or one per run).

    Ratio = median over gate runs of p95 / median over baseline runs of p95; both sides are
    bootstrapped the same way, so a baseline recorded on a noisy day widens the interval too.
    """
    base_hists = [baseline] if isinstance(baseline, Mapping) or baseline is None else list(baseline)
    bases = [d for d in (EmpiricalDistribution(h or {}) for h in base_hists) if d.n]
    dists = [d for d in (EmpiricalDistribution(h) for h in runs) if d.n]
    samples = sum(d.n for d in dists)
    base_n = sum(d.n for d in bases)
    current = statistics.median(d.quantile(0.95) for d in dists) if dists else None
    if not bases:
        return Comparison(name, "new", None, current, None, None, None, samples, "not in the baseline: re-record it")
    base_p95 = statistics.median(d.quantile(0.95) for d in bases)
    if not dists:
        return Comparison(name, "missing", base_p95, None, None, None, None, 0,
                          "in the baseline but not requested in this run")
    ratio = current / base_p95 if current is not None else None
    if samples < min_samples or base_n < min_samples:
        return Comparison(name, "insufficient", base_p95, current, ratio, None, None, samples,
                          f"fewer than {min_samples} requests: not judged")
    rng = random.Random(seed)
    ratios = sorted(_median_p95_draw(dists, rng) / _median_p95_draw(bases, rng) for _ in range(iterations))
    alpha = (1 - confidence) / 2
    low = ratios[int(alpha * (iterations - 1))]
    high = ratios[math.ceil((1 - alpha) * (iterations - 1))]
    regressed = low > 1 + tolerance
    message = (f"p95 {ratio:.2f}x baseline, 95% CI [{low:.2f}, {high:.2f}] "
               f"{'above' if regressed else 'not above'} {1 + tolerance:.2f}")
    return Comparison(name, "regression" if regressed else "pass", base_p95, current, ratio, low, high, samples,
                      message)


@dataclass
class Check:
    """One line of the verdict: a p95 comparison, the error ratio, the request rate or an SLO."""

    kind: str  # "p95", "error_ratio", "min_rps", "slo", "crash"
    name: str
    ok: bool
    judged: bool
    message: str
    detail: dict[str, Any] = field(default_factory=dict)


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
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "host": self.host, "runs": self.runs, "passed": self.passed,
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
          error_ratio_max: float, min_rps: float, slo: Mapping[str, Mapping[str, float]] | None = None,
          tolerance: float = 0.10, iterations: int = 2000, min_samples: int = 20, seed: int | None = 0) -> Verdict:
    """Every check of the gate over `runs` (runner results) against `baseline` (a `summarize` output)."""
    checks: list[Check] = []
    crashes = [e for r in runs for e in r.get("exceptions") or []]
    if crashes:
        checks.append(Check("crash", "user code", False, True,
                            f"{sum(e['count'] for e in crashes)} exception(s) inside the load-test users: "
                            f"{crashes[0]['msg']}"))
    names = sorted({n for r in runs for n in r["requests"]} | set(baseline.get("requests", {})) - {TOTAL})
    for name in [*names, TOTAL]:
        current = [_hist(r["total"] if name == TOTAL else r["requests"].get(name) or {}) for r in runs]
        base_entry = baseline.get("requests", {}).get(name) or {}
        per_run = base_entry.get("hist_per_run")
        base_hists = [_hist({"hist": h}) for h in per_run] if per_run else [_hist(base_entry)]
        c = compare_p95(name, base_hists, current, tolerance, iterations, min_samples, seed=seed)
        judged = c.status in ("pass", "regression")
        checks.append(Check("p95", name, c.status != "regression", judged, c.message or c.status, asdict(c)))
    total_requests = sum(r["total"]["count"] for r in runs)
    total_failures = sum(r["total"]["failures"] for r in runs)
    ratio = total_failures / total_requests if total_requests else 1.0
    checks.append(Check("error_ratio", TOTAL, ratio <= error_ratio_max, True,
                        f"{total_failures} of {total_requests} requests failed ({ratio:.2%}, "
                        f"allowed {error_ratio_max:.2%})", {"error_ratio": ratio, "max": error_ratio_max}))
    rps = statistics.median(r["rps"] for r in runs) if runs else 0.0
    checks.append(Check("min_rps", TOTAL, rps >= min_rps, True,
                        f"{rps:.1f} req/s (median of runs), required {min_rps:g}", {"rps": rps, "min": min_rps}))
    for name, limits in sorted((slo or {}).items()):
        entries = [r["requests"].get(name) for r in runs]
        entries = [e for e in entries if e and e["count"]]
        if not entries:
            checks.append(Check("slo", name, True, False, "not requested in this run: SLO not judged"))
            continue
        observed = {q: statistics.median(e[q] for e in entries) for q in ("p50", "p95", "p99")}
        over = [f"{q} {observed[q]:.0f} ms > {limits[f'{q}_ms']:g} ms" for q in ("p50", "p95", "p99")
                if observed[q] > limits[f"{q}_ms"]]
        checks.append(Check("slo", name, not over, True, "; ".join(over) or
                            "within " + "/".join(f"{limits[f'{q}_ms']:g}" for q in ("p50", "p95", "p99")) + " ms",
                            {"observed": observed, "limits": dict(limits)}))
    return Verdict(stack, host, len(runs), checks, tolerance, total_requests, total_failures, rps)
