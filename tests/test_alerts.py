"""Alert webhooks: the three payloads, authentication, policy, repeats, the lifecycle, the event log."""

import base64
import json
import time
from pathlib import Path

import pytest
import yaml
from alert_payloads import alertmanager, grafana, simple
from helpers import WEBHOOK_SECRET, admin_headers, load_and_embed, settings_for

from flags import GRADUAL_MIGRATION, V2_PERCENTAGE
from flags.audit import FlagAudit
from rollout.alerts import PayloadError, WebhookAuth, parse_payload
from rollout.app import create_app

URL = "/api/alerts/webhook"
BREAKER = "/api/monitoring/circuit-breaker"
BEARER = {"Authorization": f"Bearer {WEBHOOK_SECRET}"}


def post(client, payload, headers=BEARER):
    return client.post(URL, data=json.dumps(payload), headers={**headers, "Content-Type": "application/json"})


def at_percentage(runtime, value=25):
    runtime.flags.set(GRADUAL_MIGRATION, True, actor="test")
    runtime.flags.set(V2_PERCENTAGE, value, actor="test")


def v2(runtime):
    return runtime.breakers.describe()["versions"]["v2"]


def sample(runtime, name, **labels):
    return runtime.metrics.registry.get_sample_value(name, labels or None) or 0


# -- payloads (pure) -------------------------------------------------------------------

def test_alertmanager_payload_is_read_with_its_documented_fields():
    source, [alert] = parse_payload(alertmanager())
    assert source == "alertmanager"
    assert (alert.fingerprint, alert.alertname, alert.status, alert.severity) == \
        ("5c8e0fe1b3c7d2a4", "RagCandidateErrorRateHigh", "firing", "critical")
    assert alert.starts_at.isoformat() == "2024-05-01T10:00:00.123456+00:00"
    assert alert.ends_at is None  # Go's zero time: still firing
    assert alert.annotations["summary"] == "V2 error rate above 10 %"


def test_grafana_payload_is_read_with_its_values():
    source, [alert] = parse_payload(grafana("resolved"))
    assert source == "grafana"
    assert (alert.fingerprint, alert.alertname, alert.status, alert.value) == \
        ("c6eadffa33fcdf37", "RAG V2 latency", "resolved", 0.93)
    assert alert.starts_key == "2024-05-01T10:51:03.157076+00:00"


def test_simple_payload_gets_a_stable_fingerprint():
    source, [alert] = parse_payload(simple())
    assert source == "seed" and alert.fingerprint == "seed:error_rate" and alert.value == 0.5
    assert parse_payload(simple(status="resolved"))[1][0].status == "resolved"


@pytest.mark.parametrize("payload, reason", [
    ([1, 2], "JSON object"),
    ({"hello": "world"}, "unknown payload shape"),
    ({"version": "3", "alerts": [{}]}, "unsupported webhook version"),
    ({"version": "4", "alerts": []}, "non-empty"),
    ({"version": "4", "alerts": [{"status": "pending", "labels": {}}]}, "firing or resolved"),
    ({"version": "4", "alerts": [{"status": "firing", "labels": {"a": 1}}]}, "object of strings"),
    ({"version": "1", "alerts": [{"status": "firing", "labels": {}, "startsAt": "yesterday"}]}, "RFC 3339"),
    ({"type": "error_rate", "severity": "critical", "value": "high"}, "finite number"),
])
def test_bad_payloads_are_refused_with_the_reason(payload, reason):
    with pytest.raises(PayloadError, match=reason):
        parse_payload(payload)


# -- authentication --------------------------------------------------------------------

def hmac_headers(body: bytes, *, secret=WEBHOOK_SECRET, age_s=0.0, timestamp=None):
    timestamp = timestamp if timestamp is not None else str(int(time.time() - age_s))
    return {"X-Grafana-Alerting-Signature": WebhookAuth(secret).sign(body, timestamp),
            "X-Grafana-Alerting-Timestamp": timestamp}


