"""query_log: the rows the gateway writes, the bounded queue, hashing, write failures, retention."""

import json
import urllib.request
from datetime import timedelta

import psycopg
import pytest
from analytics_rows import NOW, insert, record
from helpers import load_and_embed, wait_until
from test_shadow import QUERY, app_client, locked, sample

from flags import GRADUAL_MIGRATION, PARALLEL_RAG, QUERY_ANALYTICS
from rollout.analytics.querylog import QueryLogWriter, QueryText
from rollout.analytics.retention import LOCK_KEY, QueryLogRetention
from rollout.maintenance import Maintenance
from rollout.server import GatewayProcess
from rollout.services.ports import free_port

COLUMNS = ("request_id, mode, bucket, reason, routed_version, served_version, query_hash, query_text, k, "
           "latency_ms, top_similarity, result_count, cache_hit, fallback, error_kind, other_version, overlap")


def rows(runtime, where: str = "true") -> list[dict]:
    with runtime.pool.connection() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        return cursor.execute(f"SELECT {COLUMNS} FROM query_log WHERE {where} ORDER BY id").fetchall()


def test_one_row_per_query_only_while_the_flag_is_on(runtime, client):
    load_and_embed(runtime)
    client.post("/api/rag/query", json=QUERY)
    runtime.query_log.flush()
    assert rows(runtime) == []
    runtime.flags.set(QUERY_ANALYTICS, True, actor="test")
    response = client.post("/api/rag/query", json=QUERY, headers={"X-Request-Id": "req-1"})
    assert runtime.query_log.flush()
    [row] = rows(runtime)
    body = response.get_json()
    assert row["request_id"] == "req-1" and row["mode"] == "routed"
    assert row["routed_version"] == row["served_version"] == "v1" and row["reason"] == "migration_disabled"
    assert row["bucket"] == body["decision"]["bucket"] and row["k"] == 5 and row["result_count"] == 5
    assert row["top_similarity"] == pytest.approx(body["results"][0]["similarity"], abs=1e-6)
    assert row["query_text"] is None and len(row["query_hash"]) == 32  # text not kept by default
    assert row["cache_hit"] is True  # the same text was embedded by the first query
    assert row["fallback"] is False and row["error_kind"] is None and row["other_version"] is None
    assert sample(runtime, "rollout_query_log_rows_total", outcome="written") == 1


def test_shadow_and_merged_queries_carry_the_comparison(runtime, client):
    load_and_embed(runtime)
    for flag in (QUERY_ANALYTICS, PARALLEL_RAG, GRADUAL_MIGRATION):
        runtime.flags.set(flag, True, actor="test")
    client.post("/api/rag/query", json=QUERY)
    client.post("/api/rag/query", json={**QUERY, "mode": "merged"})
    assert wait_until(lambda: runtime.query_log.flush() and len(rows(runtime)) == 2)
    routed, merged = sorted(rows(runtime), key=lambda r: r["mode"])[::-1]
    assert routed["mode"] == "routed" and routed["other_version"] == "v2" and routed["overlap"] is not None
    assert merged["mode"] == "merged" and merged["served_version"] == "merged" and merged["overlap"] is not None


def test_a_query_no_version_could_answer_is_logged_with_its_error(make_runtime, services):
    runtime = make_runtime(RAG_SEARCH_TIMEOUT_MS="300", FF_ENABLE_QUERY_ANALYTICS="true")
    load_and_embed(runtime)
    with locked(services.database_url, "doc_embeddings_v1"):
        response = app_client(runtime).post("/api/rag/query", json=QUERY)
    assert response.status_code == 503
    assert runtime.query_log.flush()
    [row] = rows(runtime)
    assert row["served_version"] is None and row["error_kind"] == "timeout" and row["result_count"] == 0


def test_query_text_is_kept_only_when_configured_and_the_hash_is_keyed():
    assert QueryText(False)("pool hours") == (QueryText(False)("pool hours")[0], None)
    digest, text = QueryText(True)("pool hours")
    assert text == "pool hours" and digest == QueryText(False)("pool hours")[0]
    assert QueryText(False, "secret-1")("pool hours")[0] != QueryText(False, "secret-2")("pool hours")[0]
    assert QueryText(False)("pool hours")[0] != QueryText(False)("pool hours!")[0]


def test_stored_text_reaches_the_table(make_runtime):
    runtime = make_runtime(QUERY_LOG_STORE_TEXT="true", FF_ENABLE_QUERY_ANALYTICS="true")
    load_and_embed(runtime)
    app_client(runtime).post("/api/rag/query", json=QUERY)
    assert runtime.query_log.flush()
    assert rows(runtime)[0]["query_text"] == QUERY["query"]


