"""The rollout service in one process: evaluations on query_log rows the test writes, commands through the
admin API, flag changes made elsewhere, notifications to a local webhook, status. Real PostgreSQL and Redis.

Time is passed in (`now=`): a stage starts at T0 an hour ago, rows are logged at T0 + seconds, and
evaluations happen at chosen moments, so every verdict is computed on known data.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import numpy as np
import pytest
import redis
from analytics_rows import insert, record
from helpers import admin_headers, wait_until

from flags import GRADUAL_MIGRATION, QUERY_ANALYTICS, V2_PERCENTAGE
from rollout.app import create_app
from rollout.controller import Action, Command, TransitionError
from rollout.controller.leader import LeaderLock

PLAN = dict(ROLLOUT_STAGES="50,100", ROLLOUT_MIN_STAGE_S="60", ROLLOUT_COMPLETE_AFTER_S="120",
            ROLLOUT_EVALUATION_INTERVAL_S="30", ROLLOUT_MIN_SAMPLES="50", ROLLOUT_MIN_SAMPLES_TO_ROLL_BACK="20",
            ROLLOUT_MAX_ERROR_RATE="0.1", ROLLOUT_LATENCY_MARGIN="0.5",
            ROLLOUT_QUALITY_GATE="similarity")  # the stage mechanics, judged on query_log alone
T0 = time.time() - 3600
LATENCIES_MS = np.random.default_rng(3).lognormal(np.log(40), 0.3, size=400)


@pytest.fixture
def make(make_runtime):
    def build(**overrides):
        return make_runtime(**{**PLAN, **overrides})
    return build


def rows(start: float, version: str, n: int = 60, *, errors: int = 0, similarity: float = 0.85,
         user_prefix: str | None = None, spacing: float = 1.0, **fields):
    """`n` routed queries of `version`, one user each, logged `spacing` seconds apart from `start`."""
    prefix = user_prefix or f"{version}-{uuid.uuid4().hex[:6]}"
    return [record(logged_at=datetime.fromtimestamp(start + i * spacing, UTC), routed_version=version,
                   served_version=None if i < errors else version, error_kind="database" if i < errors else None,
                   latency_ms=float(LATENCIES_MS[i % len(LATENCIES_MS)]), top_similarity=similarity,
                   user_hash=f"{prefix}-{i}", **fields)
            for i in range(n)]


def healthy(start: float, n: int = 400):
    """Enough traffic for every gate's confidence sequence to pass (400 a version, within 40 s)."""
    return rows(start, "v1", n, spacing=0.1) + rows(start, "v2", n, spacing=0.1)


def advance(runtime, now: float = T0, actor: str = "alice"):
    return runtime.stages.command(Command(Action.ADVANCE, actor=actor), now=now)


def audit(runtime, flag: str = V2_PERCENTAGE) -> list[dict]:
    return runtime.flag_audit.recent(10, flag)


def test_a_rollout_climbs_its_plan_and_completes(make):
    runtime = make()
    service = runtime.stages
    started = advance(runtime)
    assert (started["kind"], started["actor"], started["percentage_after"], started["status_after"]) == \
        ("command", "alice", 50.0, "running")
    assert runtime.flags.get(V2_PERCENTAGE) == 50 and runtime.flags.get(GRADUAL_MIGRATION) is True
    assert audit(runtime)[0]["actor"] == "alice" and audit(runtime, GRADUAL_MIGRATION)[0]["actor"] == "alice"

    [held] = service.evaluate(now=T0 + 30)
    assert (held["kind"], held["action"], held["percentage_after"]) == ("evaluation", "hold", 50.0)
    assert "stage_time" in held["reason"]

    insert(runtime.pool, healthy(T0 + 1))
    [advanced] = service.evaluate(now=T0 + 61)
    assert advanced["action"] == "advance" and advanced["percentage_after"] == 100.0, advanced["reason"]
    assert advanced["flag_changes"] == ["FF_NEW_EMBEDDINGS_PERCENTAGE 50 -> 100"]
    assert runtime.flags.get(V2_PERCENTAGE) == 100 and audit(runtime)[0]["actor"] == "controller"
    stored = service.store.decision(advanced["id"])
    assert stored["verdict"]["outcome"] == "advance" and stored["window_started_at"] == \
        datetime.fromtimestamp(T0, UTC).isoformat()
    assert all(g["status"] == "passed" for g in stored["verdict"]["gates"])
    assert stored["evidence"]["v2"]["requests"] == 400 and stored["evidence"]["v2"]["assigned_users"] == 400
    assert stored["plan"]["stages"] == [50.0, 100.0] and stored["stage"] == 1

    # at 100 %: V2 alone, judged on its ceiling; complete once stable for ROLLOUT_COMPLETE_AFTER_S
    insert(runtime.pool, rows(T0 + 62, "v2", 400, spacing=0.1))
    [early] = service.evaluate(now=T0 + 61 + 100)
    assert early["action"] == "hold" and service.status(now=T0 + 161)["v1_retirable"] is False
    [done] = service.evaluate(now=T0 + 61 + 121)
    assert done["status_after"] == "complete" and done["percentage_after"] == 100.0
    status = service.status(now=T0 + 200)
    assert status["complete"] and status["v1_retirable"] and "the baseline can be retired" in status["summary"]
    assert status["next_evaluation_at"] is None and status["next_stage"] is None
    assert service.evaluate(now=T0 + 300) == []  # nothing left to judge


