"""`GET /api/history/...`: the rollout's history for anyone who may read the console, without logging in.

The same stores as the admin endpoints (`/api/rollout/decisions`, `/api/flags/audit`,
`/api/alerts/webhook`), each row cut down to the fields a read-only visitor may see: what was
decided, by whom, why, and on what evidence. Left out: notification delivery results and error
texts of decisions (they may carry internal addresses), the plan, and an alert's labels,
annotations, source and fingerprint (the sender's payload).
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from rollout.api.context import current_runtime
from rollout.api.errors import ApiError, bad_request
from rollout.api.openapi import operation, query_parameter
from rollout.api.validation import limit_argument

bp = Blueprint("history", __name__)

DECISION_FIELDS = ("id", "decided_at", "kind", "action", "actor", "reason", "stage", "percentage_before",
                   "percentage_after", "status_before", "status_after", "window_started_at", "gates")
EVIDENCE_FIELDS = ("verdict", "evidence")
FLAG_FIELDS = ("flag", "old", "new", "actor", "reason", "changed_at")
ALERT_FIELDS = ("id", "received_at", "kind", "alertname", "status", "severity", "outcome", "actions", "actor",
                "detail", "starts_at", "ends_at")
DECISION_KINDS = ("evaluation", "command", "flag_change")

_LIMIT = query_parameter("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Rows (default 50).")
_DECISION = {"type": "object", "description": "A decision: " + ", ".join(DECISION_FIELDS) + ".",
             "properties": {"id": {"type": "integer"}, "decided_at": {"type": "string", "format": "date-time"},
                            "kind": {"type": "string"}, "action": {"type": "string"}, "actor": {"type": "string"},
                            "reason": {"type": "string"}, "gates": {"type": "array", "items": {"type": "object"}}}}


def _public(row: dict, fields: tuple[str, ...]) -> dict:
    return {name: row[name] for name in fields if name in row}


@bp.get("/api/history/decisions")
@operation("The latest rollout decisions, newest first, as a read-only visitor may see them (no login).",
           tags=("history",), errors=(400, 503),
           ok={"type": "object", "properties": {"decisions": {"type": "array", "items": _DECISION}}},
           parameters=[_LIMIT, query_parameter("kind", {"enum": list(DECISION_KINDS)}, "Only this kind.")])
def decisions():
    limit = limit_argument()
    kind = request.args.get("kind") or None
    if kind is not None and kind not in DECISION_KINDS:
        raise bad_request(f"kind must be one of {', '.join(DECISION_KINDS)}")
    rows = current_runtime().stages.store.decisions(limit, kinds=[kind] if kind else None)
    return jsonify({"decisions": [_public(row, DECISION_FIELDS) for row in rows]})


@bp.get("/api/history/decisions/<int:decision_id>")
@operation("One decision with its evidence: the verdict (each gate's values, bounds and thresholds) and the "
           "measured evidence it was made on.", tags=("history",), errors=(404, 503),
           ok={**_DECISION, "properties": {**_DECISION["properties"], "verdict": {"type": ["object", "null"]},
                                           "evidence": {"type": ["object", "null"]}}},
           path={"decision_id": {"type": "integer", "minimum": 0}})
def decision(decision_id: int):
    row = current_runtime().stages.store.decision(decision_id) if decision_id <= 2**63 - 1 else None
    if row is None:
        raise ApiError(404, "not_found", f"no decision #{decision_id}")
    return jsonify(_public(row, DECISION_FIELDS + EVIDENCE_FIELDS))


@bp.get("/api/history/flags")
@operation("Recent flag changes (the flag audit), newest first.", tags=("history",), errors=(400, 503),
           ok={"type": "object", "properties": {"changes": {"type": "array", "items": {
               "type": "object", "description": ", ".join(FLAG_FIELDS)}}}},
           parameters=[_LIMIT, query_parameter("flag", {"type": "string"}, "Only this flag.")])
def flag_changes():
    limit = limit_argument()
    rows = current_runtime().flag_audit.recent(limit, request.args.get("flag") or None)
    return jsonify({"changes": [_public(row, FLAG_FIELDS) for row in rows]})


@bp.get("/api/history/alerts")
@operation("Recent alerts and breaker actions, newest first, without the alerts' payloads.", tags=("history",),
           errors=(400, 503),
           ok={"type": "object", "properties": {"events": {"type": "array", "items": {
               "type": "object", "description": ", ".join(ALERT_FIELDS)}}}},
           parameters=[_LIMIT, query_parameter("kind", {"enum": ["alert", "action"]}, "Only alerts, or actions."),
                       query_parameter("severity", {"type": "string"}, "Only alerts of this severity.")])
def alert_events():
    limit = limit_argument()
    kind = request.args.get("kind") or None
    if kind not in (None, "alert", "action"):
        raise bad_request("kind must be alert or action")
    severity = request.args.get("severity", "").strip().lower() or None
    rows = current_runtime().alert_events.recent(limit, severity, kind)
    return jsonify({"events": [_public(row, ALERT_FIELDS) for row in rows]})
