"""The gate registry: every gate the verdict runs, as data.

Each entry says what the gate is for and how it is judged: its role (a `guardrail` may roll
back, a `signal` may only hold, a `health` check pauses for a person or holds with its reason),
the evidence source it reads, the statistic, the thresholds (names of `Thresholds` fields, which
the dashboard's success criteria read too), and what "no data" means for it. The verdict iterates
`GATES`, skipping an entry whose `applies` says the evidence is not for it: the quality gate
is `relevance` when relevance evidence was gathered (ROLLOUT_QUALITY_GATE=relevance), else
`quality` (the similarity floor and shadow overlap). A new gate is one module and one entry here.

The rollback alpha is shared out among the statistical guardrails by their `alpha_shares`
(Bonferroni): each one's confidence sequences hold at every look with probability 1 - its
share, so the chance that any of them rolls back a healthy candidate in a stage is at most
`rollback_alpha`, however often the controller looks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from rollout.controller.evidence import Evidence
from rollout.controller.gates.consistency import consistency_gate
from rollout.controller.gates.facts import alerts_gate, breaker_gate, coverage_gate, stage_time_gate
from rollout.controller.gates.failures import critical_errors_gate, error_rate_gate
from rollout.controller.gates.health import analytics_gate, crossover_gate, traffic_gate
from rollout.controller.gates.latency import latency_gate
from rollout.controller.gates.losses import lost_rows_gate
from rollout.controller.gates.quality import quality_gate
from rollout.controller.gates.relevance import RelevanceEvidence, RelevancePolicy, relevance_gate
from rollout.controller.gates.result import GateResult, GateStatus
from rollout.controller.gates.split import sample_ratio_gate
from rollout.controller.outcome import Outcome
from rollout.controller.plan import RolloutPlan


class Role(StrEnum):
    GUARDRAIL = "guardrail"   # a failure rolls back
    SIGNAL = "signal"         # a failure holds the stage
    HEALTH = "health"         # the evidence itself is in doubt: a failure pauses for a person

    @property
    def on_failure(self) -> Outcome:
        return {Role.GUARDRAIL: Outcome.ROLLBACK, Role.SIGNAL: Outcome.HOLD, Role.HEALTH: Outcome.PAUSE}[self]


Check = Callable[[Evidence, RolloutPlan, float], GateResult]


@dataclass(frozen=True)
class Gate:
    name: str
    role: Role
    source: str                  # where its evidence comes from
    statistic: str               # what it computes, in a few words
    thresholds: tuple[str, ...]  # the `Thresholds` fields it reads
    no_data: str                 # what it does without data
    check: Check                 # (evidence, plan, its share of the rollback alpha) -> result
    statistical: bool = False    # judged only when the evidence is consistent
    alpha_shares: int = 0        # its part of the rollback alpha (statistical guardrails)
    applies: Callable[[Evidence], bool] = lambda evidence: True  # False: not run on this evidence
    # (value name, its threshold from the thresholds the gate stored with its result): what a chart of the
    # value over time draws as the line it must stay on the right side of
    limits: tuple[tuple[str, Callable[[Mapping[str, float]], float]], ...] = ()


def _relevance(evidence: Evidence, plan: RolloutPlan, alpha: float) -> GateResult:
    policy = RelevancePolicy.of(plan.thresholds, alpha)
    return relevance_gate(evidence.relevance or RelevanceEvidence(), policy)  # applies only when it is set


GATES: tuple[Gate, ...] = (
    Gate("consistency", Role.HEALTH, "evidence", "counts and samples that cannot be true", (),
         "passes: nothing to contradict", lambda e, p, a: consistency_gate(e)),
    Gate("stage_time", Role.SIGNAL, "clock", "time in the stage against the plan's minimum", (),
         "holds until the stage is old enough", lambda e, p, a: stage_time_gate(e, p.required_time_s(e.percentage))),
    Gate("breaker", Role.GUARDRAIL, "circuit breaker", "the candidate's breaker state", (),
         "passes: a breaker starts closed", lambda e, p, a: breaker_gate(e)),
    Gate("alerts", Role.GUARDRAIL, "alert webhook", "firing alerts labelled to roll back", (),
         "passes: no alert firing", lambda e, p, a: alerts_gate(e)),
    Gate("coverage", Role.SIGNAL, "embedding coverage", "categories the candidate has not embedded", (),
         "holds until coverage is counted", lambda e, p, a: coverage_gate(e)),
    Gate("analytics", Role.SIGNAL, "flags", "FF_ENABLE_QUERY_ANALYTICS", (),
         "holds, saying analytics is off", lambda e, p, a: analytics_gate(e)),
    Gate("traffic", Role.SIGNAL, "query_log", "requests per version after the plan's grace period", (),
         "holds, saying which version has no traffic", lambda e, p, a: traffic_gate(e, p.traffic_grace_s)),
    Gate("lost_rows", Role.SIGNAL, "query_log_losses", "share of the window's rows the writers lost",
         ("max_lost_row_share",), "passes: no row lost", lambda e, p, a: lost_rows_gate(e, p.thresholds)),
    Gate("crossover", Role.SIGNAL, "query_log users", "share of users routed to both versions",
         ("max_crossover_share",), "passes: no users seen", lambda e, p, a: crossover_gate(e, p.thresholds)),
    Gate("sample_ratio", Role.HEALTH, "query_log assignments",
         "chi-square and Dirichlet-multinomial sequential p-value of the split", ("srm_alpha",),
         "holds: too few assignments to check", lambda e, p, a: sample_ratio_gate(e, p.thresholds),
         statistical=True),
    Gate("errors", Role.GUARDRAIL, "query_log", "candidate error rate, beta-binomial confidence sequence",
         ("max_error_rate", "advance_confidence"), "holds: no candidate requests yet",
         lambda e, p, a: error_rate_gate(e, p.thresholds, a), statistical=True, alpha_shares=1,
         limits=(("error_rate_candidate", lambda t: t["max_error_rate"]),)),
    Gate("critical_errors", Role.SIGNAL, "query_log", "candidate answers nobody gave in the critical window",
         ("max_critical_errors",), "passes: none counted",
         lambda e, p, a: critical_errors_gate(e, p.thresholds, p.critical_window_s), statistical=True),
    Gate("latency", Role.GUARDRAIL, "query_log",
         "p95 and mean ratio candidate/baseline; quantile, tail-exceedance and mean confidence sequences",
         ("latency_margin", "max_p95_s", "latency_quantile", "min_samples", "min_samples_to_roll_back",
          "advance_confidence"), "holds until both versions have samples",
         lambda e, p, a: latency_gate(e, p.thresholds, a), statistical=True, alpha_shares=2,
         limits=(("p95_ratio", lambda t: 1 + t["latency_margin"]), ("p95_candidate_ms", lambda t: t["max_p95_ms"]),
                 ("mean_excess_ms", lambda t: 0.0))),
    Gate("quality", Role.GUARDRAIL, "query_log", "mean top similarity and shadow overlap, normal-mixture sequences",
         ("min_similarity", "min_shadow_overlap", "min_samples", "min_samples_to_roll_back", "min_shadow_samples",
          "advance_confidence"), "holds until the candidate has samples",
         lambda e, p, a: quality_gate(e, p.thresholds, a), statistical=True, alpha_shares=1,
         applies=lambda e: e.relevance is None,
         limits=(("similarity", lambda t: t["min_similarity"]), ("shadow_overlap", lambda t: t["min_shadow_overlap"]))),
    Gate("relevance", Role.GUARDRAIL, "judge, feedback, probes, golden set",
         "candidate minus baseline per source and category, normal-mixture sequences",
         ("relevance_margin", "advance_confidence"), "holds, saying no source has data", _relevance,
         statistical=True, alpha_shares=1, applies=lambda e: e.relevance is not None),
)


def threshold_of(gate_name: str, value: str, thresholds: Mapping[str, float]) -> float | None:
    """The threshold a gate's `value` is judged against, from the `thresholds` it stored; None when the registry
    names none for it (or the stored thresholds lack what it needs)."""
    gate = next((g for g in GATES if g.name == gate_name), None)
    limit = dict(gate.limits).get(value) if gate is not None else None
    try:
        return float(limit(thresholds)) if limit is not None else None
    except (KeyError, TypeError, ValueError):
        return None


def gate_alpha(gate: Gate, rollback_alpha: float, gates: tuple[Gate, ...] = GATES) -> float:
    """This gate's share of the rollback alpha (0 for a gate that spends none), among `gates` (those that apply)."""
    total = sum(g.alpha_shares for g in gates)
    return rollback_alpha * gate.alpha_shares / total if total else 0.0


def alpha_share(name: str, rollback_alpha: float, evidence: Evidence, gates: tuple[Gate, ...] = GATES) -> float:
    """The alpha the verdict gives gate `name` on `evidence` (shared among the gates that apply to it), so a
    reading outside the controller (the dashboard's) holds the same bounds."""
    applying = tuple(g for g in gates if g.applies(evidence))
    return next(gate_alpha(g, rollback_alpha, applying) for g in applying if g.name == name)


def run(gate: Gate, evidence: Evidence, plan: RolloutPlan, gates: tuple[Gate, ...] = GATES) -> GateResult:
    """One gate's result, its failure outcome set by its role."""
    result = gate.check(evidence, plan, gate_alpha(gate, plan.thresholds.rollback_alpha, gates))
    return replace(result, name=gate.name, on_failure=gate.role.on_failure)


def skipped(gate: Gate, reason: str) -> GateResult:
    return GateResult(gate.name, GateStatus.SKIPPED, gate.role.on_failure, reason)
