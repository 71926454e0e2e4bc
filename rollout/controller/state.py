"""The rollout's state and its transitions: pure functions from (state, verdict or command) to a new state.

The controller process stays thin: it gathers evidence, calls `judge`, passes the verdict to
`apply_verdict`, and carries out the returned `Transition` (flag change, audit row,
notification). A person's command goes through `apply_command` the same way.

Statuses and what the controller does in each:
- idle: at 0 %, nothing to judge; `advance` or `resume` starts the first stage.
- running: judged every interval; advances, holds, pauses or rolls back by itself.
- held: a person holds it: judged, rolled back on a clear failure, never advanced; `resume`.
- paused: the data could not be trusted: like held, until a person resumes (with a new window).
- rolled_back: after a rollback: like held (a persisting failure rolls further back), until
  `resume`; the controller never climbs again into a failure on its own.
- complete: 100 % and stable for the plan's time: the baseline may be retired (nothing is dropped).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from flags import V2_PERCENTAGE, FlagError, definition
from rollout.controller.outcome import Outcome
from rollout.controller.plan import RolloutPlan
from rollout.controller.verdict import Verdict
from rollout.errors import RolloutError
from rollout.stages import RollbackTarget


class TransitionError(RolloutError):
    """A command that does not apply to the rollout's current state (the message says why)."""


