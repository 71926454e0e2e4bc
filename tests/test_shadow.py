"""Shadow queries: on and off, what they measure, and that a slow or failing shadow never touches the answer."""

from contextlib import contextmanager

import psycopg
import pytest
from helpers import load_and_embed, sample_documents, settings_for, wait_until

from flags import GRADUAL_MIGRATION, PARALLEL_RAG, QUERY_ANALYTICS, V2_PERCENTAGE
from rollout.comparison import compare
from rollout.documents import DocumentStore
from rollout.migration.backfill import Backfill
from rollout.routing import Reason
from rollout.services.ports import free_port

QUERY = {"query": "When does the pool open on weekends?", "user_id": "alice", "k": 5}


def sample(runtime, name: str, **labels) -> float:
    return runtime.metrics.registry.get_sample_value(name, labels) or 0.0


def comparisons(runtime, version: str = "v1") -> float:
    return sample(runtime, "rag_shadow_comparisons_total", version=version)


def shadow_failures(runtime, version: str, kind: str) -> float:
    return sample(runtime, "rag_shadow_failures_total", version=version, kind=kind)


def results(response) -> list[tuple[str, float]]:
    body = response.get_json()
    return [(r["id"], r["similarity"]) for r in body["results"]]


@contextmanager
def locked(database_url: str, table: str):
    """Hold an ACCESS EXCLUSIVE lock on `table`: every search of it waits (then times out)."""
    with psycopg.connect(database_url) as conn:
        conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


def failing_v2(services, **extra):
    """Settings whose V2 embedder calls a port where nothing listens: a real, immediate failure.

    The coverage guard is off: V2's model has no vectors here, and V2 must still be routed to.
    """
    return settings_for(services, V2_EMBEDDER="openai", OPENAI_API_KEY="sk-test", V2_MIN_COVERAGE_PERCENT="0",
                        OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1", QUERY_EMBEDDING_MAX_ATTEMPTS="1",
                        **extra)


def load_v1_only(runtime):
    DocumentStore(runtime.pool).upsert_many(sample_documents())
    Backfill(runtime.pool, runtime.backends["v1"]).run()


def app_client(runtime):
    from rollout.app import create_app
    return create_app(runtime.settings, runtime=runtime).test_client()


def test_shadow_off_runs_nothing_and_on_compares_the_two_lists(runtime, client):
    load_and_embed(runtime)
    off = client.post("/api/rag/query", json=QUERY)
    assert off.status_code == 200 and off.get_json()["served_by"] == "v1"
    assert sample(runtime, "rag_shadow_duration_seconds_count", version="v2") == 0
    assert comparisons(runtime) == 0

    runtime.flags.set(PARALLEL_RAG, True, actor="test")
    on = client.post("/api/rag/query", json=QUERY)
    assert results(on) == results(off)  # the shadow changes nothing in the answer
    assert wait_until(lambda: comparisons(runtime) == 1)
    assert sample(runtime, "rag_shadow_duration_seconds_count", version="v2") == 1
    assert sample(runtime, "rag_shadow_top_similarity_count", version="v2") == 1

    # the recorded overlap is the comparison of the two versions' own lists for this query
    v1 = runtime.backends["v1"].search(QUERY["query"], 5)
    v2 = runtime.backends["v2"].search(QUERY["query"], 5)
    expected = compare(v1.ids, v2.ids, 5)
    assert sample(runtime, "rag_shadow_overlap_sum", version="v1", measure="jaccard") == pytest.approx(
        expected.overlap)
    assert sample(runtime, "rag_shadow_overlap_sum", version="v1", measure="rbo") == pytest.approx(expected.rbo)
    assert sample(runtime, "rag_shadow_top1_agreement_total", version="v1") == (1 if expected.top1_agreement else 0)


