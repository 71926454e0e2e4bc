"""A client's bad input is a 400 with a JSON body: never a 500, never a version's failure."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import WEBHOOK_SECRET, admin_headers, load_and_embed, settings_for

from flags import GRADUAL_MIGRATION, V2_PERCENTAGE
from rollout.app import create_app
from rollout.backends import QueryRejected, SearchFailed
from rollout.gateway import RagQuery

QUERY = "/api/rag/query"
BREAKER = "/api/monitoring/circuit-breaker"
NUL = "\u0000"


def all_to_candidate(runtime):
    runtime.flags.set(GRADUAL_MIGRATION, True, actor="test")
    runtime.flags.set(V2_PERCENTAGE, 100, actor="test")


def breaker_states(runtime) -> dict[str, tuple[str, int]]:
    return {v: (r.state, r.failures) for v, r in runtime.breakers.state().records.items()}


BAD_QUERIES = [
    {"query": "pool", "category": f"facilities{NUL}"},
    {"query": f"pool{NUL}hours"},
    {"query": "pool", "user_id": f"alice{NUL}"},
    {"query": "pool", "session_id": NUL},
    {"query": "pool", "category": "\ud800"},
    {"query": "pool", "mode": "merged", "category": NUL},
]


@pytest.mark.parametrize("body", BAD_QUERIES)
def test_a_query_with_text_postgres_cannot_store_is_a_400(client, runtime, body):
    response = client.post(QUERY, json=body)
    assert response.status_code == 400, response.get_data(as_text=True)
    payload = response.get_json()
    assert payload["error"] == "invalid_request" and payload["detail"]


def test_bad_queries_never_open_a_breaker_and_candidate_users_stay_on_the_candidate(make_runtime, services):
    runtime = make_runtime(settings_for(services, BREAKER_FAIL_MAX="2", BREAKER_RESET_TIMEOUT_S="3600"))
    load_and_embed(runtime)
    all_to_candidate(runtime)
    client = create_app(runtime.settings, runtime=runtime).test_client()
    before = breaker_states(runtime)
    for n in range(30):
        body = {"user_id": f"attacker-{n}"} | BAD_QUERIES[n % len(BAD_QUERIES)]
        assert client.post(QUERY, json=body).status_code == 400
    for name, value in [("X-User-Id", f"u{NUL}"), ("X-Session-Id", NUL)]:
        assert client.post(QUERY, json={"query": "pool"}, headers={name: value}).status_code == 400
    assert breaker_states(runtime) == before == {"v1": ("closed", 0), "v2": ("closed", 0)}
    for n in range(20):
        answer = client.post(QUERY, json={"query": "pool opening hours", "user_id": f"user-{n}"}).get_json()
        assert (answer["served_by"], answer["decision"]["reason"]) == ("v2", "percentage")


def test_a_value_the_database_refuses_is_the_query_s_fault_not_the_version_s(make_runtime, services):
    """Below the API's checks: the gateway itself never counts a refused query toward a breaker."""
    runtime = make_runtime(settings_for(services, BREAKER_FAIL_MAX="1", BREAKER_RESET_TIMEOUT_S="3600"))
    load_and_embed(runtime)
    all_to_candidate(runtime)
    for n in range(3):
        with pytest.raises(QueryRejected):
            runtime.gateway.answer(RagQuery("pool", category=f"x{NUL}", user_key=f"user-{n}"))
    assert breaker_states(runtime) == {"v1": ("closed", 0), "v2": ("closed", 0)}
    assert runtime.gateway.answer(RagQuery("pool", user_key="user-0")).served_by == "v2"


# -- changes never applied without their record ------------------------------------------------

def test_a_flag_change_with_a_nul_is_refused_and_nothing_changes(client, runtime):
    url = f"/api/flags/{V2_PERCENTAGE}"
    for body, headers in [({"value": 50, "reason": f"why{NUL}"}, {}), ({"value": 50}, {"X-Rollout-Actor": NUL})]:
        response = client.put(url, json=body, headers={**admin_headers(), **headers})
        assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"
    assert runtime.flags.get(V2_PERCENTAGE) == 0 and runtime.flag_audit.recent(10) == []


def test_a_flag_change_whose_audit_row_fails_is_a_503_and_not_applied(client, runtime):
    def refused(change):
        raise RuntimeError("flag_audit is unavailable")

    runtime.flags.add_audit_sink(refused)
    response = client.put(f"/api/flags/{V2_PERCENTAGE}", json={"value": 50}, headers=admin_headers())
    assert response.status_code == 503 and response.get_json()["error"] == "audit_unavailable"
    assert "audit_error" not in response.get_json()
    assert runtime.flags.get(V2_PERCENTAGE) == 0 and runtime.flag_audit.recent(10) == []


