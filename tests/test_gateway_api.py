"""The query endpoint end to end on real PostgreSQL+pgvector and Redis: answers, routing, fallback, bad input."""

import json

import pytest
from fake_embedding_server import FakeEmbeddingServer
from helpers import admin_headers, load_and_embed, sample_documents, settings_for

from flags import GRADUAL_MIGRATION, V2_PERCENTAGE, bucket
from rollout.app import create_app
from rollout.services.ports import free_port


def set_flags(runtime, **values):
    for name, value in values.items():
        runtime.flags.set(name, value, actor="test")


@pytest.fixture
def corpus(runtime):
    return load_and_embed(runtime, sample_documents(extra=60))


def test_an_answer_carries_results_decision_and_ids(client, corpus):
    response = client.post("/api/rag/query", json={"query": "when does the indoor pool open", "k": 3,
                                                   "user_id": "alice"})
    assert response.status_code == 200
    body = response.get_json()
    assert [hit["id"] for hit in body["results"]][0] == "pool-hours"
    assert len(body["results"]) == 3
    assert body["results"][0]["similarity"] >= body["results"][1]["similarity"] >= body["results"][2]["similarity"]
    assert set(body["results"][0]) == {"id", "title", "snippet", "category", "metadata", "similarity"}
    assert body["served_by"] == "v1" and body["fallback"] is False
    assert body["decision"] == {"version": "v1", "reason": "migration_disabled",
                                "bucket": bucket("embeddings-v2", "alice")}
    assert response.headers["X-Request-Id"] == body["request_id"] and body["latency_ms"] > 0


def test_a_category_filter_still_returns_k_results(client, corpus):
    body = client.post("/api/rag/query", json={"query": "noticeboard room", "k": 15,
                                               "category": "events"}).get_json()
    assert len(body["results"]) == 15
    assert {hit["category"] for hit in body["results"]} == {"events"}


def test_an_unknown_category_says_so_with_the_categories_there_are(client, corpus, runtime):
    runtime.coverage.refresh()
    for mode in ("routed", "merged"):
        body = client.post("/api/rag/query", json={"query": "pool", "category": "evnets", "mode": mode}).get_json()
        assert body["results"] == []
        assert body["hint"].startswith("no document has the category 'evnets'; categories: ")
        assert "events" in body["hint"]
    known = client.post("/api/rag/query", json={"query": "pool", "category": "events"}).get_json()
    assert known["results"] and "hint" not in known


def test_min_similarity_drops_weak_results(client, corpus):
    body = client.post("/api/rag/query", json={"query": "indoor pool opens weekdays weekends", "k": 10,
                                               "min_similarity": 0.3}).get_json()
    assert body["results"] and all(hit["similarity"] >= 0.3 for hit in body["results"])
    assert len(body["results"]) < 10


def test_routing_follows_the_flags_and_sticks_to_the_user(runtime, client, corpus):
    set_flags(runtime, **{GRADUAL_MIGRATION: True, V2_PERCENTAGE: 50})
    served = {}
    for n in range(60):
        user = f"user-{n}"
        first = client.post("/api/rag/query", json={"query": "day pass", "user_id": user}).get_json()
        again = client.post("/api/rag/query", json={"query": "gym", "user_id": user}).get_json()
        assert first["served_by"] == again["served_by"] and first["decision"] == again["decision"]
        expected = "v2" if bucket("embeddings-v2", user) < 5000 else "v1"
        assert first["served_by"] == expected and first["decision"]["reason"] == "percentage"
        served[user] = first["served_by"]
    assert set(served.values()) == {"v1", "v2"}
    set_flags(runtime, **{V2_PERCENTAGE: 100})
    assert all(client.post("/api/rag/query", json={"query": "x", "user_id": u}).get_json()["served_by"] == "v2"
               for u in served)


