"""Quality: V2's mean top similarity stays above its floor, and V2 agrees with V1 when shadow data exists.

The similarity floor applies to V2 alone: two embedding models put cosine similarities on
different scales, so V2's 0.74 against V1's 0.81 says nothing by itself. What can be
compared across models is what they return, so the shadow check uses the overlap of the
two versions' top-k documents for the same query.

Both checks use Student-t bounds on the mean: fail when the (1 - alpha) upper bound is at
or below the floor, pass when the `advance_confidence` lower bound is above it. Similarity
does not warm up the way latency does (caches, index pages), so a clear drop may roll back
from `min_samples_to_roll_back` on; passing still takes the full `min_samples`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import t as student_t

from rollout.controller.evidence import Evidence
from rollout.controller.gates.result import Findings, GateResult
from rollout.controller.outcome import Outcome
from rollout.controller.thresholds import Thresholds

NAME = "quality"


def mean_bounds(values: np.ndarray, lower_confidence: float, upper_confidence: float) -> tuple[float, float, float]:
    """Mean, its one-sided lower bound at `lower_confidence`, its one-sided upper bound at `upper_confidence`."""
    n = len(values)
    mean = float(np.mean(values))
    spread = float(np.std(values, ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    return (mean, mean - student_t.ppf(lower_confidence, n - 1) * spread,
            mean + student_t.ppf(upper_confidence, n - 1) * spread)


def quality_gate(evidence: Evidence, thresholds: Thresholds) -> GateResult:
    t = thresholds
    limits = {"min_similarity": t.min_similarity, "min_shadow_overlap": t.min_shadow_overlap,
              "min_samples": t.min_samples, "min_samples_to_roll_back": t.min_samples_to_roll_back,
              "min_shadow_samples": t.min_shadow_samples,
              "rollback_alpha": t.rollback_alpha, "advance_confidence": t.advance_confidence}
    checks = [("mean top similarity", "similarity", evidence.v2.top_similarities, t.min_similarity,
               t.min_samples_to_roll_back, t.min_samples)]
    overlaps = evidence.shadow_overlaps
    values: dict[str, object] = {"samples_similarity": len(evidence.v2.top_similarities),
                                 "samples_shadow": len(overlaps)}
    if len(overlaps):
        checks.append(("shadow overlap with V1", "shadow_overlap", overlaps, t.min_shadow_overlap,
                       t.min_shadow_samples, t.min_shadow_samples))
    findings = Findings()
    for label, key, samples, floor, to_fail, to_pass in checks:
        if len(samples) < to_fail:
            findings.unproven.append(f"{label}: {len(samples)} of {to_pass} samples")
            continue
        mean, lower, upper = mean_bounds(samples, t.advance_confidence, 1 - t.rollback_alpha)
        values.update({key: mean, f"{key}_lower": lower, f"{key}_upper": upper})
        if upper <= floor:
            findings.failed.append(f"V2 {label} {mean:.3f} is below {floor:g} (upper bound {upper:.3f})")
        elif len(samples) < to_pass:
            findings.unproven.append(f"{label}: {len(samples)} of {to_pass} samples (mean {mean:.3f} so far)")
        elif lower <= floor:
            findings.unproven.append(f"V2 {label} {mean:.3f} not yet shown above {floor:g} "
                                     f"(lower bound {lower:.3f})")
        else:
            findings.fine.append(f"V2 {label} {mean:.3f} above {floor:g} (lower bound {lower:.3f})")
    if not len(overlaps):
        findings.fine.append("no shadow data")
    return findings.result(NAME, Outcome.ROLLBACK, values, limits)