@pytest.mark.parametrize("action", ["open", "close", "rearm", "rollback"])
def test_a_breaker_action_with_a_nul_in_its_reason_is_refused(client, runtime, action):
    all_to_candidate(runtime)
    before = breaker_states(runtime)
    response = client.post(BREAKER, json={"action": action, "reason": f"drill{NUL}"}, headers=admin_headers())
    assert response.status_code == 400 and response.get_json()["fields"][0]["field"] == "reason"
    assert breaker_states(runtime) == before and runtime.flags.get(V2_PERCENTAGE) == 100
    assert runtime.alert_events.recent(10, None, None) == []


def test_every_breaker_action_is_applied_with_its_alert_events_row(client, runtime):
    all_to_candidate(runtime)
    for action in ("open", "close", "rollback", "rearm"):
        response = client.post(BREAKER, json={"action": action, "reason": f"drill {action}"},
                               headers=admin_headers())
        assert response.status_code == 200 and "warnings" not in response.get_json(), response.get_json()
    events = runtime.alert_events.recent(10, None, "action")
    assert sorted(e["detail"] for e in events) == sorted(f"drill {a}" for a in ("open", "close", "rollback", "rearm"))


# -- every way in: documents, stage and breaker reasons, alert webhooks --------------------------

DOCUMENT = {"id": "doc-1", "title": "Title", "content": "Some content.", "category": "general", "metadata": {}}


@pytest.mark.parametrize("field, value", [
    ("id", f"doc{NUL}"), ("title", f"T{NUL}"), ("content", f"c{NUL}"), ("category", f"g{NUL}"),
    ("metadata", {f"k{NUL}": "v"}), ("metadata", {"k": f"v{NUL}"}), ("metadata", {"k": [{"deep": NUL}]}),
])
def test_a_document_with_a_nul_anywhere_is_a_400_and_nothing_is_stored(client, runtime, field, value):
    response = client.post("/api/documents", json={**DOCUMENT, field: value}, headers=admin_headers())
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 0


def test_a_path_with_a_nul_is_a_400(client):
    response = client.delete("/api/documents/doc%00x", headers=admin_headers())
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"


@pytest.mark.parametrize("body", [{"action": "hold", "reason": f"x{NUL}"}, {"action": "set", "percentage": False},
                                  {"action": "set", "percentage": 30, "reason": "\ud800"}])
def test_a_bad_stage_command_is_a_400_and_changes_nothing(client, runtime, body):
    response = client.post("/api/rollout/stage", json=body, headers=admin_headers())
    assert response.status_code == 400, response.get_json()
    assert runtime.flags.get(V2_PERCENTAGE) == 0 and runtime.stages.decisions(10) == []


@pytest.mark.parametrize("body", [
    {"type": "error_rate", "severity": f"critical{NUL}"},
    {"type": "error_rate", "severity": "critical", "status": "FIRING"},
    {"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": f"x{NUL}"}}]},
    {"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": "x"}, "annotations": {NUL: ""}}]},
])
def test_a_bad_alert_is_a_400_and_nothing_is_applied(client, runtime, body):
    all_to_candidate(runtime)
    response = client.post("/api/alerts/webhook", json=body, headers={"Authorization": f"Bearer {WEBHOOK_SECRET}"})
    assert response.status_code == 400 and response.get_json()["detail"]
    assert breaker_states(runtime)["v2"] == ("closed", 0) and runtime.alert_events.recent(10, None, None) == []


def test_json_constants_and_unknown_query_arguments_are_refused(client):
    response = client.post(QUERY, data='{"query": "pool", "min_similarity": NaN}', content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_json"
    response = client.get("/api/flags/audit?limt=5", headers=admin_headers())
    assert response.status_code == 400 and "'limt'" in response.get_json()["detail"]
    assert client.get("/api/flags/audit?limit=null", headers=admin_headers()).status_code == 400


def test_a_whole_number_written_as_a_float_is_an_integer(client, runtime):
    load_and_embed(runtime)
    response = client.post(QUERY, json={"query": "pool opening hours", "k": 3.0})
    assert response.status_code == 200 and len(response.get_json()["results"]) == 3
    assert client.post(QUERY, json={"query": "pool", "k": 3.5}).status_code == 400


@pytest.mark.parametrize("depth", [900, 20_000])  # the parser refuses the second (under 64 KiB)
def test_deeply_nested_json_is_a_400_or_is_checked_all_the_way_down(client, depth):
    body = '{"query": "pool", "category": ' + "[" * depth + '"\\u0000"' + "]" * depth + "}"
    response = client.post(QUERY, data=body, content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error"] in ("invalid_json", "invalid_request")


def test_a_value_the_server_refuses_is_still_the_version_s_fault(make_runtime, services):
    """Only what the driver refuses in the query's own parameters is the client's: a vector of the wrong
    dimensions (the server's DataError) is a backend fault and counts."""
    runtime = make_runtime(settings_for(services, BREAKER_FAIL_MAX="1", BREAKER_RESET_TIMEOUT_S="3600"))
    load_and_embed(runtime)
    with pytest.raises(SearchFailed) as failed:
        runtime.backends["v2"].search_vector(np.zeros(3, dtype=np.float32), 3)
    assert failed.value.kind == "database"
