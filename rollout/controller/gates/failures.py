"""Failures: V2's error rate with exact (Clopper-Pearson) bounds, and V2's critical errors.

Proving an error rate below 0.1 % takes thousands of requests (with no error at all, 2,995
at 95 %), while proving one far above it takes a few hundred. So the rule is three-way:
- roll back when the (1 - alpha) lower bound is at or above the limit: clearly above;
- pass when the `advance_confidence` upper bound is below the limit: shown to comply;
- otherwise hold and keep counting.
The exact binomial bound is valid at any count, so this gate may roll back before the
stage has its minimum samples; it never passes before the data proves compliance.

Critical errors (answers the user never got) follow the seed's rule for advancing: none in
the critical window (24 h). They hold the stage rather than roll it back.
"""

from __future__ import annotations

from scipy.stats import beta

from rollout.controller.evidence import Evidence
from rollout.controller.gates.result import GateResult, GateStatus, percent
from rollout.controller.outcome import Outcome
from rollout.controller.thresholds import Thresholds

ERRORS = "errors"
CRITICAL = "critical_errors"


def rate_bounds(errors: int, requests: int, lower_confidence: float, upper_confidence: float) -> tuple[float, float]:
    """One-sided Clopper-Pearson bounds of an error rate: (lower at `lower_confidence`, upper at `upper_confidence`)."""
    lower = float(beta.ppf(1 - lower_confidence, errors, requests - errors + 1)) if errors > 0 else 0.0
    upper = float(beta.ppf(upper_confidence, errors + 1, requests - errors)) if errors < requests else 1.0
    return lower, upper


def error_rate_gate(evidence: Evidence, thresholds: Thresholds) -> GateResult:
    t = thresholds
    limit = t.max_error_rate
    v1, v2 = evidence.v1, evidence.v2
    limits = {"max_error_rate": limit, "rollback_alpha": t.rollback_alpha, "advance_confidence": t.advance_confidence}
    values: dict[str, object] = {"requests_v2": v2.requests, "errors_v2": v2.errors,
                                 "requests_v1": v1.requests, "errors_v1": v1.errors,
                                 "error_rate_v1": v1.errors / v1.requests if v1.requests else None}
    if v2.requests == 0:
        return GateResult(ERRORS, GateStatus.NOT_ENOUGH_DATA, Outcome.ROLLBACK, "no V2 requests yet", values, limits)
    rate = v2.errors / v2.requests
    lower, upper = rate_bounds(v2.errors, v2.requests, 1 - t.rollback_alpha, t.advance_confidence)
    values.update(error_rate_v2=rate, error_rate_v2_lower=lower, error_rate_v2_upper=upper)
    shown = f"V2 error rate {percent(rate, 3)} ({v2.errors} of {v2.requests})"
    if lower >= limit:
        return GateResult(ERRORS, GateStatus.FAILED, Outcome.ROLLBACK,
                          f"{shown} is above {percent(limit, 2)} (lower bound {percent(lower, 3)})", values, limits)
    if upper >= limit:
        return GateResult(ERRORS, GateStatus.NOT_ENOUGH_DATA, Outcome.ROLLBACK,
                          f"{shown} not yet shown below {percent(limit, 2)} (upper bound {percent(upper, 3)})",
                          values, limits)
    return GateResult(ERRORS, GateStatus.PASSED, Outcome.ROLLBACK,
                      f"{shown} below {percent(limit, 2)} (upper bound {percent(upper, 3)})", values, limits)


def critical_errors_gate(evidence: Evidence, thresholds: Thresholds, window_s: float) -> GateResult:
    count, allowed = evidence.v2.critical_errors, thresholds.max_critical_errors
    values = {"critical_errors_v2": count, "critical_errors_v1": evidence.v1.critical_errors}
    limits = {"max_critical_errors": allowed, "critical_window_s": window_s}
    within = f"in the last {window_s / 3600:g} h"
    if count > allowed:
        return GateResult(CRITICAL, GateStatus.FAILED, Outcome.HOLD,
                          f"{count} critical V2 errors {within}; advancing needs at most {allowed}", values, limits)
    return GateResult(CRITICAL, GateStatus.PASSED, Outcome.HOLD, f"{count} critical V2 errors {within}",
                      values, limits)