def test_the_user_key_comes_from_header_then_session_then_random(runtime, client, corpus):
    by_header = client.post("/api/rag/query", json={"query": "pool"}, headers={"X-User-Id": "bob"}).get_json()
    assert by_header["decision"]["bucket"] == bucket("embeddings-v2", "bob")
    by_session = client.post("/api/rag/query", json={"query": "pool", "session_id": "s-1"}).get_json()
    assert by_session["decision"]["bucket"] == bucket("embeddings-v2", "session:s-1")
    client.post("/api/rag/query", json={"query": "pool"})
    client.post("/api/rag/query", json={"query": "pool"})
    assert runtime.metrics.registry.get_sample_value("rag_anonymous_requests_total") == 2


def test_forcing_a_version_needs_the_admin_token(client, corpus):
    assert client.post("/api/rag/query", json={"query": "pool", "version": "v2"}).status_code == 401
    forced = client.post("/api/rag/query", json={"query": "pool", "version": "v2"}, headers=admin_headers())
    assert forced.get_json()["served_by"] == "v2" and forced.get_json()["decision"]["reason"] == "forced"


def test_metrics_count_answers_per_version(runtime, client, corpus):
    set_flags(runtime, **{GRADUAL_MIGRATION: True, V2_PERCENTAGE: 100})
    for n in range(3):
        client.post("/api/rag/query", json={"query": "parking", "user_id": f"u{n}"})
    sample = runtime.metrics.registry.get_sample_value
    assert sample("rag_requests_total", {"version": "v2", "outcome": "ok"}) == 3
    assert sample("rag_routing_decisions_total", {"version": "v2", "reason": "percentage"}) == 3
    assert sample("rag_request_duration_seconds_count", {"version": "v2"}) == 3
    assert sample("rag_top_similarity_count", {"version": "v2"}) == 3
    text = client.get("/metrics").get_data(as_text=True)
    assert 'rag_requests_total{outcome="ok",version="v2"} 3.0' in text
    assert "rollout_percentage 100.0" in text and "flags_snapshot_age_seconds" in text


# -- V2 failures fall back to V1 in the same request -----------------------------------------

