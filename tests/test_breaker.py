"""The breakers in the gateway: real V2 failures, sharing across processes, the half-open probe,
the API and CLI, an alert while Redis is down, and gunicorn workers switching together."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from alert_payloads import alertmanager
from helpers import WEBHOOK_SECRET, admin_headers, load_and_embed, settings_for, wait_until

from flags import GRADUAL_MIGRATION, PARALLEL_RAG, V2_PERCENTAGE, bucket, threshold
from rollout.alerts.actions import ActionResult
from rollout.app import create_app
from rollout.routing import Reason
from rollout.server import GatewayProcess
from rollout.services.ports import free_port

BREAKER = "/api/monitoring/circuit-breaker"
BEARER = {"Authorization": f"Bearer {WEBHOOK_SECRET}"}


def all_to_v2(runtime):
    runtime.flags.set(GRADUAL_MIGRATION, True, actor="test")
    runtime.flags.set(V2_PERCENTAGE, 100, actor="test")


def state(runtime, version="v2"):
    return runtime.breakers.state().records[version]


def ask(client, user, headers=None):
    response = client.post("/api/rag/query", json={"query": "pool opening hours", "user_id": user},
                           headers=headers or {})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def failing_v2(services, prefix, **env):
    """V2 embeds queries through OpenAI's SDK pointed at a closed port: every V2 search fails for real.

    The coverage guard is off: V2's model has no vectors here, and these tests are about the breaker.
    """
    return settings_for(services, REDIS_KEY_PREFIX=prefix, V2_EMBEDDER="openai", OPENAI_API_KEY="sk-test",
                        V2_MIN_COVERAGE_PERCENT="0",
                        OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1", QUERY_EMBEDDING_MAX_ATTEMPTS="1",
                        QUERY_EMBEDDING_TIMEOUT_S="1", **env)


# -- real failures ----------------------------------------------------------------------

def test_fail_max_real_v2_failures_fall_back_then_route_to_v1(make_runtime, services, runtime):
    load_and_embed(runtime)
    failing = make_runtime(failing_v2(services, runtime.settings.redis_key_prefix, BREAKER_FAIL_MAX="3",
                                      BREAKER_RESET_TIMEOUT_S="3600"))
    client = create_app(failing.settings, runtime=failing).test_client()
    all_to_v2(failing)

    for n in range(3):
        answer = ask(client, f"user-{n}")
        assert answer["served_by"] == "v1" and answer["fallback"] is True
        assert answer["decision"] == {"version": "v2", "reason": "percentage", "bucket": answer["decision"]["bucket"]}
        assert answer["fallback_reason"] == "embedding"
    record = state(failing)
    assert (record.state, record.failures, record.cause.value, record.detail) == ("open", 3, "failures", "embedding")

    answer = ask(client, "user-9")
    assert answer["served_by"] == "v1" and answer["fallback"] is False
    assert answer["decision"]["version"] == "v1" and answer["decision"]["reason"] == "breaker_open"
    failing.breakers.refresh_gauges()
    registry = failing.metrics.registry
    assert registry.get_sample_value("rag_fallbacks_total", {"reason": "embedding"}) == 3
    assert registry.get_sample_value("rollout_rollbacks_total", {"trigger": "failures"}) == 1
    assert registry.get_sample_value("circuit_breaker_state", {"version": "v2"}) == 2
    assert wait_until(lambda: state(runtime).state == "open")  # the other process sees it too
    status = client.get(BREAKER).get_json()["versions"]["v2"]
    assert status["cause"] == "failures" and status["next_probe_at"] is not None and status["opened_at"]


# -- shared between processes ---------------------------------------------------------------

def test_breaker_state_is_shared_between_two_gateway_processes(make_runtime, settings):
    one = make_runtime(settings.with_overrides(breaker_fail_max=3))
    two = make_runtime(settings.with_overrides(breaker_fail_max=3))
    one.breakers.record_failure("v2", "timeout")
    two.breakers.record_failure("v2", "timeout")
    assert wait_until(lambda: state(one).failures == 2 and state(two).failures == 2)
    two.breakers.record_success("v2")  # consecutive failures: a success anywhere resets
    assert wait_until(lambda: state(one).failures == 0)
    for _ in range(2):
        one.breakers.record_failure("v2", "timeout")
    two.breakers.record_failure("v2", "database")
    assert wait_until(lambda: two.router.decide("u", forced="v2").reason is Reason.BREAKER_OPEN)
    assert wait_until(lambda: one.router.decide("u", forced="v2").reason is Reason.BREAKER_OPEN)
    assert state(one).detail == "database"

    client = create_app(one.settings, runtime=one).test_client()
    assert client.post(BREAKER, json={"action": "close"}, headers=admin_headers()).status_code == 200
    assert wait_until(lambda: two.router.decide("u", forced="v2").version == "v2")


def test_only_one_process_probes_and_its_success_closes(make_runtime, settings):
    settings = settings.with_overrides(breaker_fail_max=1, breaker_reset_timeout_s=0.3, flags_check_interval_s=0.2)
    one, two = make_runtime(settings), make_runtime(settings)
    idle = make_runtime(settings)  # serves no queries: must never hold the probe
    load_and_embed(one)
    all_to_v2(one)
    assert wait_until(lambda: two.flags.get(V2_PERCENTAGE) == 100)
    one.breakers.record_failure("v2", "timeout")
    assert wait_until(lambda: state(two).state == "open")
    probes = []

    def traffic():
        for runtime in (one, two):
            if runtime.router.decide(f"user-{len(probes)}-{time.monotonic()}").version == "v2":
                probes.append(runtime)
        return bool(probes)

    assert wait_until(traffic)
    [owner] = probes
    other = two if owner is one else one
    # the claim reaches every process by pub/sub, a moment later
    assert wait_until(lambda: state(idle).probe_owner == owner.breakers.worker and state(idle).state == "half-open")
    assert other.router.decide("user-a").reason is Reason.BREAKER_OPEN
    assert owner.router.decide("user-b").reason is Reason.BREAKER_OPEN  # the one probe is on its way
    owner.breakers.record_success("v2")
    assert wait_until(lambda: state(one).state == "closed" and state(two).state == "closed")
    assert other.router.decide("user-c").version == "v2"


def users_by_version(runtime, percentage):
    """A user routed to V2 and one routed to V1 at `percentage`, by their buckets (no decision taken)."""
    group, cut = runtime.settings.routing_group, threshold(percentage)
    users = [f"user-{n}" for n in range(200)]
    return (next(u for u in users if bucket(group, u) < cut), next(u for u in users if bucket(group, u) >= cut))


def test_a_shadow_never_spends_the_half_open_probe(make_runtime, settings):
    """Shadow on, half-open: V1 users' shadows read the breaker without taking its probe; the next
    candidate user is the probe, its success closes the breaker (no one waits out the probe lease)."""
    runtime = make_runtime(settings.with_overrides(breaker_fail_max=1, breaker_reset_timeout_s=0.3,
                                                   flags_check_interval_s=0.2))
    client = create_app(runtime.settings, runtime=runtime).test_client()
    load_and_embed(runtime)
    runtime.flags.set(GRADUAL_MIGRATION, True, actor="test")
    runtime.flags.set(V2_PERCENTAGE, 50, actor="test")
    runtime.flags.set(PARALLEL_RAG, True, actor="test")
    candidate_user, baseline_user = users_by_version(runtime, 50)
    runtime.breakers.record_failure("v2", "timeout")
    assert ask(client, candidate_user)["decision"]["reason"] == "breaker_open"  # demand for V2: claims the probe
    assert wait_until(lambda: state(runtime).state == "half-open"
                      and state(runtime).probe_owner == runtime.breakers.worker)

    registry = runtime.metrics.registry
    held_off = {"version": "v2", "reason": "held_off"}
    before = registry.get_sample_value("rag_shadow_skipped_total", held_off)
    for _ in range(3):
        assert ask(client, baseline_user)["served_by"] == "v1"
    assert registry.get_sample_value("rag_shadow_skipped_total", held_off) == before + 3
    assert state(runtime).state == "half-open"

    probe = ask(client, candidate_user)
    assert probe["served_by"] == "v2" and probe["decision"]["reason"] == "percentage"
    assert wait_until(lambda: state(runtime).state == "closed")
    assert ask(client, candidate_user)["served_by"] == "v2"


def test_pitfall_no_half_open_while_the_alert_fires(make_runtime, settings):
    runtime = make_runtime(settings.with_overrides(breaker_fail_max=1, breaker_reset_timeout_s=0.1))
    client = create_app(runtime.settings, runtime=runtime).test_client()
    runtime.breakers.record_failure("v2", "timeout")
    assert client.post("/api/alerts/webhook", json=alertmanager(), headers=BEARER).status_code == 200
    ticks = []
    runtime.replicator.on_tick(lambda: ticks.append(time.monotonic()))
    assert wait_until(lambda: len(ticks) >= 4)  # several chances to half-open, long after reset_timeout
    record = state(runtime)
    assert record.state == "open" and record.cause.value == "alert"
    assert client.get(BREAKER).get_json()["versions"]["v2"]["next_probe_at"] is None


# -- API and CLI ----------------------------------------------------------------------------

def test_breaker_api_opens_closes_and_rolls_back(client, runtime):
    load_and_embed(runtime)
    all_to_v2(runtime)
    assert client.get(BREAKER).get_json()["versions"]["v2"]["state"] == "closed"
    assert client.post(BREAKER, json={"action": "open"}).status_code == 401
    assert client.post(BREAKER, json={"action": "open"}, headers=admin_headers("nope")).status_code == 403
    bad = client.post(BREAKER, json={"action": "explode"}, headers=admin_headers())
    assert bad.status_code == 400 and bad.get_json()["fields"][0]["field"] == "action"

    body = client.post(BREAKER, json={"action": "open", "reason": "drill"},
                       headers={**admin_headers(), "X-Rollout-Actor": "alice"}).get_json()
    assert body["outcome"] == "opened" and body["versions"]["v2"]["cause"] == "manual"
    assert body["versions"]["v2"]["actor"] == "alice" and body["versions"]["v2"]["detail"] == "drill"
    assert ask(client, "u1")["decision"]["reason"] == "breaker_open"
    assert client.post(BREAKER, json={"action": "close"}, headers=admin_headers()).status_code == 200
    assert ask(client, "u1")["served_by"] == "v2"

    body = client.post(BREAKER, json={"action": "rollback", "reason": "bad answers"},
                       headers=admin_headers()).get_json()
    assert body["actions"] == ["breaker v2 open", f"{V2_PERCENTAGE} 100 -> 0"]
    assert body["saved_percentage"] == 100 and runtime.flags.get(V2_PERCENTAGE) == 0
    body = client.post(BREAKER, json={"action": "rearm"}, headers=admin_headers()).get_json()
    assert body["versions"]["v2"]["state"] == "half-open" and runtime.flags.get(V2_PERCENTAGE) == 100
    assert runtime.metrics.registry.get_sample_value("rollout_rollbacks_total", {"trigger": "manual"}) == 2


def run_cli(runtime, tmp_path, *args):
    env = {**os.environ, "DATABASE_URL": runtime.settings.database_url, "REDIS_URL": runtime.settings.redis_url,
           "REDIS_KEY_PREFIX": runtime.settings.redis_key_prefix}
    return subprocess.run([sys.executable, "-m", "rollout.cli", *args], env=env, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)


def test_cli_rollback_status_and_rearm(runtime, tmp_path):
    all_to_v2(runtime)
    runtime.flags.set(V2_PERCENTAGE, 35, actor="test")
    done = run_cli(runtime, tmp_path, "rollback", "--reason", "drill")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"opened: breaker v2 open; {V2_PERCENTAGE} 35 -> 0"
    assert wait_until(lambda: state(runtime).state == "open" and runtime.flags.get(V2_PERCENTAGE) == 0)
    assert state(runtime).actor.startswith("cli:")

    status = run_cli(runtime, tmp_path, "breaker", "status")
    assert status.returncode == 0, status.stderr
    assert "v2  open       failures 0/5  cause manual (drill)" in status.stdout
    assert "saved percentage for the restore: 35" in status.stdout
    as_json = json.loads(run_cli(runtime, tmp_path, "breaker", "status", "--json").stdout)
    assert as_json["versions"]["v2"]["state"] == "open"

    rearm = run_cli(runtime, tmp_path, "breaker", "rearm")
    assert rearm.returncode == 0 and "(restored)" in rearm.stdout
    assert wait_until(lambda: runtime.flags.get(V2_PERCENTAGE) == 35 and state(runtime).state == "half-open")
    closed = run_cli(runtime, tmp_path, "breaker", "close", "v2", "--reason", "probe skipped")
    assert closed.returncode == 0 and closed.stdout.startswith("closed:")
    bad = run_cli(runtime, tmp_path, "breaker", "open", "v3")
    assert bad.returncode == 1 and bad.stderr.startswith("error: no version named v3 is served")
    actions = [e["actor"].startswith("cli:") for e in runtime.alert_events.recent(kind="action")]
    assert actions == [True, True, True]


def test_cli_rollback_without_redis_says_so_and_changes_nothing(runtime, tmp_path):
    env = {**os.environ, "DATABASE_URL": runtime.settings.database_url,
           "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "REDIS_KEY_PREFIX": runtime.settings.redis_key_prefix}
    done = subprocess.run([sys.executable, "-m", "rollout.cli", "rollback"], env=env, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 1 and "error: Redis is unreachable" in done.stderr
    assert "nothing was changed" in done.stderr and runtime.alert_events.recent() == []


def test_cli_refuses_while_an_alert_fires_unless_forced(runtime, tmp_path):
    client = create_app(runtime.settings, runtime=runtime).test_client()
    client.post("/api/alerts/webhook", json=alertmanager(), headers=BEARER)
    refused = run_cli(runtime, tmp_path, "breaker", "close")
    assert refused.returncode == 1 and "RagCandidateErrorRateHigh" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert state(runtime).state == "open"
    forced = run_cli(runtime, tmp_path, "breaker", "close", "--force")
    assert forced.returncode == 0, forced.stderr


# -- Redis down ---------------------------------------------------------------------------------



def test_an_alert_while_redis_is_down_holds_v2_locally_is_stored_and_replayed(make_runtime, services,
                                                                               private_redis):
    server, port, redis_url = private_redis
    settings = settings_for(services, REDIS_URL=redis_url, FLAGS_CHECK_INTERVAL_S="0.2", ALERT_OUTAGE_POLL_S="0.2")
    receiver, other = make_runtime(settings), make_runtime(settings)
    load_and_embed(receiver)
    all_to_v2(receiver)
    runtime_client = create_app(receiver.settings, runtime=receiver).test_client()
    assert wait_until(lambda: other.flags.get(V2_PERCENTAGE) == 100)

    server.stop()
    assert wait_until(lambda: not receiver.replicator.healthy and not other.replicator.healthy, timeout_s=15)
    response = runtime_client.post("/api/alerts/webhook", json=alertmanager(), headers=BEARER)
    assert response.status_code == 503, response.get_json()
    body = response.get_json()
    assert body["error"] == "redis_unavailable" and body["alerts"][0]["outcome"] == "deferred"
    # this worker holds V2 off at once; the alert is stored as pending in PostgreSQL
    assert receiver.router.decide("u1").reason is Reason.ALERT
    [event] = receiver.alert_events.recent()
    assert event["pending"] is True and event["fingerprint"] == "5c8e0fe1b3c7d2a4"
    # every other worker picks it up from PostgreSQL while Redis stays down
    assert wait_until(lambda: other.router.decide("u1").reason is Reason.ALERT, timeout_s=10)
    assert ask(runtime_client, "u1")["served_by"] == "v1"

    server.start(port)
    assert wait_until(lambda: receiver.replicator.healthy and other.replicator.healthy, timeout_s=15)
    # replayed for everybody: in Redis, with the percentage rollback the outage had prevented
    assert wait_until(lambda: receiver.alert_events.recent()[0]["pending"] is False, timeout_s=10)
    assert wait_until(lambda: not other.breakers.local_only and other.flags.get(V2_PERCENTAGE) == 0)
    described = other.breakers.describe()
    assert [a["fingerprint"] for a in described["firing_alerts"]] == ["5c8e0fe1b3c7d2a4"]
    assert described["saved_percentage"] == 100 and described["versions"]["v2"]["cause"] == "alert"
    assert receiver.alert_events.recent()[0]["actions"][-1] == f"replayed: {V2_PERCENTAGE} 100 -> 0"
    # the sender's retry is a repeat
    retry = runtime_client.post("/api/alerts/webhook", json=alertmanager(), headers=BEARER)
    assert retry.status_code == 200 and retry.get_json()["alerts"][0]["outcome"] == "repeat"


def test_a_resolution_while_redis_is_down_keeps_v2_held_until_replayed(make_runtime, services, private_redis):
    server, port, redis_url = private_redis
    runtime = make_runtime(settings_for(services, REDIS_URL=redis_url, FLAGS_CHECK_INTERVAL_S="0.2"))
    client = create_app(runtime.settings, runtime=runtime).test_client()
    assert client.post("/api/alerts/webhook", json=alertmanager(), headers=BEARER).status_code == 200
    server.stop()
    assert wait_until(lambda: not runtime.replicator.healthy, timeout_s=15)
    response = client.post("/api/alerts/webhook", json=alertmanager("resolved"), headers=BEARER)
    assert response.status_code == 503 and response.get_json()["alerts"][0]["outcome"] == "deferred"
    assert runtime.router.decide("u", forced="v2").reason is Reason.ALERT  # the safe side
    server.start(port)
    assert wait_until(lambda: runtime.alert_events.recent()[0]["pending"] is False, timeout_s=15)
    assert runtime.alert_events.recent()[0]["outcome"] == "awaiting_rearm"
    assert runtime.breakers.describe()["firing_alerts"] == []
    assert runtime.metrics.registry.get_sample_value("alerts_deferred_total") == 1


def test_failures_while_redis_is_down_trip_locally_and_are_written_back(make_runtime, services, private_redis):
    server, port, redis_url = private_redis
    settings = settings_for(services, REDIS_URL=redis_url, FLAGS_CHECK_INTERVAL_S="0.2", BREAKER_FAIL_MAX="2",
                            BREAKER_RESET_TIMEOUT_S="0.1")
    runtime = make_runtime(settings)
    server.stop()
    assert wait_until(lambda: not runtime.replicator.healthy, timeout_s=15)
    runtime.breakers.record_failure("v2", "timeout")
    runtime.breakers.record_failure("v2", "timeout")
    assert runtime.breakers.local_only and runtime.router.decide("u", forced="v2").reason is Reason.BREAKER_OPEN
    ticks = []
    runtime.replicator.on_tick(lambda: ticks.append(1))
    assert wait_until(lambda: len(ticks) >= 3)
    assert state(runtime).state == "open"  # no probe without Redis, whatever reset_timeout says

    server.start(port)
    assert wait_until(lambda: not runtime.breakers.local_only, timeout_s=15)
    fresh = make_runtime(settings)
    assert fresh.breakers.state().records["v2"].cause.value == "failures"


def test_one_policy_with_redis_down_holds_apply_locally_releases_are_refused(make_runtime, services,
                                                                             private_redis):
    """A rollback while Redis is down holds V2 at once on this process and reaches Redis when it answers
    (with the percentage it saved); a close, a re-arm or a restore is refused and changes nothing."""
    server, port, redis_url = private_redis
    runtime = make_runtime(settings_for(services, REDIS_URL=redis_url, FLAGS_CHECK_INTERVAL_S="0.2"))
    client = create_app(runtime.settings, runtime=runtime).test_client()
    runtime.flags.set(GRADUAL_MIGRATION, True, actor="test")
    runtime.flags.set(V2_PERCENTAGE, 40, actor="test")
    server.stop()
    assert wait_until(lambda: not runtime.replicator.healthy, timeout_s=15)

    rolled = client.post(BREAKER, json={"action": "rollback", "reason": "bad answers"}, headers=admin_headers())
    assert rolled.status_code == 200, rolled.get_json()
    assert "held on this process only" in rolled.get_json()["warnings"][0]
    assert runtime.router.decide("u", forced="v2").reason is Reason.BREAKER_OPEN
    for action in ("close", "rearm"):
        refused = client.post(BREAKER, json={"action": action, "restore": True}, headers=admin_headers())
        assert refused.status_code == 503 and refused.get_json()["error"] == "redis_unavailable"
    restored = ActionResult("test")  # the flag still reads 40 (set again is a no-op); forgetting needs Redis
    runtime.rollback.restore_percentage(actor="test", reason="restore", result=restored)
    assert any("the saved percentage is kept" in warning for warning in restored.warnings), restored.warnings
    assert state(runtime).state == "open" and runtime.breakers.saved_percentage() == 40

    server.start(port)
    assert wait_until(lambda: runtime.replicator.healthy and not runtime.breakers.local_only, timeout_s=15)
    fresh = make_runtime(runtime.settings)
    assert fresh.breakers.describe()["saved_percentage"] == 40
    assert state(fresh).state == "open" and state(fresh).cause.value == "manual"
    rearmed = client.post(BREAKER, json={"action": "rearm", "restore": True}, headers=admin_headers())
    assert rearmed.status_code == 200 and f"{V2_PERCENTAGE} 40 -> 40 (restored)" in rearmed.get_json()["actions"]
    assert wait_until(lambda: fresh.breakers.saved_percentage() is None and state(fresh).state == "half-open")


def test_a_hung_redis_holds_a_failure_only_for_the_breaker_timeout(make_runtime, services, private_redis):
    """A Redis that keeps its connections but never answers (stopped by SIGSTOP): the failing request
    records its failure locally after BREAKER_REDIS_TIMEOUT_MS, not after the 2 s of the other client."""
    server, port, redis_url = private_redis
    settings = settings_for(services, REDIS_URL=redis_url, FLAGS_CHECK_INTERVAL_S="0.2", BREAKER_FAIL_MAX="1",
                            BREAKER_REDIS_TIMEOUT_MS="100")
    runtime = make_runtime(settings)
    runtime.breakers.record_success("v2")
    assert runtime.breakers.describe()["redis"] == "ok"
    pid = int(server.pidfile.read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        runtime.breakers.record_failure("v2", "timeout")
        waited = time.monotonic() - started
        assert runtime.breakers.local_only and state(runtime).state == "open"
        assert runtime.router.decide("u", forced="v2").reason is Reason.BREAKER_OPEN
    finally:
        os.kill(pid, signal.SIGCONT)
    assert waited < 1.5, waited  # 100 ms and some scheduling; the replicator's client would wait 2 s
    assert wait_until(lambda: not runtime.breakers.local_only, timeout_s=15)  # written back to Redis
    assert make_runtime(settings).breakers.state().records["v2"].state == "open"


# -- gunicorn workers ---------------------------------------------------------------------------

def http(url, payload=None, headers=None, timeout=10):
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def served_by_worker(url, workers=2, timeout_s=60.0):
    """Which version each worker serves: queries until every worker answered a few times (bounded)."""
    seen: dict[str, list[str]] = {}
    deadline = time.monotonic() + timeout_s
    n = 0
    while time.monotonic() < deadline:
        n += 1
        status, body, headers = http(f"{url}/api/rag/query", {"query": "pool", "user_id": f"user-{n}"})
        assert status == 200, body
        seen.setdefault(headers["X-Rollout-Worker"], []).append(body["served_by"])
        if len(seen) >= workers and min(len(v) for v in seen.values()) >= 5:
            break
    return {worker: set(versions) for worker, versions in seen.items()}


@pytest.mark.slow
def test_gunicorn_workers_switch_to_v1_together_on_an_alert(runtime, tmp_path):
    load_and_embed(runtime)
    all_to_v2(runtime)
    s = runtime.settings
    env = {"DATABASE_URL": s.database_url, "REDIS_URL": s.redis_url, "REDIS_KEY_PREFIX": s.redis_key_prefix,
           "ROLLOUT_ADMIN_TOKEN": s.admin_token, "ALERT_WEBHOOK_SECRET": WEBHOOK_SECRET, "GUNICORN_THREADS": "2",
           "DB_POOL_MIN_SIZE": "0", "DB_POOL_MAX_SIZE": "2", "GUNICORN_LOG_LEVEL": "warning"}
    with GatewayProcess(env, port=free_port(), workers=2, metrics_dir=tmp_path / "metrics",
                        log_file=tmp_path / "gateway.log").start() as gateway:
        before = served_by_worker(gateway.url)
        assert len(before) == 2 and all(v == {"v2"} for v in before.values()), before

        status, body, _ = http(f"{gateway.url}/api/alerts/webhook", alertmanager(), BEARER)
        assert status == 200 and body["alerts"][0]["outcome"] == "tripped"
        after = served_by_worker(gateway.url)
        assert len(after) == 2 and all(v == {"v1"} for v in after.values()), after

        status, body, _ = http(f"{gateway.url}/api/alerts/webhook", alertmanager("resolved"), BEARER)
        assert body["alerts"][0]["outcome"] == "awaiting_rearm"
        status, body, _ = http(f"{gateway.url}{BREAKER}", {"action": "rearm"}, admin_headers())
        assert status == 200 and wait_until(lambda: runtime.flags.get(V2_PERCENTAGE) == 100)
        back = wait_until(lambda: all(v == {"v2"} for v in served_by_worker(gateway.url).values()), timeout_s=30)
        assert back, json.dumps(http(f"{gateway.url}{BREAKER}")[1]["versions"]["v2"])
        with urllib.request.urlopen(f"{gateway.url}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert 'alerts_received_total{severity="critical",source="alertmanager",status="firing"} 1.0' in metrics
        assert 'rollout_rollbacks_total{trigger="alert"} 1.0' in metrics


def test_pitfall_successful_queries_pay_no_redis_round_trip(runtime, monkeypatch):
    """pybreaker's Redis storage reads and writes Redis on every call; here only failures (and the one
    reset after them) reach Redis."""
    load_and_embed(runtime)
    all_to_v2(runtime)
    writes = []
    update = runtime.breakers.shared.update
    monkeypatch.setattr(runtime.breakers.shared, "update", lambda transition: writes.append(1) or update(transition))
    client = create_app(runtime.settings, runtime=runtime).test_client()
    for n in range(20):
        assert ask(client, f"user-{n}")["served_by"] == "v2"
    assert writes == []
    runtime.breakers.record_failure("v2", "timeout")
    assert writes == [1]
    for n in range(5):
        ask(client, f"again-{n}")
    assert writes == [1, 1] and state(runtime).failures == 0  # one reset, then nothing again