class Status(StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    HELD = "held"
    PAUSED = "paused"
    ROLLED_BACK = "rolled_back"
    COMPLETE = "complete"


WATCHED = (Status.RUNNING, Status.HELD, Status.PAUSED, Status.ROLLED_BACK)  # judged every interval


class Action(StrEnum):
    ADVANCE = "advance"
    HOLD = "hold"
    RESUME = "resume"
    ROLLBACK = "rollback"
    SET = "set"


@dataclass(frozen=True)
class Command:
    """A person's instruction: `rollout stage advance|hold|resume|rollback|set PCT` or the admin API."""

    action: Action
    actor: str
    reason: str = ""
    percentage: float | None = None           # for set
    rollback_to: RollbackTarget | None = None  # for rollback; None: the plan's


@dataclass(frozen=True)
class RolloutState:
    percentage: float = 0.0
    status: Status = Status.IDLE
    stage_started_at: float = 0.0
    reason: str = ""

    def time_in_stage(self, now: float) -> float:
        return max(0.0, now - self.stage_started_at)

    def to_dict(self) -> dict[str, Any]:
        return {"percentage": self.percentage, "status": self.status.value,
                "stage_started_at": self.stage_started_at, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutState:
        return cls(percentage=float(data["percentage"]), status=Status(data["status"]),
                   stage_started_at=float(data["stage_started_at"]), reason=data.get("reason", ""))


@dataclass(frozen=True)
class Transition:
    """What to carry out: `after` replaces `before`; the flag changes when the percentage does."""

    before: RolloutState
    after: RolloutState
    cause: str        # "verdict" or "command"
    action: str       # the verdict's outcome or the command's action
    reason: str

    @property
    def percentage_changed(self) -> bool:
        return self.after.percentage != self.before.percentage

    @property
    def rolled_back(self) -> bool:
        """A rollback happened now: audit it and send the notification."""
        return self.action == Outcome.ROLLBACK.value and self.after.percentage < self.before.percentage

    def to_dict(self) -> dict[str, Any]:
        return {"before": self.before.to_dict(), "after": self.after.to_dict(), "cause": self.cause,
                "action": self.action, "reason": self.reason}


def _moved(percentage: float, status: Status, now: float, reason: str) -> RolloutState:
    """The state at a new percentage: its stage (and evidence window) starts now."""
    return RolloutState(percentage=percentage, status=status, stage_started_at=now, reason=reason)


def apply_verdict(plan: RolloutPlan, state: RolloutState, verdict: Verdict) -> Transition:
    """The controller's own step: what a verdict does to the rollout."""
    now, outcome = verdict.evaluated_at, verdict.outcome

    def result(after: RolloutState, reason: str) -> Transition:
        return Transition(state, after, "verdict", outcome.value, reason)

    if verdict.percentage != state.percentage or verdict.window_started_at != state.stage_started_at:
        return result(state, "ignored: the stage changed after this evidence was gathered")
    if state.status not in WATCHED:
        return result(state, f"ignored: the rollout is {state.status.value}")
    if outcome is Outcome.ROLLBACK:
        if state.percentage == 0:
            return result(state, "already at 0 %")
        target = plan.rollback_target(state.percentage)
        return result(_moved(target, Status.ROLLED_BACK, now, verdict.reason), verdict.reason)
    if outcome is Outcome.PAUSE and state.status is Status.RUNNING:
        return result(replace(state, status=Status.PAUSED, reason=verdict.reason), verdict.reason)
    if outcome is Outcome.ADVANCE and state.status is Status.RUNNING:
        following = plan.next_stage(state.percentage)
        if following is None:
            reason = f"complete: {state.percentage:g} % stable for the plan's time; the baseline may be retired"
            return result(replace(state, status=Status.COMPLETE, reason=reason), reason)
        reason = f"advanced to {following:g} %: {verdict.reason}"
        return result(_moved(following, Status.RUNNING, now, reason), reason)
    return result(state, verdict.reason)


def apply_command(plan: RolloutPlan, state: RolloutState, command: Command, now: float) -> Transition:
    """A person's step. Raises TransitionError when the command does not apply (nothing changes)."""
    who = f" by {command.actor}" + (f": {command.reason}" if command.reason else "")

    def result(after: RolloutState) -> Transition:
        return Transition(state, after, "command", command.action.value, after.reason)

    status, pct = state.status, state.percentage
    if command.action is Action.ADVANCE:
        if status is Status.COMPLETE:
            raise TransitionError("the rollout is complete; nothing to advance")
        following = plan.next_stage(pct)
        if following is None:
            return result(replace(state, status=Status.COMPLETE, reason=f"declared complete{who}"))
        keep = Status.HELD if status is Status.HELD else Status.RUNNING
        return result(_moved(following, keep, now, f"advanced to {following:g} %{who}"))
    if command.action is Action.HOLD:
        if status not in (Status.RUNNING, Status.PAUSED, Status.ROLLED_BACK):
            raise TransitionError(f"nothing to hold: the rollout is {status.value}")
        return result(replace(state, status=Status.HELD, reason=f"held at {pct:g} %{who}"))
    if command.action is Action.RESUME:
        if status in (Status.RUNNING, Status.COMPLETE):
            raise TransitionError(f"nothing to resume: the rollout is {status.value}")
        if pct == 0:
            first = plan.stages[0]
            return result(_moved(first, Status.RUNNING, now, f"started at {first:g} %{who}"))
        if status is Status.HELD:   # a hold does not spoil the data: the stage keeps its window
            return result(replace(state, status=Status.RUNNING, reason=f"resumed at {pct:g} %{who}"))
        return result(_moved(pct, Status.RUNNING, now, f"resumed at {pct:g} % with a new window{who}"))
    if command.action is Action.ROLLBACK:
        if pct == 0:
            raise TransitionError("nothing to roll back: the candidate already gets 0 %")
        target = plan.rollback_target(pct, command.rollback_to)
        return result(_moved(target, Status.ROLLED_BACK, now, f"rolled back to {target:g} %{who}"))
    if command.action is Action.SET:
        try:
            target = definition(V2_PERCENTAGE).parse(command.percentage)
        except FlagError as exc:
            raise TransitionError(str(exc)) from None
        if target == pct:
            return result(replace(state, reason=f"already at {pct:g} %{who}"))
        if target == 0:
            return result(_moved(0.0, Status.IDLE, now, f"set to 0 %{who}"))
        keep = Status.RUNNING if status is Status.RUNNING else Status.HELD
        return result(_moved(target, keep, now, f"set to {target:g} %{who}"))
    raise TransitionError(f"unknown action {command.action!r}")


def rollout_started(plan: RolloutPlan, state: RolloutState, baseline: str, candidate: str, actor: str,
                    now: float, reason: str = "") -> Transition:
    """A new rollout: `candidate` against `baseline`, from its first stage with a new window."""
    first = plan.stages[0]
    why = f"rollout of {candidate} against {baseline} started at {first:g} % by {actor}" + (
        f": {reason}" if reason else "")
    return Transition(state, _moved(first, Status.RUNNING, now, why), "command", "start", why)
