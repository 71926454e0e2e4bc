"""Flags: parsing, the store's snapshot and sources, propagation between processes, Redis outages."""

import os
import subprocess
import sys
import time
from contextlib import contextmanager

import fakeredis
import pytest
from helpers import admin_headers, load_and_embed, settings_for, wait_until

from flags import (
    GRADUAL_MIGRATION,
    PARALLEL_RAG,
    V2_PERCENTAGE,
    FlagNotAudited,
    FlagStore,
    InvalidFlagValue,
    ReplicatedHash,
    Source,
    UnknownFlag,
    definition,
)
from flags.audit import FlagAudit
from rollout.services.ports import free_port

# -- parsing (pure) ------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [("true", True), ("On", True), ("1", True), (True, True),
                                           ("false", False), ("no", False), ("0", False), (False, False)])
def test_boolean_flags_parse(raw, expected):
    assert definition(GRADUAL_MIGRATION).parse(raw) is expected


@pytest.mark.parametrize("raw", ["maybe", "", 1, None, 2.0, "truee"])
def test_boolean_flags_refuse_other_values(raw):
    with pytest.raises(InvalidFlagValue):
        definition(GRADUAL_MIGRATION).parse(raw)


@pytest.mark.parametrize("raw, expected", [("0", 0.0), ("10", 10.0), (25, 25.0), (12.5, 12.5), ("99.99", 99.99),
                                           ("100", 100.0), ("50%", 50.0), (0.01, 0.01)])
def test_percentage_parses(raw, expected):
    assert definition(V2_PERCENTAGE).parse(raw) == expected


@pytest.mark.parametrize("raw", [-1, 100.01, "101", "abc", True, None, float("nan"), float("inf"), 12.345, [10]])
def test_percentage_refuses_out_of_range_and_wrong_types(raw):
    with pytest.raises(InvalidFlagValue):
        definition(V2_PERCENTAGE).parse(raw)


def test_unknown_flag_names_the_known_ones():
    with pytest.raises(UnknownFlag, match="FF_NEW_EMBEDDINGS_PERCENTAGE"):
        definition("FF_NOPE")


# -- the store's logic (fakeredis: no network semantics needed here) --------------------

def fake_store(environ=None):
    return FlagStore(ReplicatedHash(fakeredis.FakeRedis(decode_responses=True), "t:flags"), environ or {})


def test_sources_are_default_then_environment_then_redis():
    store = fake_store({GRADUAL_MIGRATION: "true"})
    snap = store.snapshot()
    assert snap.sources[V2_PERCENTAGE] is Source.DEFAULT and snap[V2_PERCENTAGE] == 0.0
    assert snap.sources[GRADUAL_MIGRATION] is Source.ENVIRONMENT and snap[GRADUAL_MIGRATION] is True
    change = store.set(V2_PERCENTAGE, "25", actor="t")
    assert (change.old, change.new) == (0.0, 25.0)
    assert store.snapshot().sources[V2_PERCENTAGE] is Source.REDIS
    store.reset(V2_PERCENTAGE, actor="t")
    assert store.snapshot().sources[V2_PERCENTAGE] is Source.DEFAULT


def test_an_invalid_environment_value_stops_start_up():
    with pytest.raises(InvalidFlagValue):
        fake_store({V2_PERCENTAGE: "150"})


def test_a_garbage_value_in_redis_is_ignored_not_served():
    store = fake_store({V2_PERCENTAGE: "10"})
    store.replica.write({V2_PERCENTAGE: "lots"})
    assert store.get(V2_PERCENTAGE) == 10.0
    assert store.snapshot().sources[V2_PERCENTAGE] is Source.ENVIRONMENT


def test_a_change_whose_audit_row_cannot_be_written_is_refused():
    store = fake_store()

    def broken(change):
        raise RuntimeError("database down")

    store.add_audit_sink(broken)
    with pytest.raises(FlagNotAudited, match="database down"):
        store.set(PARALLEL_RAG, True, actor="t")
    assert store.get(PARALLEL_RAG) is False and store.replica.data == {}


def test_a_change_whose_audit_commit_fails_is_undone():
    store = fake_store()
    store.set(V2_PERCENTAGE, 10, actor="t")

    @contextmanager
    def failing_commit(change):
        yield
        raise RuntimeError("commit failed")

    store.add_audit_sink(failing_commit)
    for change in (lambda: store.set(V2_PERCENTAGE, 50, actor="t"), lambda: store.reset(V2_PERCENTAGE, actor="t"),
                   lambda: store.set(PARALLEL_RAG, True, actor="t")):
        with pytest.raises(FlagNotAudited, match="commit failed"):
            change()
    assert dict(store.replica.data) == {V2_PERCENTAGE: "10.0"} and store.get(V2_PERCENTAGE) == 10.0


def test_an_older_read_never_replaces_a_newer_copy():
    replica = ReplicatedHash(fakeredis.FakeRedis(decode_responses=True), "t:flags")
    replica.write({"a": "1"})
    replica.write({"a": "2"})
    assert replica._install(1, {"a": "1"}, force=False) is False
    assert replica.data["a"] == "2" and replica.version == 2


# -- real Redis: audit, propagation, outages ---------------------------------------------

