"""The verdict: every gate's answer combined into one outcome that explains itself.

The gates come from the registry (`rollout.controller.gates.registry`), in its order. The
combination is the safe choice: rollback beats pause beats hold beats advance. Rollback
wins over pause because going back to the baseline is always safe for users, while waiting
for a person is not. When the evidence is inconsistent, the statistical gates are not run at all
(their numbers would be meaningless); the facts (breaker, alerts, coverage) still are.

`Verdict.to_dict()` is what the controller stores in `rollout_decisions`; `from_dict`
reads it back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rollout.controller.evidence import Evidence
from rollout.controller.gates import GateResult, GateStatus
from rollout.controller.gates.registry import GATES, Gate, run, skipped
from rollout.controller.outcome import Outcome, most_severe
from rollout.controller.plan import RolloutPlan


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

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome.value, "reason": self.reason, "percentage": self.percentage,
                "window_started_at": self.window_started_at, "evaluated_at": self.evaluated_at,
                "gates": [g.to_dict() for g in self.gates]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        return cls(outcome=Outcome(data["outcome"]), reason=data["reason"], percentage=float(data["percentage"]),
                   window_started_at=float(data["window_started_at"]), evaluated_at=float(data["evaluated_at"]),
                   gates=tuple(GateResult.from_dict(g) for g in data["gates"]))


def judge(evidence: Evidence, plan: RolloutPlan, gates: tuple[Gate, ...] = GATES) -> Verdict:
    """Run every gate of the registry that applies to `evidence` under `plan` and combine their answers."""
    gates = tuple(gate for gate in gates if gate.applies(evidence))
    results: list[GateResult] = []
    trusted = True
    for gate in gates:
        if gate.statistical and not trusted:
            results.append(skipped(gate, "not judged: the evidence is inconsistent"))
            continue
        result = run(gate, evidence, plan, gates)
        if gate.name == "consistency" and result.status is GateStatus.FAILED:
            trusted = False
        results.append(result)
    return combine(results, evidence.percentage, evidence.window_started_at, evidence.evaluated_at)


def combine(gates: Sequence[GateResult], percentage: float, window_started_at: float,
            evaluated_at: float) -> Verdict:
    """The verdict of these gate results: the same results (a stored verdict's) give the same decision."""
    outcome = most_severe(g.outcome for g in gates)
    return Verdict(outcome=outcome, reason=_reason(outcome, list(gates)), percentage=percentage,
                   window_started_at=window_started_at, evaluated_at=evaluated_at, gates=tuple(gates))


def _reason(outcome: Outcome, gates: list[GateResult]) -> str:
    warnings = "".join(f"; warning: {g.name}: {g.reason}" for g in gates if g.status is GateStatus.WARNING)
    if outcome is Outcome.ADVANCE:
        judged = sum(g.status is GateStatus.PASSED for g in gates)
        return f"advance: all {judged} gates passed" + warnings
    return f"{outcome.value}: " + "; ".join(f"{g.name}: {g.reason}" for g in gates
                                            if g.outcome is outcome and g.status is not GateStatus.WARNING) + warnings
