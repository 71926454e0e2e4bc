"""The circuit breakers of both versions, as the router and the gateway see them.

A routing decision reads only this process's copy (`v2_blocked`); the gateway's
outcomes (`record_success` / `record_failure`) change the shared state in Redis,
where a failure is one atomic transaction and a success costs nothing unless the
local copy shows failures to reset. The half-open probe is claimed from the
replicator's tick by one worker (atomically), and only that worker lets one request
through to the candidate.

One policy while Redis is down, the safe side: a routing decision never waits on
Redis, and nothing that lets the candidate back in is decided by one process alone.
- A hold (a failure, a trip, an alert, an operator's open or rollback and the
  percentage it saves) applies to a process-local copy at once and is written back
  to Redis on the first tick that reaches it (no probe is claimed meanwhile).
- A release (close, re-arm, an alert's resolution, the percentage's restore) needs
  Redis and is refused with `BreakerUnavailable` (a `redis.ConnectionError`) until
  it answers; a local copy is written back before any release applies.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TypeVar

import redis

from flags import threshold
from rollout.breaker import state as transitions
from rollout.breaker.listeners import BreakerListener
from rollout.breaker.slow_calls import SlowCallWindow
from rollout.breaker.state import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerPolicy,
    BreakerState,
    BreakerUnavailable,
    Cause,
    FiringAlert,
    Outcome,
    VersionRecord,
)
from rollout.breaker.storage import BreakerStorage, MemoryBreakerStorage, Transition
from rollout.identity import holder_identity
from rollout.moments import iso
from rollout.routing import Reason

log = logging.getLogger(__name__)
T = TypeVar("T")


class CircuitBreakers:
    def __init__(self, storage: BreakerStorage, policy: BreakerPolicy, *,
                 redis_up: Callable[[], bool], clock: Callable[[], float] = time.time,
                 slow_calls: SlowCallWindow | None = None, listeners: Iterable[BreakerListener] = ()):
        self.shared = storage
        self.slow_calls = slow_calls
        self.policy = policy
        self.listeners = list(listeners)
        self.redis_up = redis_up
        self.clock = clock
        self.worker = holder_identity()  # unique per breaker instance
        self._local: MemoryBreakerStorage | None = None  # only while Redis is unreachable
        self._local_base: BreakerState | None = None      # the shared state the local copy started from
        self._local_lock = threading.Lock()
        self._probe_lock = threading.Lock()
        self._probe_sent: float | None = None  # claim time of the probe this worker let through
        self._resetting = threading.Lock()
        self._demand_at: dict[str, float] = {}  # when this worker last had a request for each version

    # -- reading (no I/O) ---------------------------------------------------------
    def state(self) -> BreakerState:
        local = self._local
        return local.state() if local is not None else self.shared.state()

    @property
    def local_only(self) -> bool:
        """True while this worker holds state Redis has not seen (Redis was unreachable)."""
        return self._local is not None

    def describe(self) -> dict[str, object]:
        """State per version, why, the firing alerts and the saved percentage (API, CLI)."""
        current = self.state()
        versions = {}
        for version, record in current.records.items():
            held = current.held(version)
            next_probe = None
            if record.state == OPEN and record.cause is Cause.FAILURES and record.opened_at and not held:
                next_probe = iso(record.opened_at + self.policy.reset_timeout_s)
            versions[version] = {
                "state": record.state, "failures": record.failures, "fail_max": self.policy.fail_max,
                "opened_at": iso(record.opened_at), "cause": record.cause.value if record.cause else None,
                "detail": record.detail, "actor": record.actor, "fingerprint": record.fingerprint,
                "alertname": record.alertname, "held_by_alerts": held,
                "awaiting_rearm": record.state == OPEN and record.cause is not Cause.FAILURES and not held,
                "next_probe_at": next_probe, "probe_owner": record.probe_owner,
                "changed_at": iso(record.changed_at),
            }
        alerts = [{"fingerprint": a.fingerprint, "alertname": a.alertname, "severity": a.severity,
                   "source": a.source, "starts_at": a.starts_at, "since": iso(a.since)}
                  for a in sorted(current.alerts.values(), key=lambda a: a.since)]
        return {"versions": versions, "firing_alerts": alerts, "saved_percentage": current.saved_percentage,
                "reset_timeout_s": self.policy.reset_timeout_s, "local_only": self.local_only,
                "redis": "ok" if self.redis_up() else "unreachable",
                "worker": {"pid": os.getpid(), "state_version": self.shared.version,
                           "installed_at": iso(self.shared.installed_at)}}

    # -- the router's guard ---------------------------------------------------------
    def v2_blocked(self, category: str | None, *, serving: bool = False) -> Reason | None:
        """Closed: None. Otherwise the hold's reason, except for the one serving search that
        takes this worker's half-open probe. A read (`serving=False`, e.g. a shadow) changes
        nothing: the probe is spent only by a search whose outcome is reported back."""
        current = self.state()
        candidate = current.held_version or ""
        record = current.record(candidate)
        if record.state == CLOSED:
            return None
        if serving:
            self._demand_at[candidate] = time.monotonic()
            if record.state == HALF_OPEN and record.probe_owner == self.worker and self._take_probe(record):
                return None
        return _hold_reason(record)

    def held_back(self, user_bucket: int) -> Reason | None:
        """The router's rollback memory: while the candidate is held and a rollback saved the percentage it
        lowered, a user inside that saved percentage is on the baseline because of the hold, not the flag."""
        current = self.state()
        saved = current.saved_percentage
        if saved is None or user_bucket >= threshold(saved):
            return None
        record = current.record(current.held_version or "")
        return None if record.state == CLOSED else _hold_reason(record)

    def _take_probe(self, record: VersionRecord) -> bool:
        """Exactly one request per claim goes through as the probe."""
        with self._probe_lock:
            if self._probe_sent == record.probe_claimed_at:
                return False
            self._probe_sent = record.probe_claimed_at
            return True

    # -- the gateway's health recorder ---------------------------------------------------
    def record_success(self, version: str, elapsed_ms: float | None = None) -> None:
        """A search answered; one slower than the slow-call duration counts toward the slow-call rate."""
        self._demand_at[version] = time.monotonic()
        if self.slow_calls is not None and elapsed_ms is not None:
            detail = self.slow_calls.record(version, elapsed_ms)
            if detail is not None:
                self._trip(lambda s: transitions.slow_tripped(s, version, detail, self.clock()), version, detail)
                return
        record = self.state().record(version)
        if record.state == CLOSED and not record.failures:
            return  # the common case: nothing to do, no I/O
        if record.state == OPEN or (record.state == HALF_OPEN and record.probe_owner != self.worker):
            return
        if not self._resetting.acquire(blocking=False):
            return  # another thread of this worker is already resetting
        try:
            self._apply(lambda s: transitions.succeeded(s, version, self.worker, self.clock()))
        finally:
            self._resetting.release()

    def record_failure(self, version: str, kind: str) -> None:
        self._trip(lambda s: transitions.failed(s, version, kind, self.clock(), self.policy), version, kind)

    def _trip(self, transition: Transition[Outcome], version: str, why: str) -> None:
        changed, outcome = self._apply(transition)
        if changed and outcome in (Outcome.TRIPPED, Outcome.REOPENED):
            log.warning("circuit breaker %s opened: %s (%s)", version, outcome, why)
            self._count_rollback(version, Cause.FAILURES)

    # -- the replicator's tick ------------------------------------------------------------
    def tick(self) -> None:
        """Write a local-only state back to Redis, claim due probes, refresh the gauges."""
        if self.redis_up():
            try:
                self._write_back()
                self._claim_probes()
            except redis.RedisError as exc:
                log.warning("circuit breaker: Redis failed during the tick: %s", exc)
        self.refresh_gauges()

    def _claim_probes(self) -> None:
        """Only a worker with recent requests for the version claims its probe: a process that
        serves no queries (a CLI command, a controller) would hold the probe and never send it."""
        now, recent = self.clock(), time.monotonic() - self.policy.probe_lease_s
        current = self.state()
        for version, record in current.records.items():
            if self._demand_at.get(version, float("-inf")) < recent:
                continue
            if record.probe_due(now, self.policy, current.held(version)):
                changed, _ = self.shared.update(self._claim_probe(version))
                if changed:
                    log.info("circuit breaker %s half-open: this worker sends the probe", version)

    def _claim_probe(self, version: str) -> Transition[Outcome]:
        return lambda s: transitions.probe_claimed(s, version, self.worker, self.clock(), self.policy)

    def _write_back(self) -> None:
        """Redis is back: make every version this worker held open locally open in Redis too."""
        with self._local_lock:
            local = self._local
            if local is None:
                return
            held = local.state()

            base = self._local_base

            def merge(shared: BreakerState) -> tuple[BreakerState | None, None]:
                new = shared
                for version, record in held.records.items():
                    if record.state != CLOSED and new.record(version).state == CLOSED:
                        new = new.with_record(version, replace(record, state=OPEN, probe_owner=None,
                                                               probe_claimed_at=None))
                saved = held.saved_percentage
                if saved is not None and new.saved_percentage is None \
                        and (base is None or base.saved_percentage != saved):
                    new = replace(new, saved_percentage=saved)
                return (new if new is not shared else None), None

            self.shared.update(merge)
            self._local = self._local_base = None
        log.info("circuit breaker: Redis reachable again; local state written back")

    def add_listener(self, listener: BreakerListener) -> None:
        self.listeners.append(listener)

    def refresh_gauges(self) -> None:
        """Tell the listeners the state this process routes by."""
        current, local_only = self.state(), self.local_only
        for listener in self.listeners:
            self._tell(listener.state_seen, current, local_only)

    # -- operators and alerts -----------------------------------------------------------------
    def open(self, version: str, *, reason: str | None, actor: str,
             percentage: float | None = None) -> tuple[Outcome, bool]:
        """A hold: (outcome, shared), shared False when applied on this process only (Redis down)."""
        before = self.state().record(version).state
        changed, outcome, shared = self._apply_reporting(
            lambda s: transitions.forced_open(s, version, self.clock(), reason=reason, actor=actor,
                                              percentage=percentage))
        if changed and before != OPEN:
            self._count_rollback(version, Cause.MANUAL)
        return outcome, shared

    def close(self, version: str, *, actor: str, force: bool = False) -> Outcome:
        return self._release(lambda s: transitions.closed(s, version, self.clock(), force=force, actor=actor))

    def rearm(self, version: str, *, actor: str, force: bool = False) -> Outcome:
        return self._release(lambda s: transitions.rearmed(s, version, self.clock(), force=force, actor=actor))

    def saved_percentage(self) -> float | None:
        return self.state().saved_percentage

    def forget_saved_percentage(self, restored: float) -> bool:
        """After the flag is back at `restored`: drop it from the rollback memory (a release)."""
        return self._release(lambda s: transitions.percentage_forgotten(s, restored))

    def alert_fired(self, alert: FiringAlert, *, percentage: float, save_percentage: bool) -> tuple[Outcome, bool]:
        """Hold the candidate open for the alert; (outcome, shared): shared is False when applied locally only."""
        current = self.state()
        before = current.record(current.held_version or "").state

        def fire(s: BreakerState) -> tuple[BreakerState | None, Outcome]:
            return transitions.alert_fired(s, alert, self.clock(), percentage=percentage,
                                           save_percentage=save_percentage)

        changed, outcome, shared = self._apply_reporting(fire)
        if changed and before != OPEN:
            self._count_rollback(current.held_version or "", Cause.ALERT)
        return outcome, shared

    def alert_resolved(self, fingerprint: str, *, auto_release: bool) -> Outcome:
        return self._release(
            lambda s: transitions.alert_resolved(s, fingerprint, self.clock(), auto_release=auto_release))

    # -- internals ----------------------------------------------------------------------------
    def _apply(self, transition: Transition[T]) -> tuple[bool, T]:
        changed, result, _shared = self._apply_reporting(transition)
        return changed, result

    def _apply_reporting(self, transition: Transition[T]) -> tuple[bool, T, bool]:
        """In Redis when it answers, else on the local copy (which then shadows Redis until written back)."""
        if self.redis_up():
            try:
                changed, result = self.shared.update(transition)
                return changed, result, True
            except redis.RedisError as exc:
                log.warning("circuit breaker: Redis unreachable, applying locally: %s", exc)
        with self._local_lock:
            if self._local is None:
                self._local_base = self.shared.state()
                self._local = MemoryBreakerStorage(self._local_base)
            changed, result = self._local.update(transition)
        self.refresh_gauges()
        return changed, result, False

    def _release(self, transition: Transition[T]) -> T:
        """In Redis or not at all: a release decided by one process would split the workers."""
        if not self.redis_up():
            raise BreakerUnavailable("Redis is unreachable: nothing was released; the candidate stays held until it "
                                     "answers")
        try:
            self._write_back()  # a hold this process kept locally comes first
            return self.shared.update(transition)[1]
        except BreakerUnavailable:
            raise
        except redis.RedisError as exc:
            raise BreakerUnavailable(f"Redis failed ({exc}): nothing was released; the candidate stays held") from exc

    def _count_rollback(self, version: str, cause: Cause) -> None:
        if version == self.state().held_version:
            for listener in self.listeners:
                self._tell(listener.rolled_back, version, cause)

    @staticmethod
    def _tell(hook: Callable[..., None], *values: object) -> None:
        try:
            hook(*values)
        except Exception:  # an observer must never change a breaker's decision
            log.exception("circuit breaker listener %r failed", hook)


def _hold_reason(record: VersionRecord) -> Reason:
    """The routing reason of a candidate held off by its breaker: the alert that tripped it, or the breaker."""
    return Reason.ALERT if record.cause is Cause.ALERT else Reason.BREAKER_OPEN