def test_v2_provider_down_is_answered_by_v1(make_runtime, services):
    runtime = make_runtime(settings_for(services, FF_ENABLE_GRADUAL_MIGRATION="true",
                                        FF_NEW_EMBEDDINGS_PERCENTAGE="100", V2_EMBEDDER="openai",
                                        V2_MIN_COVERAGE_PERCENT="0",  # V2 holds nothing: route it anyway
                                        OPENAI_API_KEY="sk-test", QUERY_EMBEDDING_MAX_ATTEMPTS="1",
                                        OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1"))
    _v1_only(runtime)
    client = create_app(runtime.settings, runtime=runtime).test_client()
    body = client.post("/api/rag/query", json={"query": "pool hours", "user_id": "carol"}).get_json()
    assert body["decision"]["version"] == "v2"
    assert body["served_by"] == "v1" and body["fallback"] is True and body["fallback_reason"] == "embedding"
    assert body["results"][0]["id"] == "pool-hours"
    sample = runtime.metrics.registry.get_sample_value
    assert sample("rag_fallbacks_total", {"reason": "embedding"}) == 1
    assert sample("rag_requests_total", {"version": "v1", "outcome": "fallback"}) == 1
    assert sample("rag_version_errors_total", {"version": "v2", "kind": "embedding"}) == 1


def _v1_only(runtime):
    """Load documents and embed V1 only (V2's provider is down in these tests)."""
    from rollout.documents import DocumentStore
    from rollout.migration.backfill import Backfill

    DocumentStore(runtime.pool).upsert_many(sample_documents())
    Backfill(runtime.pool, runtime.backends["v1"]).run()
    return runtime


def test_v2_provider_too_slow_is_answered_by_v1(make_runtime, services):
    with FakeEmbeddingServer() as server:
        runtime = make_runtime(settings_for(services, FF_ENABLE_GRADUAL_MIGRATION="true",
                                            FF_NEW_EMBEDDINGS_PERCENTAGE="100", V2_EMBEDDER="openai",
                                            V2_MIN_COVERAGE_PERCENT="0",  # V2 holds nothing: route it anyway
                                            OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=f"{server.url}/v1",
                                            QUERY_EMBEDDING_TIMEOUT_S="0.2", QUERY_EMBEDDING_MAX_ATTEMPTS="1"))
        _v1_only(runtime)
        client = create_app(runtime.settings, runtime=runtime).test_client()
        server.delay_s = 1.0
        body = client.post("/api/rag/query", json={"query": "pool", "user_id": "dan"}).get_json()
        assert body["served_by"] == "v1" and body["fallback"] is True
        server.delay_s = 0.0
        healthy = client.post("/api/rag/query", json={"query": "pool", "user_id": "dan"}).get_json()
        assert healthy["served_by"] == "v2" and healthy["fallback"] is False
        assert server.requests[-1].body["dimensions"] == 768


def test_when_v1_fails_too_the_answer_is_a_503_json(make_runtime, services):
    runtime = make_runtime(settings_for(services, V1_EMBEDDER="openai", OPENAI_API_KEY="sk-test",
                                        QUERY_EMBEDDING_MAX_ATTEMPTS="1", V1_DIMENSIONS="1536",
                                        OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1"))
    client = create_app(runtime.settings, runtime=runtime).test_client()
    response = client.post("/api/rag/query", json={"query": "pool"})
    assert response.status_code == 503
    assert response.get_json()["error"] == "search_unavailable" and "request_id" in response.get_json()


# -- bad input: 4xx with a JSON body, never a traceback -----------------------------------

BAD_BODIES = [
    ("{", "invalid_json"),
    ("", "invalid_json"),
    ("[1, 2]", "invalid_request"),
    ('"text"', "invalid_request"),
    ("{}", "invalid_request"),
    ('{"query": ""}', "invalid_request"),
    ('{"query": "   "}', "invalid_request"),
    ('{"query": 42}', "invalid_request"),
    ('{"query": "x", "k": 0}', "invalid_request"),
    ('{"query": "x", "k": 51}', "invalid_request"),
    ('{"query": "x", "k": "5"}', "invalid_request"),
    ('{"query": "x", "k": 5.5}', "invalid_request"),
    ('{"query": "x", "k": true}', "invalid_request"),
    ('{"query": "x", "category": ""}', "invalid_request"),
    ('{"query": "x", "category": 7}', "invalid_request"),
    ('{"query": "x", "user_id": 5}', "invalid_request"),
    ('{"query": "x", "min_similarity": 2}', "invalid_request"),
    ('{"query": "x", "version": "v3"}', "invalid_request"),
    ('{"query": "x", "kk": 3}', "invalid_request"),
    (json.dumps({"query": "é" * 4097}), "invalid_request"),  # 8194 bytes of UTF-8
]


@pytest.mark.parametrize("body, error", BAD_BODIES)
def test_bad_input_is_a_400_with_a_reason(client, body, error):
    response = client.post("/api/rag/query", data=body, content_type="application/json")
    assert response.status_code == 400
    payload = response.get_json()
    assert payload["error"] == error and payload["detail"]


def test_the_field_at_fault_is_named(client):
    payload = client.post("/api/rag/query", json={"query": "x", "k": 99}).get_json()
    assert payload["fields"][0]["field"] == "k" and "k:" in payload["detail"]


def test_a_query_of_exactly_8_kib_is_accepted(client, corpus):
    assert client.post("/api/rag/query", json={"query": "a" * 8192}).status_code == 200


def test_an_oversized_body_is_a_413(client):
    response = client.post("/api/rag/query", data="{" + " " * 70_000 + "}", content_type="application/json")
    assert response.status_code == 413 and response.get_json()["error"] == "request_entity_too_large"


def test_unknown_routes_and_methods_answer_json(client):
    missing = client.get("/api/nothing-here")
    assert missing.status_code == 404 and missing.get_json()["error"] == "not_found"
    wrong = client.get("/api/rag/query")
    assert wrong.status_code == 405 and wrong.get_json()["error"] == "method_not_allowed"
    assert "POST" in wrong.headers["Allow"]


# -- health ---------------------------------------------------------------------------

def test_version_health_reports_rows_index_and_embedder(client, corpus):
    body = client.get("/api/rag/v2/health").get_json()
    assert body["status"] == "ok" and body["embedded"] == body["documents"] == len(corpus)
    assert body["index"] == "doc_embeddings_v2_hnsw" and body["dimensions"] == 768
    assert body["embedder"] == {"provider": "local", "model": "local-lexical-v2", "dimensions": 768}
    assert client.get("/api/rag/v3/health").status_code == 404


def test_healthz_is_ok_with_both_services(client):
    body = client.get("/healthz").get_json()
    assert body["status"] == "ok" and body["database"] == "ok" and body["redis"] == "ok"


# -- flags API --------------------------------------------------------------------------

def test_flags_are_listed_with_their_sources(client):
    body = client.get("/api/flags").get_json()
    assert [f["name"] for f in body["flags"]] == ["FF_ENABLE_GRADUAL_MIGRATION", "FF_NEW_EMBEDDINGS_PERCENTAGE",
                                                  "FF_USE_PARALLEL_RAG", "FF_ENABLE_PERFORMANCE_LOGGING",
                                                  "FF_ENABLE_QUERY_ANALYTICS"]
    assert {f["source"] for f in body["flags"]} == {"default"} and body["redis"] == "ok"


def test_a_flag_change_needs_the_token_and_is_audited(client):
    url = f"/api/flags/{V2_PERCENTAGE}"
    assert client.put(url, json={"value": 25}).status_code == 401
    assert client.put(url, json={"value": 25}, headers={"Authorization": "Basic abc"}).status_code == 401
    assert client.put(url, json={"value": 25}, headers=admin_headers("wrong")).status_code == 403
    changed = client.put(url, json={"value": 25, "reason": "stage 2"},
                         headers={**admin_headers(), "X-Rollout-Actor": "alice"})
    assert changed.status_code == 200
    assert changed.get_json() | {"version": None} == {"flag": V2_PERCENTAGE, "old": 0.0, "new": 25.0,
                                                       "actor": "alice", "reason": "stage 2", "version": None,
                                                       "changed": True}
    audit = client.get("/api/flags/audit", headers=admin_headers()).get_json()["changes"]
    assert audit[0]["actor"] == "alice" and audit[0]["new"] == 25.0
    same = client.put(url, json={"value": 25}, headers=admin_headers())  # the value it already has
    assert same.status_code == 200 and same.get_json()["changed"] is False
    assert len(client.get("/api/flags/audit", headers=admin_headers()).get_json()["changes"]) == len(audit)
    reset = client.put(url, json={"value": None}, headers=admin_headers())
    assert reset.get_json()["new"] == 0.0


@pytest.mark.parametrize("name, body, status, error", [
    (V2_PERCENTAGE, {"value": 101}, 400, "invalid_value"),
    (V2_PERCENTAGE, {"value": "lots"}, 400, "invalid_value"),
    (GRADUAL_MIGRATION, {"value": "maybe"}, 400, "invalid_value"),
    (V2_PERCENTAGE, {"reason": "no value"}, 400, "invalid_request"),
    (V2_PERCENTAGE, {"value": 5, "extra": 1}, 400, "invalid_request"),
    ("FF_NOPE", {"value": True}, 404, "unknown_flag"),
])
def test_bad_flag_changes_are_refused(client, name, body, status, error):
    response = client.put(f"/api/flags/{name}", json=body, headers=admin_headers())
    assert response.status_code == status and response.get_json()["error"] == error
    assert client.get("/api/flags").get_json()["flags"][1]["value"] == 0.0


def test_without_an_admin_token_configured_changes_are_refused(make_runtime, services):
    runtime = make_runtime(settings_for(services, ROLLOUT_ADMIN_TOKEN=""))
    client = create_app(runtime.settings, runtime=runtime).test_client()
    response = client.put(f"/api/flags/{V2_PERCENTAGE}", json={"value": 5}, headers=admin_headers())
    assert response.status_code == 503 and response.get_json()["error"] == "admin_disabled"