def test_starting_a_rollout_turns_analytics_on_and_a_crossover_user_is_counted(make):
    runtime = make()
    runtime.flags.set(QUERY_ANALYTICS, False, actor="bob", reason="quiet")
    started = advance(runtime)
    assert runtime.flags.get(QUERY_ANALYTICS) is True and audit(runtime, QUERY_ANALYTICS)[0]["actor"] == "alice"
    assert f"{QUERY_ANALYTICS} false -> true" in started["flag_changes"]
    insert(runtime.pool, healthy(T0 + 1) + rows(T0 + 50, "v1", 1, user_prefix="v2-shared")
           + rows(T0 + 51, "v2", 1, user_prefix="v2-shared"))
    [judged] = runtime.stages.evaluate(now=T0 + 61)
    stored = runtime.stages.store.decision(judged["id"])
    assert stored["evidence"]["users"] == {"seen": 801, "on_both": 1}
    assert stored["evidence"]["facts"]["analytics_enabled"] is True
    runtime.stages.command(Command(Action.SET, actor="bob", percentage=25.0), now=T0 + 200)
    runtime.flags.set(QUERY_ANALYTICS, False, actor="bob", reason="quiet")
    [held] = runtime.stages.evaluate(now=T0 + 200 + 1801)   # a new stage with no rows, past the grace period
    assert held["action"] == "hold" and "analytics: query analytics is off" in held["reason"]


def test_a_failing_v2_is_rolled_back_and_the_webhook_told(make):
    from notify_server import NotifyServer

    with NotifyServer() as hook:
        runtime = make(ROLLOUT_NOTIFY_URL=hook.url, ROLLOUT_NOTIFY_TOKEN="hook-token")
        advance(runtime)
        insert(runtime.pool, rows(T0 + 1, "v1") + rows(T0 + 1, "v2", errors=20))
        [rolled] = runtime.stages.evaluate(now=T0 + 20)  # a clear failure does not wait for the stage's minimum time
        assert (rolled["action"], rolled["percentage_after"], rolled["status_after"]) == \
            ("rollback", 0.0, "rolled_back")
        assert runtime.flags.get(V2_PERCENTAGE) == 0 and audit(runtime)[0]["actor"] == "controller"
        assert rolled["notification"] == {"status": "pending", "url": hook.url.split("?")[0]}
        assert wait_until(lambda: runtime.stages.store.decision(rolled["id"])["notification"]["status"] == "sent")
    [request] = hook.requests
    body = request["body"]
    assert body["event"] == "rollback" and body["decision_id"] == rolled["id"]
    assert (body["from_percentage"], body["to_percentage"], body["actor"]) == (50.0, 0.0, "controller")
    assert [g["name"] for g in body["failed_gates"]] == ["errors", "critical_errors"]
    assert "rolled back from 50 % to 0 %" in body["text"]
    assert request["headers"]["Authorization"] == "Bearer hook-token"
    stored = runtime.stages.store.decision(rolled["id"])["notification"]
    assert stored["attempts"] == 1 and stored["http_status"] == 200 and "secret" not in stored["url"]
    # a persisting failure after the rollback changes nothing more; the controller never climbs back by itself
    [again] = runtime.stages.evaluate(now=T0 + 60)
    assert again["percentage_after"] == 0.0 and again["status_after"] == "rolled_back"


