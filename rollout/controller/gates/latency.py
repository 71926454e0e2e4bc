"""Latency: the candidate's p95 is not above the baseline's beyond a practical margin, and stays
under its ceiling, judged with quantile confidence sequences valid under continuous monitoring.

Each version's p95 gets a confidence sequence (`rollout.controller.sequences.quantile_bounds`,
Howard & Ramdas 2022): order statistics at ranks that hold at every sample size at once.
- roll back when the candidate's lower bound exceeds (1 + margin) x the baseline's upper bound
  (each sequence at an eighth of this gate's share of the rollback alpha), or when the candidate's
  lower bound reaches the ceiling (800 ms);
- roll back when more than 1 - q of the candidate's requests are slower than (1 + margin) x the
  baseline's p95, by the two-sample exceedance sequence (`exceedance_bounds`, a quarter of the
  alpha): the same question as the two quantile sequences, answered with one width instead of
  two, so a regression of the tail alone shows with about half the requests;
- roll back when the candidate's mean latency exceeds (1 + margin) x the baseline's by the
  asymptotic two-sample sequence (`difference_bounds`, the other half of this gate's alpha): a
  slowdown of every request shows in the mean with a few hundred requests, long before the p95,
  so that sequence is tuned to be tightest there (`MEAN_TUNED_FOR`; valid at every size);
- pass when the candidate's upper bound is within (1 + margin) x the baseline's lower bound and
  under the ceiling, at `advance_confidence`, once both versions have `min_samples`;
- otherwise hold.
The margin keeps a healthy candidate from being rolled back: the test asks whether it is slower
by more than the margin, not whether it differs at all. A stage starts with the candidate's
caches and index pages cold, so nothing rolls back before `min_samples_to_roll_back` samples.
Without baseline traffic (100 % and no holdback) only the ceiling is judged.
"""

from __future__ import annotations

import math

import numpy as np

from rollout.controller.evidence import Evidence
from rollout.controller.gates.result import Findings, GateResult, GateStatus, signed_percent
from rollout.controller.outcome import Outcome
from rollout.controller.sequences import difference_bounds, exceedance_bounds, quantile_bounds
from rollout.controller.thresholds import Thresholds

NAME = "latency"
MEAN_TUNED_FOR = 500  # candidate requests: about where a 25 % slowdown of every request shows in the mean


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if math.isfinite(seconds) else "unbounded"


