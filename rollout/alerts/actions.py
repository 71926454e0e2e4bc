"""What operators and alerts do to the rollout: open, close, re-arm, roll back, restore.

Shared by the webhook, the API and the CLI, so a rollback is the same thing from
everywhere and every action lands in `alert_events` with who did it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from flags import V2_PERCENTAGE, FlagNotAudited, FlagStore
from rollout.alerts.events import AlertEvent, AlertEventStore
from rollout.breaker import BreakerConflict, BreakerUnavailable, CircuitBreakers, Outcome

log = logging.getLogger(__name__)


@dataclass
class ActionResult:
    outcome: str
    actions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class RollbackActions:
    def __init__(self, breakers: CircuitBreakers, flags: FlagStore, events: AlertEventStore):
        self.breakers = breakers
        self.flags = flags
        self.events = events

    # -- pieces, also used by the alert service ------------------------------------------
    def zero_percentage(self, *, actor: str, reason: str, result: ActionResult) -> None:
        """FF_NEW_EMBEDDINGS_PERCENTAGE to 0 (audited), unless it already is."""
        old = self.flags.get(V2_PERCENTAGE)
        if old == 0:
            return
        try:
            change = self.flags.set(V2_PERCENTAGE, 0, actor=actor, reason=reason)
        except FlagNotAudited as exc:  # the breaker still holds the candidate off; the operator retries the percentage
            result.warnings.append(str(exc))
            return
        result.actions.append(f"{V2_PERCENTAGE} {change.old:g} -> 0")

    def restore_percentage(self, *, actor: str, reason: str, result: ActionResult) -> None:
        """Put back the percentage the rollback saved, then forget it: a failure between the two
        steps leaves it saved, and a retry sets the same value again."""
        saved = self.breakers.saved_percentage()
        if saved is None:
            return
        try:
            change = self.flags.set(V2_PERCENTAGE, saved, actor=actor, reason=reason)
        except FlagNotAudited as exc:
            result.warnings.append(f"{exc}; set it to {saved:g} again by hand")
            return
        result.actions.append(f"{V2_PERCENTAGE} {change.old:g} -> {saved:g} (restored)")
        try:
            self.breakers.forget_saved_percentage(saved)
        except BreakerUnavailable as exc:
            result.warnings.append(f"the saved percentage is kept ({exc}); a later restore sets it again")

    # -- operator actions ---------------------------------------------------------------------
    def open(self, version: str, *, actor: str, reason: str | None, source: str) -> ActionResult:
        outcome, shared = self.breakers.open(version, reason=reason, actor=actor)
        result = ActionResult(outcome)
        result.actions.append(f"breaker {version} open")
        _local_only(result, shared)
        return self._recorded(result, source, actor, reason or f"open {version}")

    def close(self, version: str, *, actor: str, reason: str | None, source: str, force: bool = False,
              restore: bool = False) -> ActionResult:
        result = ActionResult(self.breakers.close(version, actor=actor, force=force))
        result.actions.append(f"breaker {version} closed")
        if restore:
            self.restore_percentage(actor=actor, reason=reason or "breaker closed", result=result)
        return self._recorded(result, source, actor, reason or f"close {version}")

    def rearm(self, version: str, *, actor: str, reason: str | None, source: str, force: bool = False,
              restore: bool = True) -> ActionResult:
        result = ActionResult(self.breakers.rearm(version, actor=actor, force=force))
        if result.outcome == Outcome.REARMED:
            result.actions.append(f"breaker {version} half-open (one probe decides)")
        if restore:
            self.restore_percentage(actor=actor, reason=reason or "re-armed", result=result)
        return self._recorded(result, source, actor, reason or f"re-arm {version}")

    def rollback(self, *, actor: str, reason: str | None, source: str) -> ActionResult:
        """Percentage to 0 and the candidate's breaker open, the percentage saved for a later re-arm."""
        candidate = self.breakers.state().held_version
        if candidate is None:
            raise BreakerConflict("no rollout in progress: there is no candidate to roll back")
        outcome, shared = self.breakers.open(candidate, reason=reason or "rollback", actor=actor,
                                             percentage=self.flags.get(V2_PERCENTAGE))
        result = ActionResult(outcome)
        result.actions.append(f"breaker {candidate} open")
        _local_only(result, shared)
        if shared:
            self.zero_percentage(actor=actor, reason=reason or "rollback", result=result)
        return self._recorded(result, source, actor, reason or "rollback")

    def _recorded(self, result: ActionResult, source: str, actor: str, detail: str) -> ActionResult:
        try:
            self.events.record([AlertEvent("action", source, result.outcome, actions=result.actions,
                                           actor=actor, detail=detail)])
        except Exception as exc:  # the action stands; say that its record is missing
            log.error("breaker action applied but not recorded in alert_events: %s", exc)
            result.warnings.append(f"not recorded in alert_events: {exc}")
        return result


def _local_only(result: ActionResult, shared: bool) -> None:
    if not shared:
        result.warnings.append("Redis is unreachable: held on this process only, written to Redis when it "
                               f"answers; {V2_PERCENTAGE} not changed")

