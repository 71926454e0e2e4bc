"""Latency: V2 is not slower than V1 beyond a practical margin, and V2's p95 stays under its ceiling.

Three checks on the stage's latencies, all with confidence bounds rather than point values:
- p95 ratio V2/V1, bootstrapped: roll back when its (1 - alpha) lower bound exceeds
  1 + margin; the check passes when its `advance_confidence` upper bound is within 1 + margin.
- the typical request: a one-sided Mann-Whitney U test of V2 against V1 stretched by the
  margin; p < alpha means V2 is stochastically slower than V1 by more than the margin (a
  broad slowdown shows here with far fewer samples than in the p95).
- V2's own p95 against the ceiling (800 ms): roll back when its lower bound reaches it,
  pass when its upper bound is below it.
The margin is what keeps a healthy V2 from being rolled back: the tests ask whether V2 is
slower by more than the margin, not whether it differs at all, which enough samples always show.

Nothing is judged before both versions have `min_samples` latencies in the stage: a stage
starts with V2's caches and index pages cold, and its first minutes must not decide.
At 100 % V1 serves nothing, so only the ceiling is judged.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import mannwhitneyu

from rollout.controller.bootstrap import quantile, quantile_replicates
from rollout.controller.evidence import Evidence
from rollout.controller.gates.result import Findings, GateResult, GateStatus, signed_percent
from rollout.controller.outcome import Outcome
from rollout.controller.thresholds import Thresholds

NAME = "latency"


def latency_gate(evidence: Evidence, thresholds: Thresholds) -> GateResult:
    t = thresholds
    v1, v2 = evidence.v1.latencies_s, evidence.v2.latencies_s
    compared = evidence.percentage < 100
    limits = {"latency_margin": t.latency_margin, "max_p95_ms": t.max_p95_s * 1000, "quantile": t.latency_quantile,
              "min_samples": t.min_samples, "rollback_alpha": t.rollback_alpha,
              "advance_confidence": t.advance_confidence}
    values: dict[str, object] = {"samples_v1": len(v1), "samples_v2": len(v2)}
    judged = (("V1", v1), ("V2", v2)) if compared else (("V2", v2),)
    short = [f"{name} has {len(x)} of {t.min_samples} latency samples" for name, x in judged if len(x) < t.min_samples]
    if short:
        return GateResult(NAME, GateStatus.NOT_ENOUGH_DATA, Outcome.ROLLBACK, "; ".join(short), values, limits)

    rng = np.random.default_rng(t.seed)
    v2 = np.sort(v2)
    v2_replicates = quantile_replicates(v2, t.latency_quantile, t.bootstrap_draws, rng)
    findings = Findings()
    if compared:
        _against_v1(np.sort(v1), v2, v2_replicates, t, rng, values, findings)
    _under_ceiling(v2, v2_replicates, t, values, findings, compared)
    return findings.result(NAME, Outcome.ROLLBACK, values, limits)


def _against_v1(v1: np.ndarray, v2: np.ndarray, v2_replicates: np.ndarray, t: Thresholds,
                rng: np.random.Generator, values: dict, findings: Findings) -> None:
    allowed = 1 + t.latency_margin
    p95_v1, p95_v2 = quantile(v1, t.latency_quantile), quantile(v2, t.latency_quantile)
    ratios = v2_replicates / np.maximum(quantile_replicates(v1, t.latency_quantile, t.bootstrap_draws, rng), 1e-12)
    ratio = p95_v2 / max(p95_v1, 1e-12)
    low, high = np.quantile(ratios, [t.rollback_alpha, t.advance_confidence])
    typical = mannwhitneyu(v2, v1 * allowed, alternative="greater", method="asymptotic")
    values.update(p95_v1_ms=p95_v1 * 1000, p95_ratio=ratio, p95_ratio_lower=low, p95_ratio_upper=high,
                  median_ratio=float(np.median(v2) / max(np.median(v1), 1e-12)), mann_whitney_p=typical.pvalue)
    if low > allowed:
        findings.failed.append(f"V2 p95 is {signed_percent(ratio)} on V1's, beyond the {signed_percent(allowed)} "
                               f"margin (lower bound {signed_percent(low)})")
    elif high > allowed:
        findings.unproven.append(f"V2 p95 {signed_percent(ratio)} on V1's, not yet shown within "
                                 f"{signed_percent(allowed)} (upper bound {signed_percent(high)})")
    else:
        findings.fine.append(f"V2 p95 {signed_percent(ratio)} on V1's (upper bound {signed_percent(high)})")
    if typical.pvalue < t.rollback_alpha:
        findings.failed.append(f"the typical V2 request is slower than V1 by more than {signed_percent(allowed)} "
                               f"(Mann-Whitney p = {typical.pvalue:.1e})")


def _under_ceiling(v2: np.ndarray, v2_replicates: np.ndarray, t: Thresholds, values: dict, findings: Findings,
                   compared: bool) -> None:
    p95 = quantile(v2, t.latency_quantile)
    low, high = np.quantile(v2_replicates, [t.rollback_alpha, t.advance_confidence])
    values.update(p95_v2_ms=p95 * 1000, p95_v2_lower_ms=low * 1000, p95_v2_upper_ms=high * 1000)
    ceiling = f"{t.max_p95_s * 1000:.0f} ms"
    if low >= t.max_p95_s:
        findings.failed.append(f"V2 p95 {p95 * 1000:.0f} ms is over the {ceiling} ceiling "
                               f"(lower bound {low * 1000:.0f} ms)")
    elif high >= t.max_p95_s:
        findings.unproven.append(f"V2 p95 {p95 * 1000:.0f} ms not yet shown under {ceiling} "
                                 f"(upper bound {high * 1000:.0f} ms)")
    else:
        findings.fine.append(f"V2 p95 {p95 * 1000:.0f} ms under {ceiling}"
                             + ("" if compared else " (no V1 traffic at 100 %: ceiling only)"))