def test_a_full_queue_drops_and_counts_rows_without_blocking(runtime):
    runtime.flags.set(QUERY_ANALYTICS, True, actor="test")
    writer = QueryLogWriter(runtime.pool, runtime.flags, runtime.metrics, queue_size=2)  # not started: no drain
    for n in range(5):
        writer.record(record(request_id=f"q{n}"))  # returns at once even though nothing drains the queue
    assert writer.pending == 2
    assert sample(runtime, "rollout_query_log_rows_total", outcome="dropped") == 3
    writer.start()
    try:
        assert writer.flush()
    finally:
        writer.close()
    assert [r["request_id"] for r in rows(runtime)] == ["q0", "q1"]


def test_the_gateway_keeps_answering_when_the_queue_is_full(make_runtime):
    runtime = make_runtime(QUERY_LOG_QUEUE_SIZE="1", FF_ENABLE_QUERY_ANALYTICS="true")
    load_and_embed(runtime)
    runtime.query_log.close()  # the writer is gone: nothing empties the queue
    client = app_client(runtime)
    for _ in range(4):
        assert client.post("/api/rag/query", json=QUERY).status_code == 200
    assert sample(runtime, "rollout_query_log_rows_total", outcome="dropped") == 3


def test_a_batch_the_database_refuses_is_counted_and_the_writer_goes_on(runtime, services):
    runtime.flags.set(QUERY_ANALYTICS, True, actor="test")
    with psycopg.connect(services.database_url, autocommit=True) as admin:
        admin.execute("ALTER TABLE query_log RENAME TO query_log_away")
        try:
            runtime.query_log.record(record(request_id="lost"))
            assert runtime.query_log.flush()
        finally:
            admin.execute("ALTER TABLE query_log_away RENAME TO query_log")
    assert sample(runtime, "rollout_query_log_rows_total", outcome="failed") == 1
    runtime.query_log.record(record(request_id="kept"))
    assert runtime.query_log.flush()
    assert [r["request_id"] for r in rows(runtime)] == ["kept"]


def _old_and_new(runtime) -> None:
    insert(runtime.pool, [record(request_id="old", logged_at=NOW - timedelta(days=40)),
                          record(request_id="older", logged_at=NOW - timedelta(days=90)),
                          record(request_id="new", logged_at=NOW - timedelta(days=2))])


def test_retention_deletes_rows_older_than_the_limit_in_batches(runtime):
    _old_and_new(runtime)
    run = QueryLogRetention(runtime.pool, max_age_days=30, batch_size=1).run_once()
    assert run.deleted == 2 and not run.skipped
    assert [r["request_id"] for r in rows(runtime)] == ["new"]


def test_retention_deletes_lost_row_tallies_of_the_same_age(runtime):
    with runtime.pool.connection() as conn:
        conn.execute("INSERT INTO query_log_losses (writer, minute, cause, rows) VALUES "
                     "('w', date_trunc('minute', now() - interval '31 days'), 'queue_full', 5), "
                     "('w', date_trunc('minute', now() - interval '1 day'), 'queue_full', 7)")
    QueryLogRetention(runtime.pool, max_age_days=30).run_once()
    with runtime.pool.connection() as conn:
        assert [r[0] for r in conn.execute("SELECT rows FROM query_log_losses").fetchall()] == [7]


def test_retention_skips_while_another_process_runs_it(runtime, services):
    _old_and_new(runtime)
    with psycopg.connect(services.database_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        assert QueryLogRetention(runtime.pool, max_age_days=30).run_once().skipped
        other.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    assert len(rows(runtime)) == 3
    assert QueryLogRetention(runtime.pool, max_age_days=30).run_once().deleted == 2


def test_the_maintenance_scheduler_runs_retention(runtime):
    _old_and_new(runtime)
    settings = runtime.settings.with_overrides(query_log_retention_days=30, query_log_retention_interval_s=1)
    with Maintenance(settings, runtime.database_url, first_run_delay=timedelta(0)):
        assert wait_until(lambda: len(rows(runtime)) == 1, timeout_s=10)


@pytest.mark.slow
def test_a_gateway_stopping_writes_its_queued_rows(runtime, tmp_path):
    load_and_embed(runtime)
    env = {"DATABASE_URL": runtime.database_url, "REDIS_URL": runtime.redis_url,
           "REDIS_KEY_PREFIX": runtime.settings.redis_key_prefix, "FF_ENABLE_QUERY_ANALYTICS": "true",
           "QUERY_LOG_FLUSH_INTERVAL_S": "60"}  # nothing is written before the stop
    with GatewayProcess(env, port=free_port(), workers=1, metrics_dir=tmp_path / "metrics",
                        log_file=tmp_path / "gateway.log").start() as gateway:
        request = urllib.request.Request(f"{gateway.url}/api/rag/query", data=json.dumps(QUERY).encode(),
                                         headers={"Content-Type": "application/json", "X-Request-Id": "at-exit"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        assert rows(runtime) == []
    assert [r["request_id"] for r in rows(runtime)] == ["at-exit"]
