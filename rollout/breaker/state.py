"""The breakers' shared state and its transitions, as pure functions.

The state is one Redis hash (`<prefix>:breaker`): a JSON record per version, the
tripping alerts still firing (they hold the candidate open) and the percentage a rollback
saved for the restore. Each transition maps one `BreakerState` to the next (or to
None: nothing to change), so the same code runs inside the replicated hash's
compare-and-set (retried, so it must stay pure) and on the process-local copy kept
while Redis is down.

The three states and their names are pybreaker's. Unlike pybreaker, a breaker
opened by an alert or by hand never half-opens on its own timer: only one opened
by failures does, and only when no tripping alert is firing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import redis
from pybreaker import STATE_CLOSED, STATE_HALF_OPEN, STATE_OPEN

from flags.replica import Change

CLOSED, HALF_OPEN, OPEN = STATE_CLOSED, STATE_HALF_OPEN, STATE_OPEN  # pybreaker's names
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}  # circuit_breaker_state
ALERTS_FIELD = "alerts"
SAVED_FIELD = "saved_percentage"


class Cause(StrEnum):
    FAILURES = "failures"  # fail_max consecutive failures (or a failed probe)
    ALERT = "alert"        # a tripping alert; released by its resolution (and a re-arm)
    MANUAL = "manual"      # an operator (API or CLI); released only by an operator


class BreakerConflict(Exception):
    """A requested change that the state forbids (e.g. closing while an alert fires)."""


class BreakerUnavailable(redis.ConnectionError):
    """A release (close, re-arm, alert resolved, restore) refused because Redis does not answer:
    applied to one process only, it would send that process's users back to the candidate alone."""


class Outcome(StrEnum):
    """What a transition did (returned to callers, shown by the API and CLI, logged)."""

    COUNTED = "counted"                # a failure counted, below fail_max
    TRIPPED = "tripped"                # opened by failures, a slow-call rate or an alert
    REOPENED = "reopened"              # the half-open probe failed
    RESET = "reset"                    # a success cleared the failure count
    CLAIMED = "claimed"                # this worker sends the half-open probe
    NOT_DUE = "not_due"
    OPENED = "opened"                  # by hand
    ALREADY_OPEN = "already_open"
    REPEAT = "repeat"                  # an alert already holding
    NO_CANDIDATE = "no_candidate"      # no rollout: nothing for an alert to hold
    NOT_HOLDING = "not_holding"        # a resolution of an alert that holds nothing
    STILL_HELD = "still_held"          # other alerts still fire
    AWAITING_REARM = "awaiting_rearm"
    RELEASED = "released"              # the last alert resolved: half-open
    REARMED = "rearmed"
    ALREADY_CLOSED = "already_closed"
    CLOSED = "closed"
    IGNORED = "ignored"


@dataclass(frozen=True)
class BreakerPolicy:
    fail_max: int = 5
    reset_timeout_s: float = 30.0
    probe_lease_s: float = 10.0  # a claimed probe not sent within this may be claimed again


@dataclass(frozen=True)
class VersionRecord:
    state: str = CLOSED
    failures: int = 0                 # consecutive failures, shared by every worker
    opened_at: float | None = None    # epoch seconds (shared across hosts)
    cause: Cause | None = None
    detail: str | None = None         # last failure kind, alert name or the operator's reason
    actor: str | None = None
    fingerprint: str | None = None    # the alert that opened it
    alertname: str | None = None
    probe_owner: str | None = None    # the worker allowed to send the half-open probe
    probe_claimed_at: float | None = None
    changed_at: float | None = None

    def encode(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, sort_keys=True)

    @classmethod
    def decode(cls, raw: str | None) -> VersionRecord:
        if not raw:
            return cls()
        data = json.loads(raw)
        if data.get("cause") is not None:
            data["cause"] = Cause(data["cause"])
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})

    def opened(self, cause: Cause, now: float, **details: Any) -> VersionRecord:
        """Open (keeping the first opening time if already open)."""
        opened_at = self.opened_at if self.state == OPEN and self.opened_at else now
        return VersionRecord(state=OPEN, failures=self.failures, opened_at=opened_at, cause=cause,
                             changed_at=now, **details)

    def probe_due(self, now: float, policy: BreakerPolicy, held: bool) -> bool:
        """May a worker claim the half-open probe now? Never while an alert holds the version."""
        if held:
            return False
        if self.state == OPEN:
            return (self.cause is Cause.FAILURES and self.opened_at is not None
                    and now >= self.opened_at + policy.reset_timeout_s)
        if self.state == HALF_OPEN:
            return self.probe_claimed_at is None or now >= self.probe_claimed_at + policy.probe_lease_s
        return False