def latency_gate(evidence: Evidence, thresholds: Thresholds, alpha: float) -> GateResult:
    t = thresholds
    baseline, candidate = evidence.baseline.latencies_s, evidence.candidate.latencies_s
    compared = len(baseline) > 0 or evidence.candidate_share < 100
    q, allowed = t.latency_quantile, 1 + t.latency_margin
    limits = {"latency_margin": t.latency_margin, "max_p95_ms": t.max_p95_s * 1000, "quantile": q,
              "min_samples": t.min_samples, "min_samples_to_roll_back": t.min_samples_to_roll_back,
              "alpha": alpha, "advance_confidence": t.advance_confidence}
    values: dict[str, object] = {"samples_baseline": len(baseline), "samples_candidate": len(candidate)}
    judged = (("baseline", baseline), ("candidate", candidate)) if compared else (("candidate", candidate),)
    if any(len(x) < t.min_samples_to_roll_back for _, x in judged):
        short = [f"{name} has {len(x)} of {t.min_samples_to_roll_back} latency samples" for name, x in judged
                 if len(x) < t.min_samples_to_roll_back]
        return GateResult(NAME, GateStatus.NOT_ENOUGH_DATA, Outcome.ROLLBACK, "; ".join(short), values, limits,
                          limit=allowed if compared else t.max_p95_s)
    fail_alpha, pass_alpha = alpha / 8, (1 - t.advance_confidence) / 2
    cand_low, _ = quantile_bounds(candidate, q, fail_alpha)
    _, cand_high = quantile_bounds(candidate, q, pass_alpha)
    p95_candidate = float(np.quantile(candidate, q))
    values.update(p95_candidate_ms=p95_candidate * 1000, p95_candidate_lower_ms=cand_low * 1000,
                  p95_candidate_upper_ms=cand_high * 1000)
    findings = Findings()
    headline: dict[str, float] = {"statistic": p95_candidate, "bound": cand_low, "limit": t.max_p95_s}
    if compared:
        _, base_high = quantile_bounds(baseline, q, fail_alpha)
        base_low, _ = quantile_bounds(baseline, q, pass_alpha)
        p95_baseline = float(np.quantile(baseline, q))
        ratio = p95_candidate / max(p95_baseline, 1e-12)
        ratio_lower = cand_low / base_high if math.isfinite(base_high) else 0.0
        ratio_upper = cand_high / base_low if base_low > 0 else math.inf
        values.update(p95_baseline_ms=p95_baseline * 1000, p95_ratio=ratio, p95_ratio_lower=ratio_lower,
                      p95_ratio_upper=ratio_upper)
        headline = {"statistic": ratio, "bound": ratio_lower, "limit": allowed}
        excess, excess_lower, _ = difference_bounds(candidate, baseline, alpha / 2, allowed, MEAN_TUNED_FOR)
        mean_ratio = float(np.mean(candidate) / max(np.mean(baseline), 1e-12))
        values.update(mean_ratio=mean_ratio, mean_excess_ms=excess * 1000, mean_excess_lower_ms=excess_lower * 1000)
        if excess_lower > 1e-9:   # a nanosecond: rounding of equal latencies is no slowdown
            findings.failed.append(f"the candidate's mean latency is {signed_percent(mean_ratio)} on the baseline's, "
                                   f"beyond the {signed_percent(allowed)} margin (by at least "
                                   f"{excess_lower * 1000:.1f} ms)")
        share, share_lower, _, above = exceedance_bounds(candidate, baseline, q, alpha / 4, allowed)
        values.update(tail_share=share, tail_share_lower=share_lower, tail_threshold_ms=above * 1000)
        if share_lower > 1 - q:
            findings.failed.append(f"{share * 100:.1f} % of candidate requests are slower than {_ms(above)} "
                                   f"({signed_percent(allowed)} on the baseline's p95), more than "
                                   f"{(1 - q) * 100:.0f} % (lower bound {share_lower * 100:.1f} %)")
        if ratio_lower > allowed:
            findings.failed.append(f"candidate p95 is {signed_percent(ratio)} on the baseline's, beyond the "
                                   f"{signed_percent(allowed)} margin (lower bound {signed_percent(ratio_lower)})")
        elif ratio_upper > allowed:
            findings.unproven.append(f"candidate p95 {signed_percent(ratio)} on the baseline's, not yet shown within "
                                     f"{signed_percent(allowed)} (upper bound "
                                     f"{signed_percent(ratio_upper) if math.isfinite(ratio_upper) else 'unbounded'})")
        else:
            findings.fine.append(f"candidate p95 {signed_percent(ratio)} on the baseline's "
                                 f"(upper bound {signed_percent(ratio_upper)})")
    ceiling = f"{t.max_p95_s * 1000:.0f} ms"
    if cand_low >= t.max_p95_s:
        findings.failed.append(f"candidate p95 {_ms(p95_candidate)} is over the {ceiling} ceiling "
                               f"(lower bound {_ms(cand_low)})")
        headline = {"statistic": p95_candidate, "bound": cand_low, "limit": t.max_p95_s}
    elif cand_high >= t.max_p95_s:
        findings.unproven.append(f"candidate p95 {_ms(p95_candidate)} not yet shown under {ceiling} "
                                 f"(upper bound {_ms(cand_high)})")
    else:
        findings.fine.append(f"candidate p95 {_ms(p95_candidate)} under {ceiling}"
                             + ("" if compared else " (no baseline traffic: ceiling only)"))
    if not findings.failed:
        short = [f"{name} has {len(x)} of {t.min_samples} latency samples" for name, x in judged
                 if len(x) < t.min_samples]
        findings.unproven.extend(short)
    return findings.result(NAME, Outcome.ROLLBACK, values, limits, **headline)