def test_the_answer_does_not_wait_for_the_shadow_and_the_row_follows_it(make_runtime, services):
    runtime = make_runtime(RAG_SEARCH_TIMEOUT_MS="30000")
    load_and_embed(runtime)
    for flag in (PARALLEL_RAG, QUERY_ANALYTICS):
        runtime.flags.set(flag, True, actor="test")
    client = app_client(runtime)
    with locked(services.database_url, "doc_embeddings_v2"):
        response = client.post("/api/rag/query", json=QUERY)
        # answered while V2's table is locked: the shadow is still waiting for the lock
        assert response.status_code == 200 and response.get_json()["served_by"] == "v1"
        assert comparisons(runtime) == 0 and runtime.query_log.flush()
        with runtime.pool.connection() as conn:
            assert conn.execute("SELECT count(*) FROM query_log").fetchone()[0] == 0
    assert wait_until(lambda: comparisons(runtime) == 1, timeout_s=20)
    assert wait_until(lambda: runtime.query_log.flush() and _rows(runtime) == 1)
    with runtime.pool.connection() as conn:
        row = conn.execute("SELECT served_version, other_version, other_error, overlap, rbo FROM query_log").fetchone()
    assert row[:3] == ("v1", "v2", None) and row[3] is not None and row[4] is not None


def _rows(runtime) -> int:
    with runtime.pool.connection() as conn:
        return conn.execute("SELECT count(*) FROM query_log").fetchone()[0]


def test_a_shadow_timeout_is_counted_and_changes_nothing(make_runtime, services):
    runtime = make_runtime(RAG_SEARCH_TIMEOUT_MS="300")
    load_and_embed(runtime)
    client = app_client(runtime)
    plain = client.post("/api/rag/query", json=QUERY)
    runtime.flags.set(PARALLEL_RAG, True, actor="test")
    with locked(services.database_url, "doc_embeddings_v2"):
        shadowed = client.post("/api/rag/query", json=QUERY)
        assert wait_until(lambda: shadow_failures(runtime, "v2", "timeout") == 1, timeout_s=10)
    assert shadowed.status_code == 200 and results(shadowed) == results(plain)
    assert shadowed.get_json()["fallback"] is False
    assert comparisons(runtime) == 0
    # a shadow's failure is not the version's failure: the breaker's counters stay untouched
    assert sample(runtime, "rag_version_errors_total", version="v2", kind="timeout") == 0


def test_a_failing_shadow_version_never_reaches_the_answer(make_runtime, services):
    runtime = make_runtime(failing_v2(services))
    load_v1_only(runtime)
    client = app_client(runtime)
    plain = client.post("/api/rag/query", json=QUERY)
    runtime.flags.set(PARALLEL_RAG, True, actor="test")
    shadowed = client.post("/api/rag/query", json=QUERY)
    assert shadowed.status_code == 200
    assert results(shadowed) == results(plain) and shadowed.get_json()["served_by"] == "v1"
    assert wait_until(lambda: shadow_failures(runtime, "v2", "embedding") == 1)
    assert comparisons(runtime) == 0


def test_a_v2_failure_is_answered_by_the_v1_shadow_already_in_flight(make_runtime, services):
    runtime = make_runtime(failing_v2(services, FF_ENABLE_GRADUAL_MIGRATION="true",
                                      FF_NEW_EMBEDDINGS_PERCENTAGE="100"))
    load_v1_only(runtime)
    client = app_client(runtime)
    without = client.post("/api/rag/query", json=QUERY).get_json()
    assert without["served_by"] == "v1" and without["fallback"] is True and without["fallback_reason"] == "embedding"
    v1_searches = sample(runtime, "rag_stage_duration_seconds_count", version="v1", stage="search")
    runtime.flags.set(PARALLEL_RAG, True, actor="test")
    response = client.post("/api/rag/query", json=QUERY)
    body = response.get_json()
    assert body["served_by"] == "v1" and body["fallback"] is True and body["decision"]["version"] == "v2"
    assert [r["id"] for r in body["results"]] == [r["id"] for r in without["results"]]
    assert sample(runtime, "rag_shadow_fallback_served_total", version="v1") == 1
    # V1 was searched once for this request (by the shadow), not a second time for the fallback
    assert sample(runtime, "rag_stage_duration_seconds_count", version="v1", stage="search") == v1_searches + 1
    assert sample(runtime, "rag_fallbacks_total", reason="embedding") == 2


