"""Facts the caller states: time in the stage, the candidate's breaker, firing alerts, the candidate's coverage.

No statistics here: the breaker and the alerts already judged the candidate (and the router
already keeps it off while they do), so an open breaker or a tripping alert rolls the stage
back at once. Missing coverage and a young stage only hold.
"""

from __future__ import annotations

from rollout.controller.evidence import Evidence
from rollout.controller.gates.result import GateResult, GateStatus
from rollout.controller.outcome import Outcome


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 360 else f"{seconds:.0f} s"


def stage_time_gate(evidence: Evidence, required_s: float) -> GateResult:
    elapsed = evidence.window_s
    values, limits = {"time_in_stage_s": elapsed}, {"required_s": required_s}
    if elapsed < required_s:
        return GateResult("stage_time", GateStatus.NOT_ENOUGH_DATA, Outcome.HOLD,
                          f"{hours(elapsed)} of {hours(required_s)} in this stage", values, limits)
    return GateResult("stage_time", GateStatus.PASSED, Outcome.HOLD,
                      f"{hours(elapsed)} in this stage (needs {hours(required_s)})", values, limits)


def breaker_gate(evidence: Evidence) -> GateResult:
    values = {"closed": evidence.breaker_closed, "detail": evidence.breaker_detail}
    if not evidence.breaker_closed:
        detail = f" ({evidence.breaker_detail})" if evidence.breaker_detail else ""
        return GateResult("breaker", GateStatus.FAILED, Outcome.ROLLBACK,
                          f"the candidate's circuit breaker is not closed{detail}", values)
    return GateResult("breaker", GateStatus.PASSED, Outcome.ROLLBACK, "the candidate's circuit breaker is closed",
                      values)


def alerts_gate(evidence: Evidence) -> GateResult:
    firing = list(evidence.tripping_alerts)
    if firing:
        return GateResult("alerts", GateStatus.FAILED, Outcome.ROLLBACK,
                          f"tripping alert firing: {', '.join(firing)}", {"firing": firing})
    return GateResult("alerts", GateStatus.PASSED, Outcome.ROLLBACK, "no tripping alert firing", {"firing": firing})


def coverage_gate(evidence: Evidence) -> GateResult:
    values = {"complete": evidence.coverage_complete, "detail": evidence.coverage_detail}
    if not evidence.coverage_complete:
        detail = f": {evidence.coverage_detail}" if evidence.coverage_detail else ""
        return GateResult("coverage", GateStatus.FAILED, Outcome.HOLD,
                          f"the candidate has not embedded every category routed to it{detail}", values)
    return GateResult("coverage", GateStatus.PASSED, Outcome.HOLD, "the candidate covers every category routed to it",
                      values)
