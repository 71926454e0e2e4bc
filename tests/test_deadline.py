"""A hanging or slow candidate provider: the query deadline, the hedged baseline and the slow-call trigger.

Behaviour only (who answered, why, the breaker's state); how long users wait is measured in bench/hang.py.
"""

import pytest
from fake_embedding_server import FakeEmbeddingServer
from helpers import sample_documents, settings_for, wait_until

from flags import GRADUAL_MIGRATION, PARALLEL_RAG, V2_PERCENTAGE
from rollout.app import create_app
from rollout.documents import DocumentStore
from rollout.migration.backfill import Backfill

QUERY = "pool opening hours"


@pytest.fixture
def provider():
    with FakeEmbeddingServer() as server:
        yield server


def candidate_on_provider(services, provider, **env):
    """V2 embeds queries through the stand-in provider; the coverage guard is off (V2 has no vectors)."""
    return settings_for(services, V2_EMBEDDER="openai", OPENAI_API_KEY="sk-test",
                        OPENAI_BASE_URL=f"{provider.url}/v1", V2_MIN_COVERAGE_PERCENT="0",
                        QUERY_EMBEDDING_TIMEOUT_S="5", QUERY_EMBEDDING_MAX_ATTEMPTS="2",
                        EMBEDDING_CACHE="false", **env)


def load_baseline(runtime):
    """The corpus embedded for V1 only (local embedder): the candidate's searches reach only its provider."""
    DocumentStore(runtime.pool).upsert_many(sample_documents())
    Backfill(runtime.pool, runtime.backends["v1"]).run()


def all_to_candidate(runtime):
    runtime.flags.set(GRADUAL_MIGRATION, True, actor="test")
    runtime.flags.set(V2_PERCENTAGE, 100, actor="test")


def ask(client, user):
    response = client.post("/api/rag/query", json={"query": QUERY, "user_id": user})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def sample(runtime, name, **labels):
    return runtime.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("shadow", [False, True], ids=["hedged", "shadow-is-the-hedge"])
def test_a_hanging_candidate_is_answered_by_the_baseline_at_the_deadline(make_runtime, services, provider,
                                                                         shadow):
    provider.delay_s = 30  # hangs: the provider's own timeout (2 x 5 s) is far away
    runtime = make_runtime(candidate_on_provider(services, provider, RAG_QUERY_DEADLINE_MS="300",
                                                 RAG_HEDGE_DELAY_MS="100", BREAKER_FAIL_MAX="3",
                                                 BREAKER_RESET_TIMEOUT_S="3600"))
    load_baseline(runtime)
    client = create_app(runtime.settings, runtime=runtime).test_client()
    all_to_candidate(runtime)
    runtime.flags.set(PARALLEL_RAG, shadow, actor="test")

    for n in range(3):
        answer = ask(client, f"user-{n}")
        assert answer["served_by"] == "v1" and answer["fallback"] is True
        assert answer["fallback_reason"] == "deadline" and answer["decision"]["version"] == "v2"
        assert answer["results"], "the baseline's own results"
    assert sample(runtime, "rag_hedged_requests_total", version="v2", outcome="baseline") == 3
    assert sample(runtime, "rag_fallbacks_total", reason="deadline") == 3
    assert sample(runtime, "rag_shadow_fallback_served_total", version="v1") == (3 if shadow else 0)
    record = runtime.breakers.state().records["v2"]
    assert (record.state, record.cause.value, record.detail) == ("open", "failures", "deadline")
    assert ask(client, "user-9")["decision"]["reason"] == "breaker_open"


def test_a_hanging_candidate_in_merged_mode_is_left_out_at_the_deadline(make_runtime, services, provider):
    """Merged mode searches both versions; a hanging candidate may not hold the merged answer past the deadline."""
    provider.delay_s = 30
    runtime = make_runtime(candidate_on_provider(services, provider, RAG_QUERY_DEADLINE_MS="300",
                                                 RAG_HEDGE_DELAY_MS="100", BREAKER_FAIL_MAX="2",
                                                 BREAKER_RESET_TIMEOUT_S="3600"))
    load_baseline(runtime)
    client = create_app(runtime.settings, runtime=runtime).test_client()
    all_to_candidate(runtime)
    for n in range(2):
        response = client.post("/api/rag/query", json={"query": QUERY, "user_id": f"user-{n}", "mode": "merged"})
        assert response.status_code == 200, response.get_json()
        answer = response.get_json()
        assert answer["results"] and answer["fallback_reason"] == "deadline"
        assert answer["sources"]["v2"] == {"results": 0, "latency_ms": answer["sources"]["v2"]["latency_ms"],
                                           "error": "deadline"}
    record = runtime.breakers.state().records["v2"]
    assert (record.state, record.detail) == ("open", "deadline")


def test_a_candidate_answering_before_the_deadline_keeps_its_users(make_runtime, services, provider):
    """Past the hedge delay the baseline is searched too, but a candidate answer within the deadline wins."""
    provider.delay_s = 0.3
    runtime = make_runtime(candidate_on_provider(services, provider, RAG_QUERY_DEADLINE_MS="5000",
                                                 RAG_HEDGE_DELAY_MS="50", BREAKER_SLOW_CALL_MIN_CALLS="100"))
    load_baseline(runtime)
    client = create_app(runtime.settings, runtime=runtime).test_client()
    all_to_candidate(runtime)
    answer = ask(client, "user-1")
    assert answer["served_by"] == "v2" and answer["fallback"] is False
    assert sample(runtime, "rag_hedged_requests_total", version="v2", outcome="candidate") == 1
    assert runtime.breakers.state().records["v2"].state == "closed"


def test_slow_candidate_calls_open_the_breaker_at_the_slow_call_rate(make_runtime, services, provider):
    """resilience4j's slowCallRateThreshold: answers that all arrive, but slowly, open the breaker."""
    provider.delay_s = 0.2
    runtime = make_runtime(candidate_on_provider(
        services, provider, RAG_QUERY_DEADLINE_MS="5000", RAG_HEDGE_DELAY_MS="5000",
        BREAKER_SLOW_CALL_DURATION_MS="100", BREAKER_SLOW_CALL_RATE="0.5", BREAKER_SLOW_CALL_WINDOW="4",
        BREAKER_SLOW_CALL_MIN_CALLS="3", BREAKER_RESET_TIMEOUT_S="3600"))
    load_baseline(runtime)
    client = create_app(runtime.settings, runtime=runtime).test_client()
    all_to_candidate(runtime)
    for n in range(2):
        assert ask(client, f"user-{n}")["served_by"] == "v2"
    assert runtime.breakers.state().records["v2"].state == "closed"  # fewer calls than the minimum
    assert ask(client, "user-2")["served_by"] == "v2"  # the third slow call: 3 of 3 >= 50 %
    record = runtime.breakers.state().records["v2"]
    assert record.state == "open" and record.cause.value == "failures" and record.detail.startswith("slow_calls")
    assert ask(client, "user-3")["decision"]["reason"] == "breaker_open"
    assert wait_until(lambda: sample(runtime, "rollout_rollbacks_total", trigger="failures") == 1)