def test_the_sample_rate_bounds_the_shadows(make_runtime):
    runtime = make_runtime(SHADOW_SAMPLE_RATE="0")
    load_and_embed(runtime)
    runtime.flags.set(PARALLEL_RAG, True, actor="test")
    client = app_client(runtime)
    for _ in range(3):
        assert client.post("/api/rag/query", json=QUERY).status_code == 200
    assert sample(runtime, "rag_shadow_skipped_total", version="v2", reason="sampled_out") == 3
    assert sample(runtime, "rag_shadow_duration_seconds_count", version="v2") == 0


def test_a_saturated_pool_skips_the_shadow_and_counts_it(make_runtime, services):
    runtime = make_runtime(SHADOW_MAX_CONCURRENCY="1", RAG_SEARCH_TIMEOUT_MS="30000")
    load_and_embed(runtime)
    runtime.flags.set(PARALLEL_RAG, True, actor="test")
    client = app_client(runtime)
    with locked(services.database_url, "doc_embeddings_v2"):
        first = client.post("/api/rag/query", json=QUERY)   # its shadow takes the only slot, waiting
        second = client.post("/api/rag/query", json=QUERY)  # no slot: answered without a shadow
        assert first.status_code == second.status_code == 200
        assert sample(runtime, "rag_shadow_skipped_total", version="v2", reason="saturated") == 1
    assert wait_until(lambda: comparisons(runtime) == 1, timeout_s=20)


def test_a_v2_held_off_by_a_guard_gets_no_shadow(runtime, client):
    class Hold:
        def v2_blocked(self, category, *, serving=False):
            return Reason.BREAKER_OPEN

    load_and_embed(runtime)
    runtime.router.add_guard(Hold())
    runtime.flags.set(PARALLEL_RAG, True, actor="test")
    assert client.post("/api/rag/query", json=QUERY).status_code == 200
    assert sample(runtime, "rag_shadow_skipped_total", version="v2", reason="held_off") == 1
    assert sample(runtime, "rag_shadow_duration_seconds_count", version="v2") == 0


def test_a_v2_routed_query_is_shadowed_by_v1(make_runtime):
    runtime = make_runtime(FF_ENABLE_GRADUAL_MIGRATION="true", FF_NEW_EMBEDDINGS_PERCENTAGE="100")
    load_and_embed(runtime)
    runtime.flags.set(PARALLEL_RAG, True, actor="test")
    body = app_client(runtime).post("/api/rag/query", json=QUERY).get_json()
    assert body["served_by"] == "v2"
    assert wait_until(lambda: comparisons(runtime, "v2") == 1)
    assert sample(runtime, "rag_shadow_duration_seconds_count", version="v1") == 1
    assert runtime.flags.snapshot()[GRADUAL_MIGRATION] and runtime.flags.snapshot()[V2_PERCENTAGE] == 100


def test_when_v1_fails_with_a_shadow_in_flight_the_query_is_still_recorded(make_runtime, services):
    runtime = make_runtime(settings_for(services, V1_EMBEDDER="openai", OPENAI_API_KEY="sk-test",
                                        OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1",
                                        QUERY_EMBEDDING_MAX_ATTEMPTS="1", FF_USE_PARALLEL_RAG="true",
                                        FF_ENABLE_QUERY_ANALYTICS="true", QUERY_LOG_FLUSH_INTERVAL_S="0.05"))
    DocumentStore(runtime.pool).upsert_many(sample_documents())
    Backfill(runtime.pool, runtime.backends["v2"]).run()
    response = app_client(runtime).post("/api/rag/query", json=QUERY)
    assert response.status_code == 503

    def recorded():
        with runtime.pool.connection() as conn:
            return conn.execute("SELECT error_kind, routed_version FROM query_log").fetchall()
    assert wait_until(lambda: recorded() == [("embedding", "v1")])