@dataclass(frozen=True)
class FiringAlert:
    fingerprint: str
    alertname: str
    severity: str
    source: str
    starts_at: str | None
    since: float


@dataclass(frozen=True)
class BreakerState:
    records: Mapping[str, VersionRecord]
    alerts: Mapping[str, FiringAlert] = field(default_factory=dict)  # fingerprint -> alert
    saved_percentage: float | None = None
    held_version: str | None = None  # the candidate: the version alerts hold off (not stored)

    @classmethod
    def decode(cls, data: Mapping[str, str], versions: tuple[str, ...]) -> BreakerState:
        """`versions`: the baseline, then the candidate (the one alerts hold), then any other; a version
        with a record in `data` but not listed keeps it."""
        alerts = {fp: FiringAlert(**a) for fp, a in json.loads(data.get(ALERTS_FIELD) or "{}").items()}
        saved = data.get(SAVED_FIELD)
        names = list(versions) + [k for k in data if k not in versions and k not in (ALERTS_FIELD, SAVED_FIELD)]
        return cls(MappingProxyType({v: VersionRecord.decode(data.get(v)) for v in names}),
                   MappingProxyType(alerts), float(saved) if saved else None,
                   versions[1] if len(versions) > 1 else None)

    def record(self, version: str) -> VersionRecord:
        """A version's record; closed for one without any yet (a version registered since)."""
        return self.records.get(version) or VersionRecord()

    def encode(self) -> dict[str, str]:
        data = {v: r.encode() for v, r in self.records.items()}
        data[ALERTS_FIELD] = json.dumps({fp: asdict(a) for fp, a in self.alerts.items()}, sort_keys=True)
        if self.saved_percentage is not None:
            data[SAVED_FIELD] = repr(self.saved_percentage)
        return data

    def change_from(self, data: Mapping[str, str]) -> Change | None:
        """The hash updates that turn `data` into this state (None when equal)."""
        wanted = self.encode()
        updates = {k: v for k, v in wanted.items() if data.get(k) != v}
        deletes = [SAVED_FIELD] if SAVED_FIELD in data and SAVED_FIELD not in wanted else []
        return (updates, deletes) if updates or deletes else None

    def held(self, version: str) -> bool:
        return version == self.held_version and bool(self.alerts)

    def with_record(self, version: str, record: VersionRecord) -> BreakerState:
        return replace(self, records=MappingProxyType({**self.records, version: record}))


# -- transitions: (state, ...) -> (new state or None, outcome) ------------------------

def failed(state: BreakerState, version: str, kind: str, now: float,
           policy: BreakerPolicy) -> tuple[BreakerState | None, Outcome]:
    """Count a failure; trip at fail_max; a failed probe re-opens."""
    record = state.record(version)
    if record.state == OPEN:
        return None, Outcome.IGNORED
    if record.state == HALF_OPEN:
        return state.with_record(version, record.opened(Cause.FAILURES, now, detail=f"probe failed: {kind}")), \
            Outcome.REOPENED
    failures = record.failures + 1
    if failures >= policy.fail_max:
        tripped = replace(record, failures=failures).opened(Cause.FAILURES, now, detail=kind)
        return state.with_record(version, tripped), Outcome.TRIPPED
    return state.with_record(version, replace(record, failures=failures, detail=kind, changed_at=now)), Outcome.COUNTED


def slow_tripped(state: BreakerState, version: str, detail: str, now: float) -> tuple[BreakerState | None, Outcome]:
    """The slow-call rate reached its threshold: open a closed breaker (as failures do)."""
    record = state.record(version)
    if record.state != CLOSED:
        return None, Outcome.IGNORED
    return state.with_record(version, record.opened(Cause.FAILURES, now, detail=detail)), Outcome.TRIPPED


def succeeded(state: BreakerState, version: str, worker: str, now: float) -> tuple[BreakerState | None, Outcome]:
    """Reset the count; the probe's success (by its owner) closes the breaker."""
    record = state.record(version)
    if record.state == CLOSED and record.failures:
        return state.with_record(version, replace(record, failures=0, changed_at=now)), Outcome.RESET
    if record.state == HALF_OPEN and record.probe_owner == worker:
        return state.with_record(version, VersionRecord(changed_at=now)), Outcome.CLOSED
    return None, Outcome.IGNORED