def test_a_notification_a_stopped_process_never_sent_is_sent_by_the_leader(make, monkeypatch):
    from notify_server import NotifyServer

    with NotifyServer() as hook:
        crashed = make(ROLLOUT_NOTIFY_URL=hook.url)
        advance(crashed)
        monkeypatch.setattr(crashed.stages.notifier, "send", lambda *args: None)  # killed before its POST
        rolled = crashed.stages.command(Command(Action.ROLLBACK, actor="erin", reason="wrong prices"), now=T0 + 5)
        assert rolled["notification"]["status"] == "pending"

        leader = make(ROLLOUT_NOTIFY_URL=hook.url)
        assert leader.stages.resend_undelivered() == []  # within the delivery deadline: its sender may be busy
        assert leader.stages.resend_undelivered(older_than_s=0) == [rolled["id"]]
        assert wait_until(lambda: leader.stages.store.decision(rolled["id"])["notification"]["status"] == "sent")
        assert leader.stages.resend_undelivered(older_than_s=0) == []  # delivered: never again
    [request] = hook.requests
    body = request["body"]
    assert (body["event"], body["decision_id"], body["redelivered"]) == ("rollback", rolled["id"], True)
    assert (body["from_percentage"], body["to_percentage"], body["actor"]) == (50.0, 0.0, "erin")
    assert "wrong prices" in body["text"]


def test_a_sample_ratio_mismatch_pauses_until_a_person_resumes(make):
    from notify_server import NotifyServer

    with NotifyServer() as hook:
        runtime = make(ROLLOUT_NOTIFY_URL=hook.url)
        advance(runtime)
        insert(runtime.pool, rows(T0 + 1, "v1", 20) + rows(T0 + 1, "v2", 120))  # 86 % of users on V2 at 50 %
        [paused] = runtime.stages.evaluate(now=T0 + 200)
        assert (paused["action"], paused["status_after"], paused["percentage_after"]) == ("pause", "paused", 50.0)
        assert "sample_ratio" in paused["reason"]
        assert wait_until(lambda: len(hook.requests) == 1)
        assert hook.requests[0]["body"]["event"] == "pause"
        [still] = runtime.stages.evaluate(now=T0 + 300)
        assert still["status_after"] == "paused"  # a pause never advances, whatever the other gates say
        resumed = runtime.stages.command(Command(Action.RESUME, actor="dana", reason="guard fixed"), now=T0 + 400)
        assert resumed["status_after"] == "running" and resumed["reason"].endswith("by dana: guard fixed")
    assert runtime.stages.store.read().state.stage_started_at == pytest.approx(T0 + 400)  # a new window


def test_a_flag_changed_elsewhere_is_respected_and_recorded(make):
    runtime = make()
    client = create_app(runtime.settings, runtime=runtime).test_client()
    advance(runtime)
    changed = client.put(f"/api/flags/{V2_PERCENTAGE}", json={"value": 30, "reason": "customer escalation"},
                         headers={**admin_headers(), "X-Rollout-Actor": "bob"})
    assert changed.status_code == 200
    insert(runtime.pool, healthy(time.time() + 1))
    made = runtime.stages.evaluate(now=time.time() + 500)
    adopted, judged = made
    assert (adopted["kind"], adopted["actor"], adopted["status_after"], adopted["percentage_after"]) == \
        ("flag_change", "bob", "held", 30.0)
    assert "changed outside the controller by bob" in adopted["reason"]
    when = datetime.fromisoformat(audit(runtime)[0]["changed_at"]).timestamp()
    assert runtime.stages.store.read().state.stage_started_at == pytest.approx(when, abs=1e-3)  # since the change
    assert judged["kind"] == "evaluation" and judged["status_after"] == "held"
    assert runtime.flags.get(V2_PERCENTAGE) == 30  # never undone

    # an alert's rollback (percentage to 0) during a rollout: taken as a rollback
    runtime.stages.command(Command(Action.RESUME, actor="bob"))
    runtime.rollback.zero_percentage(actor="alert:RagV2Down", reason="alert fired", result=_Result())
    adopted = runtime.stages.reconcile()
    assert (adopted["actor"], adopted["status_after"], adopted["percentage_after"]) == \
        ("alert:RagV2Down", "rolled_back", 0.0)
    assert runtime.stages.reconcile() is None  # once


