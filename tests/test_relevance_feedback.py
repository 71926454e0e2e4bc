"""POST /api/rag/feedback: tied to the answering version, idempotent, clear 4xx for bad input."""

import psycopg
import pytest
from helpers import load_and_embed

from flags import QUERY_ANALYTICS
from rollout.relevance.feedback import FeedbackStore


@pytest.fixture
def answered(runtime, client):
    """A real query through the gateway, with analytics on: its request id and serving version."""
    load_and_embed(runtime)
    runtime.flags.set(QUERY_ANALYTICS, True, actor="test")
    response = client.post("/api/rag/query", json={"query": "pool opening hours", "user_id": "u1", "k": 3})
    assert response.status_code == 200
    body = response.get_json()
    return body["request_id"], body["served_by"], body["results"][0]["id"]


def rows(runtime):
    with psycopg.connect(runtime.database_url) as conn:
        return conn.execute("SELECT request_id, document_id, kind, value, version FROM relevance_feedback "
                            "ORDER BY id").fetchall()


def signal(runtime, version, outcome):
    value = runtime.metrics.registry.get_sample_value(
        "rag_relevance_signals_total", {"version": version, "source": "feedback", "outcome": outcome})
    return value or 0.0


def test_feedback_is_stored_with_the_version_that_answered(runtime, client, answered):
    request_id, version, document = answered
    response = client.post("/api/rag/feedback", json={"request_id": request_id, "document_id": document,
                                                      "kind": "relevant"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"request_id": request_id, "document_id": document, "kind": "relevant",
                                   "value": None, "version": version, "category": None, "status": "recorded"}
    graded = client.post("/api/rag/feedback", json={"request_id": request_id, "kind": "grade", "value": 1})
    assert graded.status_code == 200 and graded.get_json()["status"] == "recorded"
    assert rows(runtime) == [(request_id, document, "relevant", None, version), (request_id, "", "grade", 1, version)]
    assert signal(runtime, version, "positive") == 1 and signal(runtime, version, "negative") == 1


def test_the_same_feedback_twice_counts_once_and_takes_the_last_value(runtime, client, answered):
    request_id, version, _ = answered
    for value in (3, 0):
        response = client.post("/api/rag/feedback", json={"request_id": request_id, "kind": "grade", "value": value})
        assert response.status_code == 200
    assert response.get_json()["status"] == "updated"
    assert rows(runtime) == [(request_id, "", "grade", 0, version)]
    assert signal(runtime, version, "positive") == 1 and signal(runtime, version, "negative") == 0
    rates = FeedbackStore(runtime.pool).positive_rates(3600)
    assert rates == {version: {"": {"positive": 0, "total": 1}}}


def test_an_unknown_request_is_404_and_stores_nothing(runtime, client, answered):
    response = client.post("/api/rag/feedback", json={"request_id": "never-seen", "kind": "clicked"})
    assert response.status_code == 404
    assert response.get_json()["error"] == "unknown_request"
    assert rows(runtime) == []


@pytest.mark.parametrize("body, field", [
    ({"kind": "relevant"}, "request_id"),
    ({"request_id": "r", "kind": "loved"}, "kind"),
    ({"request_id": "r", "kind": "grade"}, "grade needs a value"),
    ({"request_id": "r", "kind": "grade", "value": 4}, "value"),
    ({"request_id": "r", "kind": "clicked", "value": 1}, "takes no value"),
    ({"request_id": "r", "kind": "cited", "extra": True}, "extra"),
    ({"request_id": "bad id with spaces", "kind": "cited"}, "request_id"),
    ({"request_id": "r", "kind": "grade", "value": "3"}, "value"),
])
def test_a_bad_shape_is_400_naming_the_field(runtime, client, answered, body, field):
    response = client.post("/api/rag/feedback", json=body)
    assert response.status_code == 400
    assert field in response.get_json()["detail"]
    assert rows(runtime) == []


def test_an_oversized_body_is_413(runtime, client, answered):
    request_id, _, _ = answered
    response = client.post("/api/rag/feedback", json={"request_id": request_id, "kind": "cited",
                                                      "document_id": "x" * 8000})
    assert response.status_code == 413
    assert rows(runtime) == []


def test_feedback_is_documented(client):
    document = client.get("/openapi.json").get_json()
    post = document["paths"]["/api/rag/feedback"]["post"]
    assert {"400", "404", "413"} <= set(post["responses"])
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert schema["if"]["properties"]["kind"] == {"const": "grade"}  # only a grade carries a value
    assert schema["required"] == ["request_id", "kind"] and schema["additionalProperties"] is False