def probe_claimed(state: BreakerState, version: str, worker: str, now: float,
                  policy: BreakerPolicy) -> tuple[BreakerState | None, Outcome]:
    """Half-open with `worker` as the only one allowed to send the probe."""
    record = state.record(version)
    if not record.probe_due(now, policy, state.held(version)):
        return None, Outcome.NOT_DUE
    return state.with_record(version, replace(record, state=HALF_OPEN, probe_owner=worker,
                                              probe_claimed_at=now, changed_at=now)), Outcome.CLAIMED


def forced_open(state: BreakerState, version: str, now: float, *, reason: str | None, actor: str,
                percentage: float | None = None) -> tuple[BreakerState | None, Outcome]:
    """Open by hand; with `percentage` (a rollback), remember it for the restore unless already saved."""
    record = state.record(version)
    outcome = Outcome.ALREADY_OPEN if record.state == OPEN else Outcome.OPENED
    new = state.with_record(version, record.opened(Cause.MANUAL, now, detail=reason, actor=actor))
    if percentage is not None and state.saved_percentage is None and percentage > 0:
        new = replace(new, saved_percentage=percentage)
    return new, outcome


def alert_fired(state: BreakerState, alert: FiringAlert, now: float, *, percentage: float,
                save_percentage: bool) -> tuple[BreakerState | None, Outcome]:
    """Hold the candidate open for `alert`; remember the percentage the first time. Repeats change nothing."""
    known = state.alerts.get(alert.fingerprint)
    if known is not None and known.starts_at == alert.starts_at:
        return None, Outcome.REPEAT
    held = state.held_version
    if held is None:
        return None, Outcome.NO_CANDIDATE
    record = state.record(held)
    opened = record.opened(Cause.ALERT, now, detail=alert.alertname, actor=f"alert:{alert.alertname}",
                           fingerprint=alert.fingerprint, alertname=alert.alertname)
    saved = state.saved_percentage
    if save_percentage and saved is None and percentage > 0:
        saved = percentage
    new = replace(state.with_record(held, opened), saved_percentage=saved,
                  alerts=MappingProxyType({**state.alerts, alert.fingerprint: alert}))
    return new, Outcome.TRIPPED


def alert_resolved(state: BreakerState, fingerprint: str, now: float, *,
                   auto_release: bool) -> tuple[BreakerState | None, Outcome]:
    """Drop the alert; with none left, half-open (auto) or wait for a re-arm."""
    if fingerprint not in state.alerts:
        return None, Outcome.NOT_HOLDING
    alerts = {fp: a for fp, a in state.alerts.items() if fp != fingerprint}
    new = replace(state, alerts=MappingProxyType(alerts))
    if alerts:
        return new, Outcome.STILL_HELD
    if not auto_release or state.held_version is None:
        return new, Outcome.AWAITING_REARM
    return new.with_record(state.held_version, _half_open(state.record(state.held_version), now)), Outcome.RELEASED


def rearmed(state: BreakerState, version: str, now: float, *, force: bool,
            actor: str) -> tuple[BreakerState | None, Outcome]:
    """An operator lets a probe decide: half-open (any worker may claim the probe)."""
    state = _unheld(state, version, force, "re-arm")
    if state.record(version).state == CLOSED:
        return state, Outcome.ALREADY_CLOSED
    return state.with_record(version, replace(_half_open(state.record(version), now), actor=actor)), Outcome.REARMED


def closed(state: BreakerState, version: str, now: float, *, force: bool,
           actor: str) -> tuple[BreakerState | None, Outcome]:
    state = _unheld(state, version, force, "close")
    return state.with_record(version, VersionRecord(changed_at=now, actor=actor)), Outcome.CLOSED


def percentage_forgotten(state: BreakerState, restored: float) -> tuple[BreakerState | None, bool]:
    """Drop the saved percentage once the flag holds it again; a different one saved since stays."""
    if state.saved_percentage != restored:
        return None, False
    return replace(state, saved_percentage=None), True


def _half_open(record: VersionRecord, now: float) -> VersionRecord:
    return replace(record, state=HALF_OPEN, probe_owner=None, probe_claimed_at=None, changed_at=now)


def _unheld(state: BreakerState, version: str, force: bool, action: str) -> BreakerState:
    if not state.held(version):
        return state
    if not force:
        names = ", ".join(sorted(a.alertname for a in state.alerts.values()))
        raise BreakerConflict(f"cannot {action} {version}: tripping alerts still firing ({names}); "
                              "wait for them to resolve, or force")
    return replace(state, alerts=MappingProxyType({}))