class _Result:
    def __init__(self):
        self.actions, self.warnings = [], []


def test_commands_through_the_admin_api(make):
    runtime = make()
    client = create_app(runtime.settings, runtime=runtime).test_client()
    carol = {**admin_headers(), "X-Rollout-Actor": "carol"}

    def stage(body, headers=carol):
        return client.post("/api/rollout/stage", json=body, headers=headers)

    assert stage({"action": "advance"}, headers={}).status_code == 401
    assert stage({"action": "advance"}, headers=admin_headers("wrong")).status_code == 403
    for body, problem in [({"action": "set"}, "set needs a percentage"),
                          ({"action": "set", "percentage": 12.345}, "0.01"),
                          ({"action": "set", "percentage": 150}, "percentage"),
                          ({"action": "hold", "percentage": 10}, "only for set"),
                          ({"action": "advance", "rollback_to": "zero"}, "only for rollback"),
                          ({"action": "jump"}, "action"), ({"action": "hold", "force": True}, "force")]:
        response = stage(body)
        assert response.status_code == 400 and problem in response.get_json()["detail"], body
    assert runtime.stages.store.decisions() == []  # refused input changes nothing

    def conflict(body, words):
        response = stage(body)
        assert response.status_code == 409 and words in response.get_json()["detail"], response.get_json()

    conflict({"action": "rollback"}, "nothing to roll back")
    conflict({"action": "hold"}, "nothing to hold")
    started = stage({"action": "resume", "reason": "go"})
    assert started.status_code == 200
    assert started.get_json()["decision"]["reason"] == "started at 50 % by carol: go"
    assert started.get_json()["status"]["status"] == "running"
    conflict({"action": "resume"}, "nothing to resume: the rollout is running")
    conflict({"action": "advance", "expected_percentage": 25}, "the rollout is at 50 %, not 25 %")
    assert stage({"action": "hold"}).get_json()["status"]["status"] == "held"
    before = runtime.stages.store.read().state.stage_started_at
    assert stage({"action": "resume"}).get_json()["status"]["status"] == "running"
    assert runtime.stages.store.read().state.stage_started_at == before  # a hold keeps the stage's window
    assert stage({"action": "advance", "expected_percentage": 50}).get_json()["status"]["percentage"] == 100
    completed = stage({"action": "advance"}).get_json()
    assert completed["status"]["status"] == "complete" and completed["status"]["v1_retirable"]
    conflict({"action": "advance"}, "the rollout is complete; nothing to advance")
    back = stage({"action": "rollback", "rollback_to": "previous", "reason": "customer report"}).get_json()
    assert (back["status"]["status"], back["status"]["percentage"]) == ("rolled_back", 50.0)
    assert back["decision"]["notification"] == {"status": "not_configured"}
    assert stage({"action": "set", "percentage": 0}).get_json()["status"]["status"] == "idle"
    assert runtime.flags.get(V2_PERCENTAGE) == 0

    history = client.get("/api/rollout/decisions?limit=50", headers=admin_headers())
    assert client.get("/api/rollout/decisions").status_code == 401
    decisions = history.get_json()["decisions"]
    assert [d["action"] for d in decisions] == ["set", "rollback", "advance", "advance", "resume", "hold", "resume"]
    assert {d["actor"] for d in decisions} == {"carol"} and {d["kind"] for d in decisions} == {"command"}
    assert {a["actor"] for a in audit(runtime)} == {"carol"}
    assert client.get("/api/rollout/decisions?limit=0", headers=admin_headers()).status_code == 400


