"""`POST /api/alerts/webhook` (Alertmanager, Grafana, the simple form) and its event log (admin)."""

from __future__ import annotations

import time

from flask import Blueprint, jsonify, request

from rollout.alerts import PayloadError, WebhookAuth, WebhookAuthError, parse_payload
from rollout.alerts.payloads import MAX_ALERTS, SEVERITIES, severity_spellings
from rollout.api.auth import admin_required
from rollout.api.context import current_runtime
from rollout.api.errors import ApiError, bad_request
from rollout.api.openapi import operation, query_parameter
from rollout.api.validation import json_body, limit_argument

bp = Blueprint("alerts", __name__)

MAX_ALERT_BYTES = 1024 * 1024
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_TEXT = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": r"\S"}
_TIME = {"anyOf": [{"type": "string", "format": "date-time"}, {"enum": ["", None]}],
         "description": "RFC 3339 with a time zone; empty, null or Go's zero time mean none."}
_IGNORED = {"description": "Sent by the sender; not read by the gateway (any value)."}
_GROUPED_ALERT = {
    "type": "object", "required": ["status", "labels"],
    "properties": {"status": {"enum": ["firing", "resolved"]}, "labels": _LABELS, "annotations": _LABELS,
                   "startsAt": _TIME, "endsAt": _TIME, "generatorURL": _IGNORED,
                   "fingerprint": {**_TEXT, "description": "Default: a hash of the labels."},
                   "values": {"type": "object", "description": "Grafana only: value per query ref."}},
}
_ALERTS = {"type": "array", "items": _GROUPED_ALERT, "minItems": 1, "maxItems": MAX_ALERTS}
WEBHOOK_SCHEMA = {
    "description": "Told apart by shape: the simple form, Alertmanager (version \"4\") or Grafana (version \"1\"). "
                   "Fields the gateway does not read are not constrained.",
    "oneOf": [
        {"title": "Simple", "type": "object", "required": ["type", "severity"],
         "not": {"required": ["alerts"]},
         "properties": {"type": _TEXT, "severity": {"enum": severity_spellings(SEVERITIES), "description":
                                                    "Also a severity named in ALERT_TRIP_SEVERITIES."},
                        "value": {"type": ["number", "null"]},
                        "threshold": {"type": ["number", "null"]},
                        "status": {"enum": ["firing", "resolved", None], "description": "Default: firing."},
                        "fingerprint": {**_TEXT, "type": ["string", "null"]},
                        "message": {**_TEXT, "type": ["string", "null"]}}},
        {"title": "Alertmanager", "type": "object", "required": ["version", "alerts"],
         "properties": {"version": {"const": "4"}, "status": _IGNORED, "groupKey": _IGNORED,
                        "truncatedAlerts": _IGNORED, "alerts": _ALERTS}},
        {"title": "Grafana", "type": "object", "required": ["version", "alerts"],
         "properties": {"version": {"const": "1"}, "state": _IGNORED, "orgId": _IGNORED, "alerts": _ALERTS}},
    ],
}
DELIVERY_SCHEMA = {
    "type": "object",
    "properties": {"source": {"enum": ["seed", "alertmanager", "grafana"]},
                   "authenticated_by": {"enum": ["bearer", "basic", "hmac", "none (development)"]},
                   "alerts": {"type": "array", "items": {"type": "object"}},
                   "event_ids": {"type": "array", "items": {"type": "integer"}}},
}



def _authenticate(raw: bytes) -> str:
    settings = current_runtime().settings
    if not settings.alert_webhook_secret:
        if settings.development:
            return "none (development)"
        raise ApiError(503, "webhook_disabled", "ALERT_WEBHOOK_SECRET is not set on the server; alerts are "
                                                "refused (ROLLOUT_ENV=development accepts them unauthenticated)")
    auth = WebhookAuth(settings.alert_webhook_secret, settings.alert_hmac_signature_header,
                       settings.alert_hmac_timestamp_header, settings.alert_hmac_max_age_s)
    try:
        return auth.authenticate(request.headers, raw, time.time())
    except WebhookAuthError as exc:
        raise ApiError(401, "unauthorized", str(exc), headers={"WWW-Authenticate": 'Bearer realm="alerts"'}) from None


@bp.post("/api/alerts/webhook")
@operation("Receive alerts (simple form, Alertmanager v4, Grafana); tripping ones roll the named "
           "version (default: the candidate) back at once.",
           tags=("alerts",), body=WEBHOOK_SCHEMA, ok=DELIVERY_SCHEMA, errors=(401, 413, 503))
def receive():
    request.max_content_length = MAX_ALERT_BYTES
    raw = request.get_data(cache=True)
    method = _authenticate(raw)
    try:
        source, alerts = parse_payload(json_body(MAX_ALERT_BYTES), current_runtime().settings.trip_severities)
    except PayloadError as exc:
        raise bad_request(str(exc), "invalid_payload") from None
    delivery = current_runtime().alerts.receive(source, alerts)
    body = {"source": source, "authenticated_by": method, "alerts": [o.as_json() for o in delivery.outcomes],
            "event_ids": delivery.event_ids}
    if delivery.deferred:
        body.update(error="redis_unavailable",
                    detail="Redis is unreachable: the alert holds the candidate off on this worker and is stored; "
                           "it is applied on every worker once Redis answers. Retry to confirm.")
        return jsonify(body), 503
    return jsonify(body)


@bp.get("/api/alerts/webhook")
@operation("Recent alerts and breaker actions from alert_events, newest first.", tags=("alerts",), admin=True,
           parameters=[query_parameter("severity", {"type": "string"}, "Only alerts of this severity."),
                       query_parameter("kind", {"enum": ["alert", "action"]}, "Only alerts, or only actions."),
                       query_parameter("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Rows.")])
@admin_required
def recent():
    limit = limit_argument()
    kind = request.args.get("kind")
    if kind not in (None, "alert", "action"):
        raise bad_request("kind must be alert or action")
    severity = request.args.get("severity", "").strip().lower() or None
    return jsonify({"events": current_runtime().alert_events.recent(limit, severity, kind)})
