"""The verdict: every gate's answer combined into one outcome that explains itself.

The combination is the safe choice: rollback beats pause beats hold beats advance. Rollback
wins over pause because going back to V1 is always safe for users, while waiting for a
person is not. When the evidence is inconsistent, the statistical gates are not run at all
(their numbers would be meaningless); the facts (breaker, alerts, coverage) still are.

`Verdict.to_dict()` is what the controller stores in `rollout_decisions`; `from_dict`
reads it back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rollout.controller.evidence import Evidence
from rollout.controller.gates import (
    GateResult,
    GateStatus,
    alerts_gate,
    breaker_gate,
    consistency_gate,
    coverage_gate,
    critical_errors_gate,
    error_rate_gate,
    latency_gate,
    quality_gate,
    sample_ratio_gate,
    stage_time_gate,
)
from rollout.controller.gates.relevance import NAME as RELEVANCE, RelevancePolicy, relevance_gate
from rollout.controller.outcome import Outcome, most_severe
from rollout.controller.plan import RolloutPlan

# the gates that read samples and counts, with what their failure would ask for
STATISTICAL = (("sample_ratio", Outcome.PAUSE), ("errors", Outcome.ROLLBACK), ("critical_errors", Outcome.HOLD),
               ("latency", Outcome.ROLLBACK), ("quality", Outcome.ROLLBACK))


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str
    percentage: float
    window_started_at: float
    evaluated_at: float
    gates: tuple[GateResult, ...]

    def gate(self, name: str) -> GateResult:
        for result in self.gates:
            if result.name == name:
                return result
        raise KeyError(f"no gate named {name!r}; gates: {', '.join(g.name for g in self.gates)}")

    def deciding(self) -> list[GateResult]:
        """The gates that asked for this outcome (none for advance)."""
        if self.outcome is Outcome.ADVANCE:
            return []
        return [g for g in self.gates if g.outcome is self.outcome]

    def to_dict(self) -> dict:
        return {"outcome": self.outcome.value, "reason": self.reason, "percentage": self.percentage,
                "window_started_at": self.window_started_at, "evaluated_at": self.evaluated_at,
                "gates": [g.to_dict() for g in self.gates]}

    @classmethod
    def from_dict(cls, data: Mapping) -> Verdict:
        return cls(outcome=Outcome(data["outcome"]), reason=data["reason"], percentage=float(data["percentage"]),
                   window_started_at=float(data["window_started_at"]), evaluated_at=float(data["evaluated_at"]),
                   gates=tuple(GateResult.from_dict(g) for g in data["gates"]))


def judge(evidence: Evidence, plan: RolloutPlan) -> Verdict:
    """Run every gate on `evidence` under `plan` and combine their answers."""
    t = plan.thresholds
    consistency = consistency_gate(evidence)
    gates = [consistency, stage_time_gate(evidence, plan.required_time_s(evidence.percentage)),
             breaker_gate(evidence), alerts_gate(evidence), coverage_gate(evidence)]
    if consistency.status is GateStatus.FAILED:
        quality = RELEVANCE if evidence.relevance is not None else "quality"
        gates += [GateResult(quality if name == "quality" else name, GateStatus.SKIPPED, on_failure,
                             "not judged: the evidence is inconsistent") for name, on_failure in STATISTICAL]
    else:
        gates += [sample_ratio_gate(evidence, t), error_rate_gate(evidence, t),
                  critical_errors_gate(evidence, t, plan.critical_window_s),
                  latency_gate(evidence, t), _quality(evidence, t)]
    outcome = most_severe(g.outcome for g in gates)
    return Verdict(outcome=outcome, reason=_reason(outcome, gates), percentage=evidence.percentage,
                   window_started_at=evidence.window_started_at, evaluated_at=evidence.evaluated_at,
                   gates=tuple(gates))


def _quality(evidence: Evidence, t) -> GateResult:
    """The relevance gate when relevance evidence was gathered, else the similarity floor and overlap."""
    if evidence.relevance is None:
        return quality_gate(evidence, t)
    policy = RelevancePolicy(margin=t.relevance_margin, rollback_alpha=t.rollback_alpha,
                             advance_confidence=t.advance_confidence)
    return relevance_gate(evidence.relevance, policy)


def _reason(outcome: Outcome, gates: list[GateResult]) -> str:
    if outcome is Outcome.ADVANCE:
        judged = sum(g.status is GateStatus.PASSED for g in gates)
        return f"advance: all {judged} gates passed"
    return f"{outcome.value}: " + "; ".join(f"{g.name}: {g.reason}" for g in gates if g.outcome is outcome)
