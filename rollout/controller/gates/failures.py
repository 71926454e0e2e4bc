"""Failures: the candidate's error rate under a confidence sequence, and its critical errors.

Proving an error rate below 0.1 % takes thousands of requests, while proving one far above
it takes a few hundred. So the rule is three-way:
- roll back when the sequence's lower bound (at this gate's share of the rollback alpha) is
  at or above the limit: clearly above;
- pass when its upper bound at `advance_confidence` is below the limit: shown to comply;
- otherwise hold and keep counting.
The bounds are a confidence sequence (`rollout.controller.sequences.rate_bounds`), valid at
every look, so this gate may roll back from the first requests on however often it is read.

Critical errors (answers the user never got) follow the seed's rule for advancing: none in
the critical window (24 h). They hold the stage rather than roll it back.
"""

from __future__ import annotations

from rollout.controller.evidence import Evidence
from rollout.controller.gates.result import GateResult, GateStatus, percent
from rollout.controller.outcome import Outcome
from rollout.controller.sequences import rate_bounds
from rollout.controller.thresholds import Thresholds

ERRORS = "errors"
CRITICAL = "critical_errors"


def error_rate_gate(evidence: Evidence, thresholds: Thresholds, alpha: float) -> GateResult:
    t = thresholds
    limit = t.max_error_rate
    baseline, candidate = evidence.baseline, evidence.candidate
    limits = {"max_error_rate": limit, "alpha": alpha, "advance_confidence": t.advance_confidence}
    values: dict[str, object] = {"requests_candidate": candidate.requests, "errors_candidate": candidate.errors,
                                 "requests_baseline": baseline.requests, "errors_baseline": baseline.errors,
                                 "error_rate_baseline": baseline.errors / baseline.requests
                                 if baseline.requests else None}
    if candidate.requests == 0:
        return GateResult(ERRORS, GateStatus.NOT_ENOUGH_DATA, Outcome.ROLLBACK, "no candidate requests yet",
                          values, limits, limit=limit)
    rate = candidate.errors / candidate.requests
    lower, _ = rate_bounds(candidate.errors, candidate.requests, alpha, centre=limit)
    _, upper = rate_bounds(candidate.errors, candidate.requests, 1 - t.advance_confidence, centre=limit)
    values.update(error_rate_candidate=rate, error_rate_candidate_lower=lower, error_rate_candidate_upper=upper)
    headline = {"statistic": rate, "bound": lower, "limit": limit}
    shown = f"candidate error rate {percent(rate, 3)} ({candidate.errors} of {candidate.requests})"
    if lower >= limit:
        return GateResult(ERRORS, GateStatus.FAILED, Outcome.ROLLBACK,
                          f"{shown} is above {percent(limit, 2)} (lower bound {percent(lower, 3)})", values, limits,
                          **headline)
    if upper >= limit:
        return GateResult(ERRORS, GateStatus.NOT_ENOUGH_DATA, Outcome.ROLLBACK,
                          f"{shown} not yet shown below {percent(limit, 2)} (upper bound {percent(upper, 3)})",
                          values, limits, **headline)
    return GateResult(ERRORS, GateStatus.PASSED, Outcome.ROLLBACK,
                      f"{shown} below {percent(limit, 2)} (upper bound {percent(upper, 3)})", values, limits,
                      **headline)


def critical_errors_gate(evidence: Evidence, thresholds: Thresholds, window_s: float) -> GateResult:
    count, allowed = evidence.candidate.critical_errors, thresholds.max_critical_errors
    values = {"critical_errors_candidate": count, "critical_errors_baseline": evidence.baseline.critical_errors}
    limits = {"max_critical_errors": allowed, "critical_window_s": window_s}
    within = f"in the last {window_s / 3600:g} h"
    headline = {"statistic": count, "bound": count, "limit": allowed}
    if count > allowed:
        return GateResult(CRITICAL, GateStatus.FAILED, Outcome.HOLD,
                          f"{count} critical candidate errors {within}; advancing needs at most {allowed}",
                          values, limits, **headline)
    return GateResult(CRITICAL, GateStatus.PASSED, Outcome.HOLD, f"{count} critical candidate errors {within}",
                      values, limits, **headline)
