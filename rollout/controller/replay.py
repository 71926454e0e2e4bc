"""Replay: judge looks again with the gate code as it is now, and say what it would have decided.

The core is `rejudge`: looks in, verdicts out, with the gate list and (optionally) a plan as
parameters, so one function serves both `rollout replay` (the controller's own past looks, each
with the plan and thresholds stored with it) and `rollout aa` (looks built from random splits of
real users, `rollout.controller.aa`). A plan given to `rejudge` replaces each look's own plan.

`stored_looks` rebuilds the controller's evaluations since a time from `rollout_decisions`: the
window, the percentage and the plan of each, the facts it stated then (breaker, alerts, coverage,
analytics), and the evidence read again from query_log by the controller's own collector for that
window. The relevance sources are not windowed by an end time, so a replay cannot see them as they
were: it judges the similarity quality gate in the relevance gate's place (`REPLAYED_GATES`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from psycopg_pool import ConnectionPool

from rollout.controller.collector import EvidenceCollector, Facts
from rollout.controller.evidence import Evidence
from rollout.controller.gates.registry import GATES, Gate
from rollout.controller.outcome import Outcome
from rollout.controller.plan import RolloutPlan
from rollout.controller.thresholds import Thresholds
from rollout.controller.verdict import Verdict, judge


def replayable(gates: Iterable[Gate]) -> tuple[Gate, ...]:
    """The gates a replay can judge again: all but the relevance gate (see the module's docstring)."""
    return tuple(gate for gate in gates if gate.name != "relevance")


REPLAYED_GATES: tuple[Gate, ...] = replayable(GATES)

_EVALUATIONS = """
    SELECT id, decided_at, action, percentage_before, window_started_at, verdict, evidence, plan
    FROM rollout_decisions
    WHERE kind = 'evaluation' AND verdict IS NOT NULL AND decided_at >= %(since)s AND decided_at < %(until)s
    ORDER BY decided_at, id"""


@dataclass(frozen=True)
class Look:
    """One look to judge: its evidence, the plan it is judged under, and what was decided then (if anything)."""

    label: str
    evidence: Evidence
    plan: RolloutPlan
    decided: str | None = None


@dataclass(frozen=True)
class Judged:
    look: Look
    verdict: Verdict

    @property
    def changed(self) -> bool:
        """The replayed outcome differs from the one decided then."""
        return self.look.decided is not None and self.look.decided != self.verdict.outcome.value

    def line(self) -> str:
        """One line: the look, what was decided then, what the gates decide now, and why."""
        then = f"decided {self.look.decided}, " if self.look.decided is not None else ""
        mark = " (changed)" if self.changed else ""
        return (f"{self.look.label}  {self.look.evidence.percentage:g} %  {then}replayed "
                f"{self.verdict.outcome.value}{mark}: {self.verdict.reason}")

    def to_dict(self) -> dict[str, Any]:
        return {"look": self.look.label, "percentage": self.look.evidence.percentage, "decided": self.look.decided,
                "replayed": self.verdict.outcome.value, "changed": self.changed, "verdict": self.verdict.to_dict()}


def rejudge(looks: Iterable[Look], gates: tuple[Gate, ...] = GATES,
            plan: RolloutPlan | None = None) -> Iterator[Judged]:
    """Each look's verdict from `gates`, under `plan` when given (a plan file), else the look's own plan."""
    for look in looks:
        yield Judged(look, judge(look.evidence, plan or look.plan, gates))


def is_false_decision(outcome: Outcome) -> bool:
    """What a look of two equal arms must never decide: a rollback, or a pause for a person."""
    return outcome in (Outcome.ROLLBACK, Outcome.PAUSE)


def stored_plan(data: Mapping[str, Any]) -> RolloutPlan:
    """The plan stored with a decision (fields added since take their defaults; fields gone are ignored)."""
    known = {f.name for f in fields(Thresholds)}
    thresholds = Thresholds(**{k: v for k, v in dict(data.get("thresholds") or {}).items() if k in known})
    names = {f.name for f in fields(RolloutPlan)} - {"thresholds"}
    values = {k: v for k, v in data.items() if k in names}
    if "stages" in values:
        values["stages"] = tuple(values["stages"])
    return RolloutPlan(**values, thresholds=thresholds)


def _facts(summary: Mapping[str, Any] | None) -> Facts:
    stored = dict((summary or {}).get("facts") or {})
    return {"coverage_complete": bool(stored.get("coverage_complete", True)),
            "coverage_detail": str(stored.get("coverage_detail", "")),
            "breaker_closed": bool(stored.get("breaker_closed", True)),
            "breaker_detail": str(stored.get("breaker_detail", "")),
            "tripping_alerts": tuple(stored.get("tripping_alerts", ())),
            "analytics_enabled": bool(stored.get("analytics_enabled", True))}


def stored_looks(pool: ConnectionPool, collector: EvidenceCollector, since: datetime,
                 until: datetime) -> Iterator[Look]:
    """The controller's evaluations in [since, until), each with its evidence read again from query_log."""
    with pool.connection() as conn:
        rows = conn.execute(_EVALUATIONS, {"since": since, "until": until}).fetchall()
    for _id, decided_at, _action, percentage, window_started_at, verdict, summary, plan_data in rows:
        plan = stored_plan(plan_data)
        started = window_started_at.timestamp() if window_started_at else float(verdict["window_started_at"])
        evaluated = float(verdict.get("evaluated_at") or decided_at.timestamp())
        collected = collector.collect(float(percentage), started, evaluated, plan.critical_window_s,
                                      facts=_facts(summary))
        yield Look(decided_at.isoformat(timespec="seconds"), collected.evidence, plan, decided=verdict["outcome"])
