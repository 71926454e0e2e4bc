"""Breaker transitions and storages. One test mixin runs against every storage (memory and
Redis), as pybreaker's own storage tests do; pybreaker's pitfalls have regression tests."""

import threading
import uuid

import pytest
import redis

from flags import ReplicatedHash
from rollout.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerConflict,
    BreakerPolicy,
    BreakerState,
    Cause,
    FiringAlert,
    MemoryBreakerStorage,
    ReplicatedBreakerStorage,
)
from rollout.breaker import state as t

VERSIONS = ("v1", "v2")
POLICY = BreakerPolicy(fail_max=3, reset_timeout_s=30, probe_lease_s=10)
NOW = 1_700_000_000.0


def empty() -> BreakerState:
    return BreakerState.decode({}, VERSIONS)


def alert(fingerprint="fp-1", starts_at="2024-05-01T10:00:00+00:00") -> FiringAlert:
    return FiringAlert(fingerprint, "V2ErrorRate", "critical", "alertmanager", starts_at, NOW)


class StorageContract:
    """Every storage must pass these; `storage()` and `twin(storage)` come from the subclass."""

    def test_starts_closed_with_no_failures(self):
        s = self.storage().state()
        assert s.records["v2"].state == CLOSED and s.records["v2"].failures == 0 and not s.alerts

    def test_counts_then_trips_at_fail_max(self):
        store = self.storage()
        outcomes = [store.update(lambda s: t.failed(s, "v2", "timeout", NOW, POLICY))[1] for _ in range(3)]
        assert outcomes == ["counted", "counted", "tripped"]
        record = store.state().records["v2"]
        assert (record.state, record.failures, record.cause, record.detail) == (OPEN, 3, Cause.FAILURES, "timeout")
        assert store.state().records["v1"].state == CLOSED

    def test_a_success_resets_the_count(self):
        store = self.storage()
        store.update(lambda s: t.failed(s, "v2", "embedding", NOW, POLICY))
        changed, outcome = store.update(lambda s: t.succeeded(s, "v2", "w1", NOW))
        assert changed and outcome == "reset" and store.state().records["v2"].failures == 0
        assert store.update(lambda s: t.succeeded(s, "v2", "w1", NOW)) == (False, "ignored")

    def test_an_unchanged_state_writes_nothing(self):
        store = self.storage()
        assert store.update(lambda s: (None, "nothing")) == (False, "nothing")

    def test_only_one_worker_claims_the_probe(self):
        store = self.storage()
        for _ in range(3):
            store.update(lambda s: t.failed(s, "v2", "timeout", NOW, POLICY))
        later = NOW + POLICY.reset_timeout_s
        first = store.update(lambda s: t.probe_claimed(s, "v2", "w1", later, POLICY))
        second = store.update(lambda s: t.probe_claimed(s, "v2", "w2", later, POLICY))
        assert first == (True, "claimed") and second == (False, "not_due")
        record = store.state().records["v2"]
        assert record.state == HALF_OPEN and record.probe_owner == "w1"

    def test_concurrent_failures_are_all_counted_and_trip_once(self):
        store = self.storage()
        policy = BreakerPolicy(fail_max=200)
        outcomes = []
        lock = threading.Lock()

        def fail(n):
            for _ in range(n):
                _, outcome = store.update(lambda s: t.failed(s, "v2", "timeout", NOW, policy))
                with lock:
                    outcomes.append(outcome)

        threads = [threading.Thread(target=fail, args=(30,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert outcomes.count("tripped") == 1 and outcomes.count("ignored") == 40
        assert store.state().records["v2"].failures == 200

    def test_state_round_trips_through_its_encoding(self):
        store = self.storage()
        store.update(lambda s: t.alert_fired(s, alert(), NOW, percentage=25, save_percentage=True))
        again = BreakerState.decode(store.state().encode(), VERSIONS)
        assert again == store.state()
        assert again.saved_percentage == 25 and "fp-1" in again.alerts


class TestMemoryStorage(StorageContract):
    def storage(self):
        return MemoryBreakerStorage(empty())


class TestReplicatedStorage(StorageContract):
    @pytest.fixture(autouse=True)
    def _redis(self, services):
        self.client = redis.Redis.from_url(services.redis_url, decode_responses=True)
        self.key = f"test-{uuid.uuid4().hex[:12]}:breaker"
        yield
        self.client.delete(self.key, f"{self.key}:version")
        self.client.close()

    def storage(self):
        return ReplicatedBreakerStorage(ReplicatedHash(self.client, self.key), VERSIONS)

    def test_another_process_copy_sees_the_change_after_a_load(self):
        mine, theirs = self.storage(), self.storage()
        mine.update(lambda s: t.forced_open(s, "v2", NOW, reason="drill", actor="alice"))
        assert theirs.state().records["v2"].state == CLOSED  # nothing loaded yet: local reads never do I/O
        theirs.replica.load()
        record = theirs.state().records["v2"]
        assert (record.state, record.cause, record.detail, record.actor) == (OPEN, Cause.MANUAL, "drill", "alice")


# -- transitions (pure) ------------------------------------------------------------------

def tripped_by_failures() -> BreakerState:
    state = empty()
    for _ in range(POLICY.fail_max):
        state, _ = t.failed(state, "v2", "timeout", NOW, POLICY)
    return state


def test_a_breaker_opened_by_failures_half_opens_after_reset_timeout():
    state = tripped_by_failures()
    assert t.probe_claimed(state, "v2", "w", NOW + POLICY.reset_timeout_s - 1, POLICY) == (None, "not_due")
    half, outcome = t.probe_claimed(state, "v2", "w", NOW + POLICY.reset_timeout_s, POLICY)
    assert outcome == "claimed" and half.records["v2"].state == HALF_OPEN


def test_pitfall_no_half_open_while_a_tripping_alert_fires():
    state, _ = t.alert_fired(tripped_by_failures(), alert(), NOW, percentage=10, save_percentage=True)
    for later in (NOW + POLICY.reset_timeout_s, NOW + 86400 * 30):
        assert t.probe_claimed(state, "v2", "w", later, POLICY) == (None, "not_due")


def test_pitfall_a_breaker_opened_by_hand_never_half_opens_on_its_timer():
    state, _ = t.forced_open(empty(), "v2", NOW, reason="drill", actor="alice")
    assert t.probe_claimed(state, "v2", "w", NOW + 86400 * 30, POLICY) == (None, "not_due")


def test_a_resolved_alert_waits_for_a_rearm_by_default():
    state, _ = t.alert_fired(empty(), alert(), NOW, percentage=10, save_percentage=True)
    state, outcome = t.alert_resolved(state, "fp-1", NOW + 5, auto_release=False)
    assert outcome == "awaiting_rearm" and state.records["v2"].state == OPEN and not state.alerts
    assert t.probe_claimed(state, "v2", "w", NOW + 86400, POLICY) == (None, "not_due")
    state, outcome = t.rearmed(state, "v2", NOW + 10, force=False, actor="bob")
    assert outcome == "rearmed" and state.records["v2"].state == HALF_OPEN
    assert t.probe_claimed(state, "v2", "w", NOW + 10, POLICY)[1] == "claimed"  # unowned: claimable at once


def test_the_breaker_stays_held_until_every_tripping_alert_resolves():
    state, _ = t.alert_fired(empty(), alert("a"), NOW, percentage=10, save_percentage=True)
    state, _ = t.alert_fired(state, alert("b"), NOW, percentage=0, save_percentage=True)
    assert state.saved_percentage == 10  # the first trip's value, not the 0 it set
    state, outcome = t.alert_resolved(state, "a", NOW, auto_release=True)
    assert outcome == "still_held" and state.records["v2"].state == OPEN
    with pytest.raises(BreakerConflict, match="V2ErrorRate"):
        t.closed(state, "v2", NOW, force=False, actor="bob")
    state, outcome = t.alert_resolved(state, "b", NOW, auto_release=True)
    assert outcome == "released" and state.records["v2"].state == HALF_OPEN


def test_a_repeat_changes_nothing_but_a_new_firing_does():
    state, _ = t.alert_fired(empty(), alert(), NOW, percentage=10, save_percentage=True)
    assert t.alert_fired(state, alert(), NOW + 60, percentage=0, save_percentage=True) == (None, "repeat")
    refired, outcome = t.alert_fired(state, alert(starts_at="2024-05-01T11:00:00+00:00"), NOW + 60,
                                     percentage=0, save_percentage=True)
    assert outcome == "tripped" and refired.alerts["fp-1"].starts_at == "2024-05-01T11:00:00+00:00"


def test_a_failed_probe_reopens_and_its_success_closes():
    state, _ = t.probe_claimed(tripped_by_failures(), "v2", "w1", NOW + 60, POLICY)
    reopened, outcome = t.failed(state, "v2", "timeout", NOW + 61, POLICY)
    assert outcome == "reopened" and reopened.records["v2"].opened_at == NOW + 61
    assert t.succeeded(state, "v2", "w2", NOW + 61) == (None, "ignored")  # not the probe's owner
    closed, outcome = t.succeeded(state, "v2", "w1", NOW + 61)
    assert outcome == "closed" and closed.records["v2"].state == CLOSED and closed.records["v2"].failures == 0


def test_a_probe_lease_expires_so_another_worker_may_probe():
    state, _ = t.probe_claimed(tripped_by_failures(), "v2", "w1", NOW + 60, POLICY)
    assert t.probe_claimed(state, "v2", "w2", NOW + 61, POLICY) == (None, "not_due")
    again, outcome = t.probe_claimed(state, "v2", "w2", NOW + 60 + POLICY.probe_lease_s, POLICY)
    assert outcome == "claimed" and again.records["v2"].probe_owner == "w2"


def test_the_saved_percentage_is_forgotten_only_once_restored_and_only_if_unchanged():
    state, _ = t.forced_open(empty(), "v2", NOW, reason="rollback", actor="alice", percentage=40)
    assert t.percentage_forgotten(state, 25) == (None, False)  # another value saved since: kept
    forgotten, done = t.percentage_forgotten(state, 40)
    assert done and forgotten.saved_percentage is None