def test_changes_are_audited_in_postgres(runtime):
    runtime.flags.set(V2_PERCENTAGE, 25, actor="alice", reason="stage 2")
    runtime.flags.set(V2_PERCENTAGE, 50, actor="bob", reason="stage 3")
    rows = FlagAudit(runtime.pool).recent(10)
    assert [(r["old"], r["new"], r["actor"], r["reason"]) for r in rows] == [
        (25.0, 50.0, "bob", "stage 3"), (0.0, 25.0, "alice", "stage 2")]


def test_a_change_postgres_cannot_record_is_not_applied(runtime):
    runtime.flags.set(V2_PERCENTAGE, 25, actor="alice")
    with pytest.raises(FlagNotAudited):
        runtime.flags.set(V2_PERCENTAGE, 50, actor="mallory", reason="stage\u00003")  # text cannot hold NUL
    with pytest.raises(FlagNotAudited):
        runtime.flags.reset(V2_PERCENTAGE, actor="mallory\u0000")
    assert runtime.flags.get(V2_PERCENTAGE) == 25.0 and runtime.flags.replica.data[V2_PERCENTAGE] == "25.0"
    assert [(r["new"], r["actor"]) for r in FlagAudit(runtime.pool).recent(10)] == [(25.0, "alice")]


def test_a_change_made_by_another_process_arrives_by_pubsub(make_runtime, services, tmp_path):
    watcher = make_runtime(settings_for(services, FLAGS_CHECK_INTERVAL_S="60"))  # only pub/sub can be quick
    env = {**os.environ, "DATABASE_URL": services.database_url, "REDIS_URL": services.redis_url,
           "REDIS_KEY_PREFIX": watcher.settings.redis_key_prefix}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "rollout.cli", "flags", "set", V2_PERCENTAGE, "42",
                           "--reason", "from another process"], env=env, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "FF_NEW_EMBEDDINGS_PERCENTAGE: 0 -> 42" in done.stdout
    assert wait_until(lambda: watcher.flags.get(V2_PERCENTAGE) == 42.0, timeout_s=5)
    assert time.monotonic() - started < 30
    assert watcher.flags.snapshot().sources[V2_PERCENTAGE] is Source.REDIS


def test_a_missed_message_is_caught_by_the_version_check(make_runtime, services):
    watcher = make_runtime(settings_for(services, FLAGS_CHECK_INTERVAL_S="0.2"))
    key = watcher.flag_replica.key
    # change the hash behind the replicator's back: no PUBLISH at all
    watcher.redis.hset(key, V2_PERCENTAGE, "7.0")
    watcher.redis.incr(f"{key}:version")
    assert wait_until(lambda: watcher.flags.get(V2_PERCENTAGE) == 7.0, timeout_s=5)




def test_redis_down_keeps_serving_the_last_snapshot_then_resyncs(make_runtime, services, private_redis):
    from rollout.app import create_app

    server, port, redis_url = private_redis
    settings = settings_for(services, REDIS_URL=redis_url, FLAGS_CHECK_INTERVAL_S="0.2",
                            FF_ENABLE_GRADUAL_MIGRATION="true")
    runtime = make_runtime(settings)
    load_and_embed(runtime)
    client = create_app(runtime.settings, runtime=runtime).test_client()
    client.put(f"/api/flags/{V2_PERCENTAGE}", json={"value": 100}, headers=admin_headers())
    assert client.post("/api/rag/query", json={"query": "pool", "user_id": "u"}).get_json()["served_by"] == "v2"

    server.stop()
    assert wait_until(lambda: not runtime.replicator.healthy, timeout_s=10)
    for n in range(20):
        response = client.post("/api/rag/query", json={"query": f"pool hours {n}", "user_id": f"u{n}"})
        assert response.status_code == 200 and response.get_json()["served_by"] == "v2"
    health = client.get("/healthz").get_json()
    assert health["redis"] == "unreachable" and health["status"] == "degraded"
    runtime.refresh_gauges()
    assert runtime.metrics.registry.get_sample_value("flags_redis_up") == 0
    refused = client.put(f"/api/flags/{V2_PERCENTAGE}", json={"value": 5}, headers=admin_headers())
    assert refused.status_code == 503 and refused.get_json()["error"] == "redis_unavailable"

    server.start(port)
    assert wait_until(lambda: runtime.replicator.healthy, timeout_s=15)
    import redis as redis_lib
    other = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    FlagStore(ReplicatedHash(other, runtime.flag_replica.key)).set(V2_PERCENTAGE, 0, actor="t")
    assert wait_until(lambda: runtime.flags.get(V2_PERCENTAGE) == 0.0, timeout_s=5)
    assert client.post("/api/rag/query", json={"query": "pool", "user_id": "u"}).get_json()["served_by"] == "v1"


def test_a_cold_start_without_redis_serves_environment_values(make_runtime, services):
    settings = settings_for(services, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
                            FF_ENABLE_GRADUAL_MIGRATION="true", FF_NEW_EMBEDDINGS_PERCENTAGE="30")
    runtime = make_runtime(settings)
    assert runtime.replicator.healthy is False
    assert runtime.flags.get(V2_PERCENTAGE) == 30.0
    assert runtime.router.decide("someone").reason.value == "percentage"