def test_status_tells_where_the_rollout_is_and_who_drives_it(make):
    runtime = make()
    client = create_app(runtime.settings, runtime=runtime).test_client()
    idle = client.get("/api/rollout/status").get_json()
    assert (idle["status"], idle["percentage"], idle["stage"], idle["stages"]) == ("idle", 0.0, None, [50.0, 100.0])
    assert idle["summary"].startswith("idle at 0 %") and idle["last_decision"] is None
    assert idle["controller"]["active"] is False and idle["warnings"] == []

    advance(runtime, now=time.time() - 90)
    running = client.get("/api/rollout/status").get_json()
    assert running["summary"].startswith("running at 50 % (stage 1 of 2), 90 s in the stage of at least 60 s")
    assert running["last_decision"]["actor"] == "alice" and running["flags"]["in_sync"] is True
    assert running["warnings"] == ["no controller is running: nothing is judged until `rollout controller` runs"]

    leader = LeaderLock(runtime.redis, runtime.stages.leader_key, 30, identity="host-a:1:abc")
    assert leader.refresh()
    try:
        led = client.get("/api/rollout/status").get_json()
        assert led["controller"]["leader"] == "host-a:1:abc" and led["controller"]["active"] is True
        assert led["warnings"] == [] and led["next_evaluation_at"] is not None
        runtime.flags.set(V2_PERCENTAGE, 75, actor="eve")
        drifted = client.get("/api/rollout/status").get_json()
        assert drifted["flags"]["in_sync"] is False and "taken as a person's" in drifted["warnings"][0]
    finally:
        leader.release()


def test_an_evaluation_overtaken_by_a_command_is_ignored(make):
    runtime = make()
    advance(runtime)
    insert(runtime.pool, healthy(T0 + 1))
    collect = runtime.stages.collector.collect
    command = Command(Action.SET, actor="frank", percentage=75)

    def slow_collect(*args):
        collected = collect(*args)
        runtime.stages.command(command)  # while the evidence was being gathered
        return collected

    runtime.stages.collector.collect = slow_collect
    [ignored] = runtime.stages.evaluate(now=T0 + 61)
    assert ignored["action"] == "advance"
    assert ignored["reason"] == "ignored: the stage changed after this evidence was gathered"
    assert (ignored["percentage_after"], ignored["status_after"]) == (75.0, "running")
    assert runtime.flags.get(V2_PERCENTAGE) == 75

    # a hold keeps the window, so the same evidence is judged, but a held rollout never advances
    runtime.stages.collector.collect = collect
    runtime.stages.command(Command(Action.SET, actor="frank", percentage=50), now=T0)
    runtime.stages.command(Command(Action.HOLD, actor="frank"))
    [held] = runtime.stages.evaluate(now=T0 + 61)
    assert held["reason"].startswith("advance: all") and held["status_after"] == "held"
    assert held["percentage_after"] == 50.0 and runtime.flags.get(V2_PERCENTAGE) == 50


def test_a_flag_that_cannot_be_set_changes_nothing_and_says_so(make, private_redis):
    server, _port, url = private_redis
    runtime = make(REDIS_URL=url)
    advance(runtime)
    insert(runtime.pool, healthy(T0 + 1))
    collect = runtime.stages.collector.collect

    def collect_then_lose_redis(*args):
        collected = collect(*args)
        server.stop()
        return collected

    runtime.stages.collector.collect = collect_then_lose_redis
    [decision] = runtime.stages.evaluate(now=T0 + 61)
    assert decision["action"] == "advance" and decision["percentage_after"] == 50.0
    assert decision["error"].startswith("FF_NEW_EMBEDDINGS_PERCENTAGE could not be set, nothing changed")
    state = runtime.stages.store.read().state
    assert (state.percentage, state.status.value, state.stage_started_at) == (50.0, "running", pytest.approx(T0))
    with pytest.raises(redis.RedisError):  # a person's command needs Redis too: refused, nothing written
        runtime.stages.command(Command(Action.HOLD, actor="gina"))
    assert runtime.stages.store.read().state.status.value == "running"


def test_a_command_that_does_not_apply_leaves_no_trace(make):
    runtime = make()
    with pytest.raises(TransitionError, match="nothing to hold"):
        runtime.stages.command(Command(Action.HOLD, actor="hal"))
    assert runtime.stages.store.decisions() == [] and audit(runtime) == []
