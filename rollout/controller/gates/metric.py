"""Custom metric gates: a plan's own checks on a metric source's reading, as registry gates.

Each reads one `Reading` from the evidence (gathered by the plan's sources before the
verdict, so the gate itself fetches nothing and a stored decision can be judged again):

- counts (events of trials, e.g. errors of requests): the candidate's rate under the same
  beta-binomial confidence sequence as the error-rate gate, three-way: fail when the bound on
  the far side of the threshold is past it (at the gate's share of the rollback alpha, so a
  guardrail's rollbacks stay within the stage's alpha however often the controller looks),
  pass when the near bound at `advance_confidence` is inside, else hold;
- a value (a latency, a score): a plain comparison of the candidate's value with the
  threshold, and the reason says so: a single number carries no sample size to be sure with.

No data (the source failed, timed out, or found nothing) does what the plan says, and the
reason always names it: `hold` (the default), `pass` (a warning, repeated in the verdict's
reason), or `fail` (the role's failure: a guardrail rolls back).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from rollout.controller.evidence import Evidence
from rollout.controller.gates.registry import Gate, Role
from rollout.controller.gates.result import GateResult, GateStatus, JSONValue
from rollout.controller.plan import RolloutPlan
from rollout.controller.sequences import rate_bounds
from rollout.controller.sources.reading import Measurement, Reading
from rollout.controller.thresholds import Thresholds

QUERY_LOG = "query_log"   # the built-in source's name
Comparison = Literal["below", "above"]
NoDataMeaning = Literal["hold", "pass", "fail"]


@dataclass(frozen=True)
class MetricGate:
    """A custom gate as the plan declares it: the candidate's metric must stay `comparison` `threshold`."""

    name: str
    role: Literal["guardrail", "signal"]
    source: str
    query: str
    comparison: Comparison
    threshold: float
    total: str | None = None
    no_data: NoDataMeaning = "hold"
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "source": self.source, "query": self.query,
                "total": self.total, "comparison": self.comparison, "threshold": self.threshold,
                "no_data": self.no_data, "description": self.description}


def metric_gate(spec: MetricGate) -> Gate:
    """The registry entry of a custom gate: a guardrail spends one share of the rollback alpha; one on query_log
    is not judged when the consistency gate finds that evidence impossible, like the registry's statistical gates."""
    role = Role(spec.role)

    def check(evidence: Evidence, plan: RolloutPlan, alpha: float) -> GateResult:
        return judge_metric(spec, evidence.readings.get(spec.name), plan.thresholds, alpha)

    return Gate(spec.name, role, spec.source,
                f"candidate's {spec.query if spec.total is None else 'rate'} {spec.comparison} {spec.threshold:g} "
                "(rate: beta-binomial confidence sequence; value: plain comparison)",
                (), {"hold": "holds, saying why", "pass": "passes with a warning saying why",
                     "fail": f"fails ({role.on_failure.value})"}[spec.no_data],
                check, statistical=spec.source == QUERY_LOG, alpha_shares=1 if role is Role.GUARDRAIL else 0)


def _shown(measurement: Measurement | None) -> str | None:
    if measurement is None:
        return None
    if measurement.counted:
        return f"{measurement.events} of {measurement.trials}"
    return f"{measurement.value:g}"


def judge_metric(spec: MetricGate, reading: Reading | None, thresholds: Thresholds, alpha: float) -> GateResult:
    """The gate's result on its reading (None: nothing was read, e.g. a plan without that source)."""
    on_failure = Role(spec.role).on_failure
    limits: dict[str, JSONValue] = {"comparison": spec.comparison, "threshold": spec.threshold, "no_data": spec.no_data}
    values: dict[str, JSONValue] = {"source": spec.source}
    if reading is not None:
        values.update({f"version_{role}": name for role, name in reading.versions.items()})
        values.update({role: _shown(m) for role, m in reading.measurements.items()})
    missing = "nothing was read" if reading is None else reading.missing
    candidate = None if reading is None else reading.candidate
    if missing is None and candidate is not None and candidate.counted and not candidate.trials:
        missing = "the candidate has no trials in the window (0 counted)"
    if missing is not None or candidate is None:
        reason = f"no data from {spec.source}: {missing or 'no candidate measurement'}"
        if spec.no_data == "pass":
            return GateResult(spec.name, GateStatus.WARNING, on_failure, f"{reason}; passes as the plan says",
                              values, limits, limit=spec.threshold)
        if spec.no_data == "fail":
            return GateResult(spec.name, GateStatus.FAILED, on_failure, f"{reason}; counted as a failure as the plan "
                              "says", values, limits, limit=spec.threshold)
        return GateResult(spec.name, GateStatus.NOT_ENOUGH_DATA, on_failure, reason, values, limits,
                          limit=spec.threshold)
    if candidate.counted:
        return _rate(spec, candidate, thresholds, alpha or thresholds.rollback_alpha, values, limits)
    return _value(spec, candidate, values, limits)


def _rate(spec: MetricGate, candidate: Measurement, thresholds: Thresholds, alpha: float,
          values: dict[str, JSONValue], limits: dict[str, JSONValue]) -> GateResult:
    events, trials = candidate.events or 0, candidate.trials or 0
    rate, limit = events / trials, spec.threshold
    centre = min(max(limit, 1e-6), 1 - 1e-6)
    sure = rate_bounds(events, trials, alpha, centre=centre)                                  # to fail
    likely = rate_bounds(events, trials, 1 - thresholds.advance_confidence, centre=centre)   # to pass
    below = spec.comparison == "below"
    bound = sure[0] if below else sure[1]
    values.update(rate_candidate=rate, rate_lower=sure[0], rate_upper=sure[1])
    limits["alpha"] = alpha
    limits["advance_confidence"] = thresholds.advance_confidence
    shown = f"candidate rate {rate:.4g} ({events} of {trials})"
    headline: Mapping[str, float] = {"statistic": rate, "bound": bound, "limit": limit}
    side = "above" if below else "below"
    if (below and sure[0] >= limit) or (not below and sure[1] <= limit):
        return GateResult(spec.name, GateStatus.FAILED, Role(spec.role).on_failure,
                          f"{shown} is {side} {limit:g} (confidence-sequence bound {bound:.4g})", values, limits,
                          **headline)
    near = likely[1] if below else likely[0]
    if (below and near < limit) or (not below and near > limit):
        return GateResult(spec.name, GateStatus.PASSED, Role(spec.role).on_failure,
                          f"{shown} {spec.comparison} {limit:g} (bound {near:.4g})", values, limits, **headline)
    return GateResult(spec.name, GateStatus.NOT_ENOUGH_DATA, Role(spec.role).on_failure,
                      f"{shown} not yet shown {spec.comparison} {limit:g} (bound {near:.4g})", values, limits,
                      **headline)


def _value(spec: MetricGate, candidate: Measurement, values: dict[str, JSONValue],
           limits: dict[str, JSONValue]) -> GateResult:
    value, limit = candidate.value or 0.0, spec.threshold
    ok = value < limit if spec.comparison == "below" else value > limit
    plain = "a plain threshold comparison: the source gives a value, not counts"
    status = GateStatus.PASSED if ok else GateStatus.FAILED
    verb = spec.comparison if ok else f"not {spec.comparison}"
    return GateResult(spec.name, status, Role(spec.role).on_failure,
                      f"candidate {spec.query} = {value:g}, {verb} {limit:g} ({plain})", values, limits,
                      statistic=value, bound=value, limit=limit)
