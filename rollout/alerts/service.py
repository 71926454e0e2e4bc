"""Applying received alerts: record every one, roll back on tripping ones, release on resolution.

A tripping alert that fires holds the candidate's breaker open (tracked by fingerprint, so a
repeat changes nothing) and, by policy, sets FF_NEW_EMBEDDINGS_PERCENTAGE to 0. When
the last one resolves, the candidate waits for a re-arm, or (ALERT_ON_RESOLVE=auto) half-opens
and gets its percentage back.

Redis unreachable: a firing tripping alert is applied on this worker at once, stored
in `alert_events` as pending, and the sender gets 503 so it retries. While Redis
stays down every worker picks pending alerts up from PostgreSQL every
ALERT_OUTAGE_POLL_S; once Redis answers, one worker replays them for everybody.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psycopg
import redis
from psycopg_pool import PoolTimeout

from flags import V2_PERCENTAGE, FlagStore
from rollout.alerts.actions import ActionResult, RollbackActions
from rollout.alerts.events import AlertEvent, AlertEventStore
from rollout.alerts.payloads import Alert
from rollout.alerts.policy import AlertPolicy
from rollout.breaker import CircuitBreakers, FiringAlert, Outcome
from rollout.metrics import Metrics

log = logging.getLogger(__name__)


VERSION_LABEL = "version"  # the label naming the version an alert is about (unset: the candidate)


@dataclass
class AlertOutcome:
    alert: Alert
    trips: bool
    outcome: str
    actions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    pending: bool = False

    def as_json(self) -> dict:
        body = {"fingerprint": self.alert.fingerprint, "alertname": self.alert.alertname,
                "status": self.alert.status, "severity": self.alert.severity, "trips": self.trips,
                "outcome": self.outcome, "actions": self.actions}
        if self.warnings:
            body["warnings"] = self.warnings
        return body


@dataclass
class Delivery:
    source: str
    outcomes: list[AlertOutcome]
    event_ids: list[int] = field(default_factory=list)

    @property
    def deferred(self) -> bool:
        """Some alert could not reach every worker (Redis unreachable)."""
        return any(o.pending for o in self.outcomes)


class AlertService:
    def __init__(self, breakers: CircuitBreakers, flags: FlagStore, events: AlertEventStore,
                 actions: RollbackActions, policy: AlertPolicy, metrics: Metrics, *,
                 redis_up: Callable[[], bool], outage_poll_s: float = 2.0):
        self.breakers = breakers
        self.flags = flags
        self.events = events
        self.actions = actions
        self.policy = policy
        self.metrics = metrics
        self.redis_up = redis_up
        self.outage_poll_s = outage_poll_s
        self._was_up = False          # the first tick with Redis replays what is pending
        self._retry_replay_at = 0.0
        self._next_outage_poll = 0.0

    # -- a delivery ------------------------------------------------------------------------
    def receive(self, source: str, alerts: Sequence[Alert]) -> Delivery:
        """Apply then record every alert of one (already validated) payload."""
        delivery = Delivery(source, [])
        for alert in alerts:
            self.metrics.alerts_received.labels(source, alert.severity_label, alert.status).inc()
            outcome = self._apply(alert)
            if outcome.outcome == "repeat":
                self.metrics.alert_repeats.labels(source).inc()
            if outcome.pending:
                self.metrics.alerts_deferred.inc()
            delivery.outcomes.append(outcome)
        delivery.event_ids = self.events.record([
            AlertEvent("alert", source, o.outcome, alert=o.alert, trips=o.trips, actions=o.actions,
                       actor=f"alert:{o.alert.alertname}", detail="; ".join(o.warnings) or None, pending=o.pending)
            for o in delivery.outcomes])
        return delivery

    def _apply(self, alert: Alert) -> AlertOutcome:
        trips = self.policy.trips(alert)
        if not trips:
            return AlertOutcome(alert, False, "repeat" if self._seen(alert) else "recorded")
        named, candidate = alert.labels.get(VERSION_LABEL), self.breakers.state().held_version
        if named and named != candidate:  # only the candidate can be rolled back
            return AlertOutcome(alert, False, "repeat" if self._seen(alert) else "recorded",
                                warnings=[(f"the alert names version {named}, not the candidate "
                                           f"({candidate or 'none'}): recorded, nothing rolled back")])
        if alert.status == "firing":
            return self._fire(alert)
        return self._resolve(alert)

    def _fire(self, alert: Alert) -> AlertOutcome:
        actor = f"alert:{alert.alertname}"
        held = FiringAlert(alert.fingerprint, alert.alertname, alert.severity, alert.source, alert.starts_key,
                           time.time())
        outcome, shared = self.breakers.alert_fired(held, percentage=self.flags.get(V2_PERCENTAGE),
                                                    save_percentage=self.policy.set_percentage_zero)
        if outcome is Outcome.REPEAT:
            return AlertOutcome(alert, True, "repeat")
        candidate = self.breakers.state().held_version
        result = AlertOutcome(alert, True, "tripped", [f"breaker {candidate} open"])
        if not shared:
            result.outcome, result.pending = "deferred", True
            result.actions = [f"breaker {candidate} open on this worker only (Redis unreachable)"]
            return result
        if self.policy.set_percentage_zero:
            self._guarded(result, lambda r: self.actions.zero_percentage(
                actor=actor, reason=f"alert {alert.alertname} ({alert.fingerprint}) fired", result=r))
        return result

    def _resolve(self, alert: Alert) -> AlertOutcome:
        try:
            outcome = self.breakers.alert_resolved(alert.fingerprint, auto_release=self.policy.auto_release)
        except redis.RedisError:
            return AlertOutcome(alert, True, "deferred", ["the candidate stays held until Redis answers"], pending=True)
        if outcome is Outcome.NOT_HOLDING:
            return AlertOutcome(alert, True, "repeat" if self._seen(alert) else "resolved")
        result = AlertOutcome(alert, True, outcome)
        if outcome is Outcome.RELEASED:
            result.actions.append(f"breaker {self.breakers.state().held_version} half-open (one probe decides)")
            if self.policy.restore_percentage:
                self._guarded(result, lambda r: self.actions.restore_percentage(
                    actor=f"alert:{alert.alertname}", reason=f"alert {alert.alertname} resolved", result=r))
        elif outcome is Outcome.AWAITING_REARM:
            result.actions.append("all tripping alerts resolved: the candidate waits for a re-arm")
        return result

    def _guarded(self, result: AlertOutcome, step: Callable[[ActionResult], None]) -> None:
        """A flag step that fails (Redis just went away) is reported; the breaker already holds the candidate."""
        partial = ActionResult(result.outcome)
        try:
            step(partial)
        except redis.RedisError as exc:
            partial.warnings.append(f"{V2_PERCENTAGE} not changed: Redis unreachable ({exc})")
            result.pending = True
        result.actions += partial.actions
        result.warnings += partial.warnings

    def _seen(self, alert: Alert) -> bool:
        """Is this the same delivery as the last one recorded for this alert (a repeat)?"""
        last = self.events.last_alert(alert.fingerprint)
        return last is not None and last[0] == alert.status and last[1] == alert.starts_at

    # -- the replicator's tick ---------------------------------------------------------------
    def tick(self) -> None:
        """Replay pending alerts once Redis answers; while it does not, apply them locally."""
        up, now = self.redis_up(), time.monotonic()
        try:
            if up and (not self._was_up or now >= self._retry_replay_at > 0):
                self._retry_replay_at = 0.0
                self.replay_pending()
            elif not up and now >= self._next_outage_poll:
                self._next_outage_poll = now + self.outage_poll_s
                self._hold_pending_locally()
        except (psycopg.Error, PoolTimeout, redis.RedisError) as exc:
            log.warning("pending alerts not handled yet: %s", exc)
            if up:
                self._retry_replay_at = now + self.outage_poll_s
        self._was_up = up

    def replay_pending(self) -> int:
        """Apply every pending alert for every worker (rows locked: one worker replays each)."""
        with self.events.claim_pending() as (pending, done):
            for item in pending:
                result = self._apply(item.alert)
                if result.pending:  # Redis went away again: leave it (and the rest) for later
                    raise redis.ConnectionError("Redis unreachable during the replay")
                done(item.id, result.outcome, [f"replayed: {a}" for a in result.actions])
        if pending:
            log.info("replayed %d alert(s) received while Redis was unreachable", len(pending))
        return len(pending)

    def _hold_pending_locally(self) -> None:
        for item in self.events.pending():
            if item.trips and item.alert.status == "firing":
                self.breakers.alert_fired(
                    FiringAlert(item.alert.fingerprint, item.alert.alertname, item.alert.severity,
                                item.alert.source, item.alert.starts_key, time.time()),
                    percentage=self.flags.get(V2_PERCENTAGE), save_percentage=False)
