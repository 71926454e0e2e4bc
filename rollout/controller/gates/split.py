"""Sample ratio: did the split send the candidate the share the flag asks for?

A chi-square goodness-of-fit test of the assignments against the target split, at a strict
alpha (0.001, as A/B platforms use for sample ratio mismatch checks). The controller looks at
the same growing counts every few minutes, and a fixed-sample test checked that often
crosses any alpha by chance sooner or later (about 1 % of healthy stages in our benchmark
at 36 looks; more at hundreds). So a mismatch must also hold under the sequential form of
the test (Lindon & Malek's Dirichlet-multinomial Bayes factor, "Anytime-Valid Inference for
Multinomial Count Data", 2022): by Ville's inequality its p-value = 1 / Bayes factor stays
below alpha with probability at most alpha however many times it is read. A mismatch means the
samples the other gates compare are not the populations the flag describes (a guard
diverting users, lost analytics rows, a bucketing change), so every comparison is suspect:
the rollout pauses for a person; it neither advances nor rolls back on this alone.

Count randomisation units: routing is sticky per user, so one heavy user moves many
requests at once and request counts vary more than the test assumes; distinct users fit it.
"""

from __future__ import annotations

import math

from scipy.special import gammaln  # type: ignore[import-untyped]  # scipy ships no types
from scipy.stats import chisquare  # type: ignore[import-untyped]  # scipy ships no types

from rollout.controller.evidence import Evidence
from rollout.controller.gates.result import GateResult, GateStatus, percent
from rollout.controller.outcome import Outcome
from rollout.controller.thresholds import Thresholds

NAME = "sample_ratio"
MIN_EXPECTED = 5        # the chi-square approximation needs about five expected in every cell
PRIOR_STRENGTH = 100.0  # Dirichlet concentration around the target split (Lindon & Malek's default)


def sequential_p_value(counts: list[int], target: list[float], strength: float = PRIOR_STRENGTH) -> float:
    """Always-valid p-value of "the counts follow `target`": 1 / the Dirichlet-multinomial Bayes factor."""
    prior = [strength * share for share in target]
    n = sum(counts)
    log_factor = (gammaln(strength) - gammaln(strength + n)
                  + sum(gammaln(a + x) - gammaln(a) - x * math.log(share)
                        for a, x, share in zip(prior, counts, target, strict=False)))
    return float(min(1.0, math.exp(-log_factor)))


def sample_ratio_gate(evidence: Evidence, thresholds: Thresholds) -> GateResult:
    v1, v2 = evidence.v1.assignments, evidence.v2.assignments
    total = v1 + v2
    share = evidence.candidate_share / 100
    limits = {"srm_alpha": thresholds.srm_alpha, "target_share_v2": share}
    values: dict[str, object] = {"assigned_v1": v1, "assigned_v2": v2,
                                 "observed_share_v2": v2 / total if total else None}
    if share in (0.0, 1.0):
        stray, other = (v2, "the candidate") if share == 0 else (v1, "the baseline")
        values.update(p_value=0.0 if stray else 1.0, sequential_p_value=0.0 if stray else 1.0)
        if stray:
            return GateResult(NAME, GateStatus.FAILED, Outcome.PAUSE,
                              f"{stray} assignments to {other} at a {percent(share, 0)} target", values, limits)
        if total == 0:
            return GateResult(NAME, GateStatus.NOT_ENOUGH_DATA, Outcome.PAUSE, "no assignments yet", values, limits)
        return GateResult(NAME, GateStatus.PASSED, Outcome.PAUSE, f"all {total} assignments as targeted",
                          values, limits)
    expected = [total * (1 - share), total * share]
    if min(expected) < MIN_EXPECTED:
        return GateResult(NAME, GateStatus.NOT_ENOUGH_DATA, Outcome.PAUSE,
                          f"{total} assignments: too few to check the split", values, limits)
    p_value = float(chisquare([v1, v2], expected).pvalue)
    sequential = sequential_p_value([v1, v2], [1 - share, share])
    values.update(p_value=p_value, sequential_p_value=sequential)
    observed = f"the candidate got {percent(v2 / total, 2)} of {total} assignments against {percent(share, 2)}"
    if p_value < thresholds.srm_alpha and sequential < thresholds.srm_alpha:
        return GateResult(NAME, GateStatus.FAILED, Outcome.PAUSE,
                          f"{observed} (chi-square p = {p_value:.1e}, sequential p = {sequential:.1e}): the split "
                          "is not what the flag says; check guards, lost analytics rows and the bucketing group",
                          values, limits)
    return GateResult(NAME, GateStatus.PASSED, Outcome.PAUSE,
                      f"{observed} (chi-square p = {p_value:.2g}, sequential p = {sequential:.2g})", values, limits)
