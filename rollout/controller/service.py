"""The rollout service: status, people's commands and the controller's evaluations, through one code path.

`GET /api/rollout/status`, `POST /api/rollout/stage`, `rollout stage ...` and the
controller process all call this object, so a change from any of them is the same
change: applied under the state row's lock (`RolloutStore.locked`), carried out on the
flags (FF_NEW_EMBEDDINGS_PERCENTAGE, and FF_ENABLE_GRADUAL_MIGRATION when the candidate gets traffic
while it is off) through the FlagStore, so every flag change is audited with its actor,
and recorded in `rollout_decisions`.

A flag changed elsewhere (`PUT /api/flags`, `rollout flags set`, an alert's rollback)
is respected, never undone: the next look (a command or an evaluation) finds the live
share of the candidate differing from the state's, records the change with the actor flag_audit
names, and takes it as the new stage: held there (a person took the wheel; `resume` hands
it back), or rolled back when the candidate lost all its traffic during a rollout (an alert's rollback
sets the percentage to 0). Its window starts when the flag changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import psycopg
import redis

from flags import GRADUAL_MIGRATION, QUERY_ANALYTICS, V2_PERCENTAGE, FlagNotAudited, FlagStore
from rollout.controller.collector import EvidenceCollector
from rollout.controller.gates.registry import GATES, Gate
from rollout.controller.gates.relevance import RelevanceEvidence
from rollout.controller.leader import leader_of
from rollout.controller.notifications import notification, notification_event
from rollout.controller.notifier import Notifier
from rollout.controller.plan import RolloutPlan
from rollout.controller.presentation import pct, status_summary, status_warnings
from rollout.controller.sources import Reading
from rollout.controller.state import (
    WATCHED,
    Command,
    RolloutState,
    Status,
    Transition,
    TransitionError,
    apply_command,
    apply_verdict,
    rollout_started,
)
from rollout.controller.store import DecisionRecord, RolloutStore, Row, StoredState
from rollout.controller.verdict import judge
from rollout.moments import iso
from rollout.versions import all_versions, roles_of, set_candidate

log = logging.getLogger(__name__)

CONTROLLER = "controller"  # the actor of the controller's own flag changes and decisions
UNKNOWN_ACTOR = "unknown (no flag_audit row)"


Readings = Callable[[str, str, float, float], Mapping[str, Reading]]  # (baseline, candidate, since, until)


@dataclass(frozen=True)
class LiveFlags:
    percentage: float
    enabled: bool

    @property
    def share(self) -> float:
        """The candidate's share the flags give now: the percentage, or 0 while the master switch is off."""
        return self.percentage if self.enabled else 0.0


