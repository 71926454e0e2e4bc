"""The staged rollout: its judgement, and the process that carries it out.

The judgement is pure code, no I/O (evidence, gates, verdict, plan, state transitions; exported
here). The rest does the I/O around it: `collector` gathers the evidence from query_log, `store`
keeps the state and the decisions in PostgreSQL, `service` applies verdicts and people's commands
to the flags, `leader`, `notifier` and `process` make up `rollout controller`.
"""

from rollout.controller.evidence import Evidence, VersionEvidence
from rollout.controller.gates import GateResult, GateStatus
from rollout.controller.outcome import Outcome
from rollout.controller.plan import RolloutPlan
from rollout.controller.state import (
    Action,
    Command,
    RolloutState,
    Status,
    Transition,
    TransitionError,
    apply_command,
    apply_verdict,
)
from rollout.controller.thresholds import Thresholds
from rollout.controller.verdict import Verdict, judge

__all__ = [
    "Action", "Command", "Evidence", "GateResult", "GateStatus", "Outcome", "RolloutPlan", "RolloutState",
    "Status", "Thresholds", "Transition", "TransitionError", "Verdict", "VersionEvidence", "apply_command",
    "apply_verdict", "judge",
]
