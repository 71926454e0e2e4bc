"""Quality: the candidate's mean top similarity stays above its floor, and the candidate agrees
with the baseline when shadow data exists.

The similarity floor applies to the candidate alone: two embedding models put cosine
similarities on different scales, so 0.74 against the baseline's 0.81 says nothing by itself.
What can be compared across models is what they return, so the shadow check uses the overlap
of the two versions' top-k documents for the same query.

Both checks use confidence sequences for the mean (`rollout.controller.sequences.mean_bounds`,
valid under continuous monitoring), each at half this gate's share of the rollback alpha: fail
when the upper bound is at or below the floor, pass when the `advance_confidence` lower bound
is above it. A clear drop may roll back from `min_samples_to_roll_back` on; passing still takes
the full `min_samples`.
"""

from __future__ import annotations

from rollout.controller.evidence import Evidence
from rollout.controller.gates.result import Findings, GateResult
from rollout.controller.outcome import Outcome
from rollout.controller.sequences import mean_bounds
from rollout.controller.thresholds import Thresholds

NAME = "quality"


def quality_gate(evidence: Evidence, thresholds: Thresholds, alpha: float) -> GateResult:
    t = thresholds
    limits = {"min_similarity": t.min_similarity, "min_shadow_overlap": t.min_shadow_overlap,
              "min_samples": t.min_samples, "min_samples_to_roll_back": t.min_samples_to_roll_back,
              "min_shadow_samples": t.min_shadow_samples,
              "alpha": alpha, "advance_confidence": t.advance_confidence}
    checks = [("mean top similarity", "similarity", evidence.candidate.top_similarities, t.min_similarity,
               t.min_samples_to_roll_back, t.min_samples)]
    overlaps = evidence.shadow_overlaps
    values: dict[str, object] = {"samples_similarity": len(evidence.candidate.top_similarities),
                                 "samples_shadow": len(overlaps)}
    if len(overlaps):
        checks.append(("shadow overlap with the baseline", "shadow_overlap", overlaps, t.min_shadow_overlap,
                       t.min_shadow_samples, t.min_shadow_samples))
    findings = Findings()
    headline: dict[str, float | None] = {"limit": t.min_similarity}
    for label, key, samples, floor, to_fail, to_pass in checks:
        if len(samples) < to_fail:
            findings.unproven.append(f"{label}: {len(samples)} of {to_pass} samples")
            continue
        mean, _, upper = mean_bounds(samples, alpha / 2)
        _, lower, _ = mean_bounds(samples, 1 - t.advance_confidence)
        values.update({key: mean, f"{key}_lower": lower, f"{key}_upper": upper})
        if key == "similarity" or upper <= floor:
            headline = {"statistic": mean, "bound": upper, "limit": floor}
        if upper <= floor:
            findings.failed.append(f"candidate {label} {mean:.3f} is below {floor:g} (upper bound {upper:.3f})")
        elif len(samples) < to_pass:
            findings.unproven.append(f"{label}: {len(samples)} of {to_pass} samples (mean {mean:.3f} so far)")
        elif lower <= floor:
            findings.unproven.append(f"candidate {label} {mean:.3f} not yet shown above {floor:g} "
                                     f"(lower bound {lower:.3f})")
        else:
            findings.fine.append(f"candidate {label} {mean:.3f} above {floor:g} (lower bound {lower:.3f})")
    if not len(overlaps):
        findings.fine.append("no shadow data")
    return findings.result(NAME, Outcome.ROLLBACK, values, limits, **headline)