class RolloutService:
    def __init__(self, plan: RolloutPlan, store: RolloutStore, collector: EvidenceCollector, flags: FlagStore,
                 notifier: Notifier, redis_client: redis.Redis, leader_key: str, *,
                 start_condition: Callable[[str, str], str | None] | None = None,
                 relevance: Callable[[float], RelevanceEvidence] | None = None):
        self.plan = plan
        self.gates: tuple[Gate, ...] = GATES  # the gates the verdict runs (a plan file chooses its own)
        self.readings: Readings | None = None  # the custom gates' metric readings (a plan file's), or None
        self.start_condition = start_condition  # why a candidate may not get its first traffic yet, or None
        self.relevance = relevance  # the relevance sources since a time (the relevance gate), or None
        self.store = store
        self.collector = collector
        self.flags = flags
        self.notifier = notifier
        self.redis = redis_client
        self.leader_key = leader_key

    def use_plan(self, plan: RolloutPlan, gates: tuple[Gate, ...], readings: Readings | None) -> None:
        """Judge by a plan file's stages, gates and metric sources (ROLLOUT_PLAN_FILE, `rollout controller --plan`)."""
        self.plan, self.gates, self.readings = plan, gates, readings

    # -- reading ------------------------------------------------------------------------------
    def status(self, now: float | None = None) -> dict[str, Any]:
        """Plan, stage, time in stage, next evaluation, the last decision and why, the controller, completion."""
        now = time.time() if now is None else now
        stored = self.store.read()
        state = stored.state
        flags = self._flags()
        decisions = self.store.decisions(1)
        evaluations = self.store.decisions(1, kinds=["evaluation"])
        controller = self._controller()
        watched = state.status in WATCHED
        in_stage = state.time_in_stage(now) if state.status is not Status.IDLE else None
        following = self.plan.next_stage(state.percentage) if state.status is not Status.COMPLETE else None
        next_at = None
        if watched:
            next_at = max(stored.next_evaluation_at or now, now)
        complete = state.status is Status.COMPLETE
        report: dict[str, Any] = {
            "status": state.status.value,
            "percentage": state.percentage,
            "stage": self.plan.stage_number(state.percentage),
            "stages": list(self.plan.stages),
            "next_stage": following,
            "reason": state.reason,
            "stage_started_at": iso(state.stage_started_at) if state.status is not Status.IDLE else None,
            "time_in_stage_s": in_stage,
            "required_time_s": self.plan.required_time_s(state.percentage) if watched else None,
            "last_evaluated_at": iso(stored.last_evaluated_at),
            "next_evaluation_at": iso(next_at),
            "last_decision": decisions[0] if decisions else None,
            "last_evaluation": evaluations[0] if evaluations else None,
            "flags": {V2_PERCENTAGE: flags.percentage, GRADUAL_MIGRATION: flags.enabled,
                      "effective_percentage": flags.share, "in_sync": flags.share == state.percentage},
            "controller": controller,
            "complete": complete,
            "v1_retirable": complete and state.percentage >= self.plan.final,
            "plan": self.plan.to_dict(),
        }
        report["warnings"] = status_warnings(report, stored, flags.share, self.plan, now)
        report["summary"] = status_summary(report, self.plan)
        return report

    def decisions(self, limit: int = 20, *, details: bool = False) -> list[Row]:
        return self.store.decisions(limit, details=details)

    # -- people ---------------------------------------------------------------------------------
    def command(self, command: Command, *, expected_percentage: float | None = None,
                now: float | None = None) -> dict[str, Any]:
        """Apply a person's command; TransitionError (nothing changed) when it does not apply.

        `expected_percentage`: refuse unless the rollout is at this percentage (a guard
        against acting on a status that someone else changed meanwhile).
        """
        now = time.time() if now is None else now
        self.reconcile(now)
        with self.store.locked() as (conn, stored):
            state = stored.state
            if expected_percentage is not None and state.percentage != expected_percentage:
                raise TransitionError(f"the rollout is at {pct(state.percentage)}, not "
                                      f"{pct(expected_percentage)}: nothing changed")
            transition = apply_command(self.plan, state, command, now)
            roles = roles_of(all_versions(conn))
            if roles is not None and roles.candidate is not None:
                self._check_start(transition, roles.baseline, roles.candidate)
            changes = self._set_flags(transition, command.actor)  # a Redis error rolls the whole command back
            decision = self._record(conn, stored, transition, DecisionRecord(
                kind="command", actor=command.actor, transition=transition, plan=self.plan.to_dict(),
                stage=self.plan.stage_number(state.percentage), flag_changes=changes))
        log.info("rollout %s by %s: %s", command.action.value, command.actor, transition.reason)
        return self._notify(decision)

    def start(self, baseline: str, candidate: str, *, actor: str, reason: str = "",
              now: float | None = None) -> dict[str, Any]:
        """Start a rollout of `candidate` against `baseline` at the first stage.

        Refused (nothing changed) while another candidate's rollout is under way: one that is not
        back at 0 % (idle or rolled back), or complete but not promoted yet. The registry change,
        the state and the decision commit together; the flags follow as for any command.
        """
        now = time.time() if now is None else now
        self.reconcile(now)
        with self.store.locked() as (conn, stored):
            state = stored.state
            roles = roles_of(all_versions(conn))
            at_rest = state.percentage == 0 and state.status in (Status.IDLE, Status.ROLLED_BACK)
            if roles is not None and roles.candidate is not None and not at_rest:
                raise TransitionError(f"a rollout of {roles.candidate} is in progress ({state.status.value} at "
                                      f"{pct(state.percentage)}); roll it back to 0 % or promote it first")
            set_candidate(conn, baseline, candidate)
            transition = rollout_started(self.plan, state, baseline, candidate, actor, now, reason)
            self._check_start(transition, baseline, candidate)  # a refusal rolls the registry change back
            changes = self._set_flags(transition, actor)  # a Redis error rolls the whole start back
            decision = self._record(conn, stored, transition, DecisionRecord(
                kind="command", actor=actor, transition=transition, plan=self.plan.to_dict(),
                stage=self.plan.stage_number(state.percentage), flag_changes=changes))
        log.info("rollout start by %s: %s", actor, transition.reason)
        return self._notify(decision)

    # -- the controller -------------------------------------------------------------------------
    def reconcile(self, now: float | None = None) -> Row | None:
        """Take a flag change made elsewhere as the new stage (recorded); None when the flags agree."""
        now = time.time() if now is None else now
        flags = self._flags(fresh=True)
        if flags.share == self.store.read().state.percentage:
            return None
        with self.store.locked() as (conn, stored):
            state = stored.state
            if flags.share == state.percentage:
                return None
            change = self.store.last_flag_change(conn, (V2_PERCENTAGE, GRADUAL_MIGRATION))
            actor = change[0] if change else UNKNOWN_ACTOR
            started = min(change[1], now) if change and change[1] > state.stage_started_at else now
            transition = adopted(state, flags, actor, started)
            decision = self._record(conn, stored, transition, DecisionRecord(
                kind="flag_change", actor=actor, transition=transition, plan=self.plan.to_dict(),
                stage=self.plan.stage_number(state.percentage)))
        log.warning("rollout: %s", transition.reason)
        return decision

    def evaluate(self, now: float | None = None, *, due_only: bool = False,
                 leading: Callable[[], bool] = lambda: True, controller: str | None = None) -> list[Row]:
        """One evaluation of the current stage (the controller's job); the decisions it recorded.

        `due_only`: skip unless the state's next evaluation time has come. `leading` is
        asked again before anything is written: a controller that lost the leader lock while
        gathering evidence writes nothing. `controller`: the process's identity, kept on the row.
        """
        now = time.time() if now is None else now
        made = [d for d in (self.reconcile(now),) if d is not None]
        stored = self.store.read()
        state = stored.state
        if state.status not in WATCHED:
            return made
        if due_only and stored.next_evaluation_at is not None and stored.next_evaluation_at > now:
            return made
        collected = self.collector.collect(state.percentage, state.stage_started_at, now, self.plan.critical_window_s)
        evidence, summary = collected.evidence, collected.summary
        if self.relevance is not None:
            evidence = replace(evidence, relevance=self.relevance(state.stage_started_at))
        if self.readings is not None:
            roles = self.collector.roles()
            readings = self.readings(roles.baseline, roles.candidate or "", state.stage_started_at, now)
            evidence = replace(evidence, readings=readings)
            summary = {**summary, "metrics": {name: reading.to_dict() for name, reading in readings.items()}}
        verdict = judge(evidence, self.plan, self.gates)
        if not leading():
            log.warning("rollout: no longer the leader; the evaluation at %s is dropped", pct(state.percentage))
            return made
        with self.store.locked() as (conn, current):
            transition = apply_verdict(self.plan, current.state, verdict)
            changes, error = [], None
            try:
                changes = self._set_flags(transition, CONTROLLER)
            except (redis.RedisError, OSError, FlagNotAudited) as exc:
                error = f"{V2_PERCENTAGE} could not be set, nothing changed: {exc}"
                cause = "its audit row" if isinstance(exc, FlagNotAudited) else "Redis unreachable"
                transition = Transition(current.state, current.state, "verdict", transition.action,
                                        f"{transition.reason} (not carried out: {cause})")
            current = StoredState(current.state, now, now + self.plan.evaluation_interval_s)
            decision = self._record(conn, current, transition, DecisionRecord(
                kind="evaluation", actor=CONTROLLER, controller=controller, transition=transition,
                plan=self.plan.to_dict(),
                stage=self.plan.stage_number(current.state.percentage), verdict=verdict.to_dict(),
                evidence=summary, flag_changes=changes, error=error))
        made.append(self._notify(decision))
        return made

    # -- carrying a transition out -------------------------------------------------------------
    def _check_start(self, transition: Transition, baseline: str, candidate: str) -> None:
        """A command giving the candidate its first traffic waits for the start condition of the pair
        (ROLLOUT_REQUIRE_EVAL)."""
        if self.start_condition is None or transition.before.percentage > 0 or not transition.after.percentage > 0:
            return
        refusal = self.start_condition(baseline, candidate)
        if refusal is not None:
            raise TransitionError(f"{refusal}: nothing changed")

    def _record(self, conn: psycopg.Connection, stored: StoredState, transition: Transition,
                record: DecisionRecord) -> Row:
        """Save the new state and the decision, in the caller's locked transaction."""
        after = transition.after
        next_at = stored.next_evaluation_at if after.status in WATCHED else None
        self.store.save(conn, StoredState(after, stored.last_evaluated_at, next_at))
        if notification_event(transition) is not None:
            record.notification = self.notifier.initial_record()
        decision_id, decided_at = self.store.record(conn, record)
        return {"id": decision_id, "decided_at": decided_at.isoformat(), "kind": record.kind,
                "controller": record.controller, "action": record.action, "actor": record.actor,
                "reason": record.reason, "percentage_before": transition.before.percentage,
                "percentage_after": after.percentage, "status_before": transition.before.status.value,
                "status_after": after.status.value, "flag_changes": record.flag_changes, "error": record.error,
                "notification": record.notification, "transition": transition, "verdict": record.verdict}

    def _set_flags(self, transition: Transition, actor: str) -> list[str]:
        """The flags for the transition's new percentage; each change audited with `actor`."""
        if not transition.percentage_changed:
            return []
        target = transition.after.percentage
        reason = f"staged rollout: {transition.reason}"[:500]
        changes = []
        change = self.flags.set(V2_PERCENTAGE, target, actor=actor, reason=reason)
        changes.append(f"{V2_PERCENTAGE} {change.old:g} -> {change.new:g}")
        # percentage first: never the candidate at a stale share
        if target > 0 and not self.flags.get(GRADUAL_MIGRATION):
            change = self.flags.set(GRADUAL_MIGRATION, True, actor=actor, reason=reason)
            changes.append(f"{GRADUAL_MIGRATION} false -> true")
        if target > 0 and not self.flags.get(QUERY_ANALYTICS):  # the gates judge query_log: no rows, no judgment
            self.flags.set(QUERY_ANALYTICS, True, actor=actor, reason=reason)
            changes.append(f"{QUERY_ANALYTICS} false -> true")
        return changes

    def _notify(self, decision: Row) -> dict[str, Any]:
        """Queue the notification of a rollback or a pause (never waits); the decision, JSON-ready."""
        transition: Transition = decision.pop("transition")
        verdict = decision.pop("verdict")
        event = notification_event(transition)
        if event is not None and self.notifier.configured:
            self.notifier.send(decision["id"], notification(event, decision, verdict))
        return decision

    def resend_undelivered(self, older_than_s: float | None = None) -> list[int]:
        """Send again the notifications a stopped process left `pending` (killed before or during its
        POST); the ids sent. At least once: a receiver may see a decision twice, marked `redelivered`."""
        if not self.notifier.configured:
            return []
        grace = self.notifier.delivery_deadline_s if older_than_s is None else older_than_s
        sent = []
        for decision in self.store.undelivered(grace):
            if self.notifier.in_flight(decision["id"]):
                continue
            event = "pause" if decision["status_after"] == Status.PAUSED.value else "rollback"
            payload = notification(event, decision, decision["verdict"])
            payload["redelivered"] = True
            log.warning("rollout notification for decision %d was never delivered; sending it again",
                        decision["id"])
            self.notifier.send(decision["id"], payload)
            sent.append(decision["id"])
        return sent

    # -- helpers ------------------------------------------------------------------------------------
    def _flags(self, *, fresh: bool = False) -> LiveFlags:
        if fresh:  # under a change, read Redis itself rather than this process's copy
            self.flags.replica.load(force=True)
        snapshot = self.flags.snapshot()
        return LiveFlags(float(snapshot[V2_PERCENTAGE]), bool(snapshot[GRADUAL_MIGRATION]))

    def _controller(self) -> dict[str, Any]:
        try:
            holder = leader_of(self.redis, self.leader_key)
        except (redis.RedisError, OSError) as exc:
            return {"active": None, "leader": None, "lock_expires_in_s": None,
                    "detail": f"unknown: Redis is unreachable ({exc})"}
        if holder is None:
            return {"active": False, "leader": None, "lock_expires_in_s": None,
                    "detail": "no controller is running: nothing is judged until `rollout controller` runs"}
        return {"active": True, "leader": holder[0], "lock_expires_in_s": holder[1], "detail": f"led by {holder[0]}"}


def adopted(state: RolloutState, flags: LiveFlags, actor: str, started: float) -> Transition:
    """The state a flag change made elsewhere leads to: held at the new share (a person chose it), rolled
    back when the candidate lost all its traffic during a rollout (an alert, an operator's emergency), idle
    otherwise."""
    share = flags.share
    what = (f"{V2_PERCENTAGE}={flags.percentage:g}, {GRADUAL_MIGRATION}={str(flags.enabled).lower()}: "
            f"the candidate gets {pct(share)} instead of {pct(state.percentage)}")
    if share == 0 and state.status in WATCHED:
        status, verb = Status.ROLLED_BACK, "rolled back"
    elif share == 0:
        status, verb = Status.IDLE, "stopped"
    else:
        status, verb = Status.HELD, "held"
    reason = f"{what}, changed outside the controller by {actor}: {verb} at {pct(share)}"
    if status is not Status.IDLE:
        reason += "; `rollout stage resume` lets the controller go on"
    after = RolloutState(percentage=share, status=status, stage_started_at=started, reason=reason)
    return Transition(state, after, "command", "set", reason)
