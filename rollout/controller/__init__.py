"""The staged rollout's judgement: evidence in, gates, a verdict, and the plan's state transitions.

Pure code, no I/O: the controller process gathers the evidence and carries out transitions.
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