def basic(password, user="alertmanager"):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize("headers", [BEARER, basic(WEBHOOK_SECRET)], ids=["bearer", "basic"])
def test_bearer_and_basic_with_the_secret_are_accepted(client, headers):
    response = post(client, simple(severity="warning"), headers)
    assert response.status_code == 200, response.get_json()


def test_a_grafana_hmac_signature_is_accepted(client):
    body = json.dumps(grafana(severity="warning")).encode()
    response = client.post(URL, data=body, headers={**hmac_headers(body), "Content-Type": "application/json"})
    assert response.status_code == 200 and response.get_json()["authenticated_by"] == "hmac"


@pytest.mark.parametrize("case", ["missing", "wrong bearer", "wrong basic", "not base64", "wrong hmac secret",
                                  "hmac of another body", "stale timestamp", "future timestamp",
                                  "no timestamp", "garbled timestamp", "nan timestamp", "infinite timestamp"])
def test_every_auth_failure_is_a_401_and_applies_nothing(client, runtime, case):
    at_percentage(runtime)
    body = json.dumps(alertmanager()).encode()
    headers = {
        "missing": {},
        "wrong bearer": {"Authorization": "Bearer nope"},
        "wrong basic": basic("nope"),
        "not base64": {"Authorization": "Basic !!!"},
        "wrong hmac secret": hmac_headers(body, secret="other"),
        "hmac of another body": hmac_headers(b'{"version": "4"}'),
        "stale timestamp": hmac_headers(body, age_s=301),
        "future timestamp": hmac_headers(body, age_s=-400),
        "no timestamp": {"X-Grafana-Alerting-Signature": WebhookAuth(WEBHOOK_SECRET).sign(body, "")},
        "garbled timestamp": hmac_headers(body, timestamp="soon"),
        "nan timestamp": hmac_headers(body, timestamp="nan"),  # validly signed, or it proves nothing
        "infinite timestamp": hmac_headers(body, timestamp="-inf"),
    }[case]
    response = client.post(URL, data=body, headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 401 and response.get_json()["error"] == "unauthorized"
    assert "Bearer" in response.headers["WWW-Authenticate"]
    assert v2(runtime)["state"] == "closed" and runtime.flags.get(V2_PERCENTAGE) == 25
    assert runtime.alert_events.recent() == []


def test_a_stale_signature_names_its_age(client):
    body = json.dumps(grafana()).encode()
    response = client.post(URL, data=body, headers={**hmac_headers(body, age_s=600),
                                                     "Content-Type": "application/json"})
    assert response.status_code == 401 and "at most 300 s" in response.get_json()["detail"]


def test_without_a_secret_the_endpoint_refuses_outside_development(make_runtime, services):
    runtime = make_runtime(settings_for(services, ALERT_WEBHOOK_SECRET=""))
    client = create_app(runtime.settings, runtime=runtime).test_client()
    response = post(client, simple(), {})
    assert response.status_code == 503 and response.get_json()["error"] == "webhook_disabled"
    assert v2(runtime)["state"] == "closed"

    dev = make_runtime(settings_for(services, ALERT_WEBHOOK_SECRET="", ROLLOUT_ENV="development"))
    response = post(create_app(dev.settings, runtime=dev).test_client(), simple(severity="warning"), {})
    assert response.status_code == 200 and response.get_json()["authenticated_by"] == "none (development)"


# -- malformed input -------------------------------------------------------------------

def test_malformed_json_and_unknown_shapes_are_400_and_nothing_is_applied(client, runtime):
    at_percentage(runtime)
    response = client.post(URL, data=b'{"version": "4", "alerts": [', headers={**BEARER,
                                                                              "Content-Type": "application/json"})
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_json"
    good, bad = alertmanager()["alerts"][0], {"status": "firing", "labels": {"alertname": 7}}
    response = post(client, {**alertmanager(), "alerts": [good, bad]})
    assert response.status_code == 400 and "alerts[1].labels" in response.get_json()["detail"]
    assert v2(runtime)["state"] == "closed" and runtime.flags.get(V2_PERCENTAGE) == 25
    assert runtime.alert_events.recent() == []


def test_a_body_over_one_mebibyte_is_413(client, runtime):
    payload = alertmanager()
    payload["commonAnnotations"] = {"padding": "x" * (1024 * 1024)}
    response = post(client, payload)
    assert response.status_code == 413 and response.get_json()["error"] == "request_entity_too_large"
    assert v2(runtime)["state"] == "closed"


# -- policy, repeats and the lifecycle -----------------------------------------------------

@pytest.mark.parametrize("make", [alertmanager, grafana, simple], ids=["alertmanager", "grafana", "simple"])
def test_a_critical_alert_of_each_format_rolls_v2_back(client, runtime, make):
    at_percentage(runtime, 25)
    response = post(client, make())
    assert response.status_code == 200, response.get_json()
    [outcome] = response.get_json()["alerts"]
    assert outcome["outcome"] == "tripped" and outcome["trips"] is True
    assert outcome["actions"] == ["breaker v2 open", f"{V2_PERCENTAGE} 25 -> 0"]
    record = v2(runtime)
    assert (record["state"], record["cause"]) == ("open", "alert")
    assert record["fingerprint"] == parse_payload(make())[1][0].fingerprint
    assert runtime.flags.get(V2_PERCENTAGE) == 0
    assert runtime.breakers.describe()["saved_percentage"] == 25
    change = FlagAudit(runtime.pool).recent(1)[0]
    assert change["actor"] == f"alert:{parse_payload(make())[1][0].alertname}" and change["new"] == 0
    source = parse_payload(make())[0]
    assert sample(runtime, "alerts_received_total", source=source, severity="critical", status="firing") == 1
    assert sample(runtime, "rollout_rollbacks_total", trigger="alert") == 1


def test_routing_moves_to_v1_with_reason_alert(make_runtime, services):
    runtime = make_runtime(settings_for(services, ALERT_SET_PERCENTAGE_ZERO="false"))  # the breaker alone
    client = create_app(runtime.settings, runtime=runtime).test_client()
    load_and_embed(runtime)
    at_percentage(runtime, 100)
    assert client.post("/api/rag/query", json={"query": "pool", "user_id": "u1"}).get_json()["served_by"] == "v2"
    post(client, alertmanager())
    answer = client.post("/api/rag/query", json={"query": "pool", "user_id": "u1"}).get_json()
    assert answer["served_by"] == "v1" and answer["decision"]["reason"] == "alert"


def test_after_a_rollback_the_users_it_moved_say_alert_and_the_others_percentage(client, runtime):
    from flags import bucket, threshold

    at_percentage(runtime, 40)
    users = [f"user-{n}" for n in range(400)]
    inside = [u for u in users if bucket(runtime.settings.routing_group, u) < threshold(40)]
    outside = [u for u in users if u not in inside]
    assert {runtime.router.decide(u).reason.value for u in inside} == {"percentage"}
    post(client, alertmanager())
    assert runtime.flags.get(V2_PERCENTAGE) == 0
    assert {(d.version, d.reason.value) for d in map(runtime.router.decide, inside)} == {("v1", "alert")}
    assert {(d.version, d.reason.value) for d in map(runtime.router.decide, outside)} == {("v1", "percentage")}
    post(client, alertmanager("resolved"))
    assert runtime.router.decide(inside[0]).reason.value == "alert"  # resolved, still held until re-armed
    client.post(BREAKER, json={"action": "rearm", "reason": "fixed"}, headers=admin_headers())
    assert runtime.breakers.describe()["saved_percentage"] is None and runtime.flags.get(V2_PERCENTAGE) == 40
    assert {d.reason.value for d in map(runtime.router.decide, outside)} == {"percentage"}


def test_forced_v2_is_still_held_off_by_an_alert(client, runtime):
    load_and_embed(runtime)
    post(client, simple())
    answer = client.post("/api/rag/query", json={"query": "pool", "version": "v2"}, headers=admin_headers())
    assert answer.get_json()["served_by"] == "v1" and answer.get_json()["decision"]["reason"] == "alert"


def test_a_warning_is_recorded_only(client, runtime):
    at_percentage(runtime, 25)
    response = post(client, alertmanager(severity="warning"))
    assert response.get_json()["alerts"][0]["outcome"] == "recorded"
    assert v2(runtime)["state"] == "closed" and runtime.flags.get(V2_PERCENTAGE) == 25
    assert post(client, alertmanager(severity="warning")).get_json()["alerts"][0]["outcome"] == "repeat"
    assert [e["outcome"] for e in runtime.alert_events.recent()] == ["repeat", "recorded"]


def test_the_rollback_label_trips_whatever_the_severity(client, runtime):
    at_percentage(runtime)
    response = post(client, alertmanager(severity="warning", extra_labels={"rollout_action": "rollback"}))
    assert response.get_json()["alerts"][0]["outcome"] == "tripped" and v2(runtime)["state"] == "open"


def test_repeats_change_nothing_and_are_counted(client, runtime):
    at_percentage(runtime, 25)
    post(client, alertmanager())
    version = runtime.breakers.shared.version
    for _ in range(3):
        response = post(client, alertmanager())
        assert response.status_code == 200 and response.get_json()["alerts"][0]["outcome"] == "repeat"
    assert runtime.breakers.shared.version == version  # no write at all
    assert sample(runtime, "alerts_repeats_total", source="alertmanager") == 3
    assert sample(runtime, "rollout_rollbacks_total", trigger="alert") == 1
    assert len([c for c in FlagAudit(runtime.pool).recent(50) if c["actor"].startswith("alert:")]) == 1
    assert [e["outcome"] for e in runtime.alert_events.recent(kind="alert")] == ["repeat"] * 3 + ["tripped"]


def test_firing_resolved_then_rearm_restores_v2(client, runtime):
    at_percentage(runtime, 40)
    post(client, alertmanager())
    response = post(client, alertmanager("resolved"))
    assert response.get_json()["alerts"][0]["outcome"] == "awaiting_rearm"
    record = v2(runtime)
    assert record["state"] == "open" and record["awaiting_rearm"] and record["next_probe_at"] is None
    assert runtime.flags.get(V2_PERCENTAGE) == 0
    assert post(client, alertmanager("resolved")).get_json()["alerts"][0]["outcome"] == "repeat"

    response = client.post(BREAKER, json={"action": "rearm", "reason": "fixed"}, headers=admin_headers())
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["outcome"] == "rearmed" and body["versions"]["v2"]["state"] == "half-open"
    assert f"{V2_PERCENTAGE} 0 -> 40 (restored)" in body["actions"]
    assert runtime.flags.get(V2_PERCENTAGE) == 40 and body["saved_percentage"] is None

    # the same alert firing again (a new startsAt) trips again
    again = post(client, alertmanager(starts_at="2024-05-02T08:00:00Z")).get_json()["alerts"][0]
    assert again["outcome"] == "tripped" and runtime.flags.get(V2_PERCENTAGE) == 0


def test_auto_release_half_opens_and_restores_on_resolution(make_runtime, services):
    runtime = make_runtime(settings_for(services, ALERT_ON_RESOLVE="auto"))
    client = create_app(runtime.settings, runtime=runtime).test_client()
    at_percentage(runtime, 30)
    post(client, grafana())
    outcome = post(client, grafana("resolved")).get_json()["alerts"][0]
    assert outcome["outcome"] == "released"
    assert outcome["actions"] == ["breaker v2 half-open (one probe decides)", f"{V2_PERCENTAGE} 0 -> 30 (restored)"]
    assert v2(runtime)["state"] == "half-open" and runtime.flags.get(V2_PERCENTAGE) == 30


def test_the_percentage_is_left_alone_when_configured(make_runtime, services):
    runtime = make_runtime(settings_for(services, ALERT_SET_PERCENTAGE_ZERO="false"))
    client = create_app(runtime.settings, runtime=runtime).test_client()
    at_percentage(runtime, 30)
    assert post(client, simple()).get_json()["alerts"][0]["actions"] == ["breaker v2 open"]
    assert runtime.flags.get(V2_PERCENTAGE) == 30 and v2(runtime)["state"] == "open"


def test_closing_while_an_alert_fires_is_a_conflict_unless_forced(client, runtime):
    post(client, simple())
    response = client.post(BREAKER, json={"action": "close"}, headers=admin_headers())
    assert response.status_code == 409 and "error_rate" in response.get_json()["detail"]
    assert v2(runtime)["state"] == "open"
    response = client.post(BREAKER, json={"action": "close", "force": True}, headers=admin_headers())
    assert response.status_code == 200 and response.get_json()["versions"]["v2"]["state"] == "closed"
    assert response.get_json()["firing_alerts"] == []


# -- the event log -----------------------------------------------------------------------

def test_events_are_listed_newest_first_for_admins_only(client, runtime):
    post(client, alertmanager(severity="warning"))
    post(client, grafana())
    client.post(BREAKER, json={"action": "open", "version": "v1", "reason": "drill"}, headers=admin_headers())
    assert client.get(URL).status_code == 401
    assert client.get(URL, headers=admin_headers("wrong")).status_code == 403
    events = client.get(URL, headers=admin_headers()).get_json()["events"]
    assert [(e["kind"], e["source"], e["outcome"]) for e in events] == [
        ("action", "api", "opened"), ("alert", "grafana", "tripped"), ("alert", "alertmanager", "recorded")]
    assert events[1]["fingerprint"] == "c6eadffa33fcdf37" and events[1]["value"] == 0.93
    assert events[0]["actor"] == "api" and events[0]["detail"] == "drill"
    warnings = client.get(f"{URL}?severity=warning&limit=5", headers=admin_headers()).get_json()["events"]
    assert [e["severity"] for e in warnings] == ["warning"]
    assert client.get(f"{URL}?limit=0", headers=admin_headers()).status_code == 400
    assert client.get(f"{URL}?kind=nope", headers=admin_headers()).status_code == 400


def test_the_routes_are_documented(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert set(paths[URL]) == {"get", "post"} and set(paths[BREAKER]) == {"get", "post"}
    assert "401" in paths[URL]["post"]["responses"] and "413" in paths[URL]["post"]["responses"]


def test_the_alertmanager_example_posts_to_the_webhook_with_the_bearer_secret():
    path = Path(__file__).resolve().parent.parent / "grafana" / "alertmanager.yml"
    config = yaml.safe_load(path.read_text())
    [receiver] = [r for r in config["receivers"] if r["name"] == "rag-rollout"]
    [webhook] = receiver["webhook_configs"]
    assert webhook["url"].endswith(URL) and webhook["send_resolved"] is True
    assert webhook["http_config"]["authorization"]["type"] == "Bearer"
    [route] = config["route"]["routes"]
    assert route["receiver"] == "rag-rollout"


def test_an_unknown_severity_in_the_simple_form_is_refused_with_the_known_ones(client, runtime):
    at_percentage(runtime, 25)
    response = post(client, simple(severity="CRIT"))
    assert response.status_code == 400
    detail = response.get_json()["detail"]
    assert "severity 'CRIT' is unknown: use one of critical, error, info, none, warning" in detail
    assert v2(runtime)["state"] == "closed" and runtime.flags.get(V2_PERCENTAGE) == 25
    assert post(client, simple(severity="CRITICAL")).status_code == 200  # case does not matter
    assert v2(runtime)["state"] == "open"
