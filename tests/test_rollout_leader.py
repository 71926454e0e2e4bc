"""The leader lock on a real Redis, and notification delivery to a local webhook."""

from __future__ import annotations

import threading
import uuid

import pytest
from helpers import wait_until
from notify_server import NotifyServer

from rollout.controller.leader import LeaderLock, leader_of
from rollout.controller.notifier import Notifier, redacted
from rollout.runtime import redis_client


@pytest.fixture
def client(services):
    client = redis_client(services.redis_url)
    yield client
    client.close()


@pytest.fixture
def key(client):
    name = f"test-{uuid.uuid4().hex[:8]}:controller:leader"
    yield name
    client.delete(name)


def test_one_leader_at_a_time_and_a_takeover_after_release(client, key):
    a, b = LeaderLock(client, key, 5, "a"), LeaderLock(client, key, 5, "b")
    assert a.refresh() and a.held
    assert not b.refresh() and not b.held
    assert a.refresh() and leader_of(client, key)[0] == "a"          # renewal keeps it
    assert 4 < leader_of(client, key)[1] <= 5
    a.release()
    assert not a.held and leader_of(client, key) is None               # a clean stop frees it at once
    assert b.refresh() and leader_of(client, key)[0] == "b"
    assert not a.refresh()


def test_a_dead_leaders_key_expires_and_another_takes_over(client, key):
    a, b = LeaderLock(client, key, 1, "a"), LeaderLock(client, key, 1, "b")
    assert a.refresh()
    assert not b.refresh()
    assert wait_until(b.refresh, timeout_s=5, interval_s=0.1)          # a stopped renewing: its key expired
    assert leader_of(client, key)[0] == "b"
    assert not a.refresh() and not a.held                              # and a knows it lost
    a.release()                                                        # releasing a lost lock leaves b's alone
    assert leader_of(client, key)[0] == "b"


def test_a_leader_cut_off_from_redis_stops_acting_within_its_ttl(private_redis):
    server, _port, url = private_redis
    client = redis_client(url)
    lock = LeaderLock(client, "controller:leader", 1, "a")
    assert lock.refresh()
    server.stop()
    assert lock.refresh() is lock.held  # Redis gone: still the leader only while the last renewal lasts
    assert wait_until(lambda: not lock.held, timeout_s=5, interval_s=0.05)
    assert lock.refresh() is False
    lock.release()
    client.close()


def test_a_notification_is_posted_without_waiting_for_it():
    gate = threading.Event()
    results = []
    with NotifyServer(gate=gate) as hook:
        notifier = Notifier(hook.url, timeout_s=5, attempts=1, on_result=lambda i, r: results.append((i, r)))
        future = notifier.send(7, {"event": "rollback"})
        assert hook.arrived.wait(5)
        assert not future.done()                      # the receiver is still answering: send() did not wait
        gate.set()
        notifier.close()
    assert future.result()["status"] == "sent"
    [(decision_id, result)] = results
    assert decision_id == 7 and result["attempts"] == 1 and result["url"] == redacted(hook.url)
    assert "secret" not in result["url"] and hook.requests[0]["body"] == {"event": "rollback"}


@pytest.mark.parametrize("statuses, outcome, attempts", [
    ((503, 502, 200), "sent", 3),     # retried through transient failures
    ((500,), "failed", 3),            # gave up after ROLLOUT_NOTIFY_ATTEMPTS
    ((404,), "failed", 1),            # refused: retrying would not help
])
def test_delivery_is_retried_on_transient_failures_only(statuses, outcome, attempts):
    with NotifyServer(statuses) as hook:
        notifier = Notifier(hook.url, attempts=3, backoff_s=0.01)
        result = notifier.send(1, {"event": "rollback"}).result(timeout=30)
        notifier.close()
    assert (result["status"], result["attempts"], len(hook.requests)) == (outcome, attempts, attempts)
    if outcome == "failed":
        assert f"HTTP {statuses[-1]}" in result["error"]


def test_an_unreachable_receiver_is_a_recorded_failure():
    notifier = Notifier("http://127.0.0.1:9/hook", attempts=2, backoff_s=0.01, timeout_s=1)
    result = notifier.send(1, {}).result(timeout=30)
    notifier.close()
    assert result["status"] == "failed" and result["attempts"] == 2 and "unreachable" in result["error"]


def test_without_a_url_nothing_is_sent():
    notifier = Notifier(None)
    assert notifier.send(1, {}) is None and notifier.initial_record() == {"status": "not_configured"}
    notifier.close()
