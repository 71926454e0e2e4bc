"""`GET|POST /api/monitoring/circuit-breaker`: the breakers' state, and the operator's actions."""

from __future__ import annotations

from typing import Literal

from flask import Blueprint, jsonify
from pydantic import BaseModel, ConfigDict, Field

from rollout.api.auth import check_admin
from rollout.api.context import current_runtime
from rollout.api.errors import ApiError
from rollout.api.openapi import operation
from rollout.api.validation import parse
from rollout.breaker import BreakerConflict

bp = Blueprint("breaker", __name__)

_RECORD = {
    "type": "object",
    "properties": {
        "state": {"enum": ["closed", "half-open", "open"]}, "failures": {"type": "integer"},
        "fail_max": {"type": "integer"}, "opened_at": {"type": ["string", "null"], "format": "date-time"},
        "cause": {"enum": ["failures", "alert", "manual", None]},
        "detail": {"type": ["string", "null"], "description": "Failure kind, alert name or the operator's reason."},
        "fingerprint": {"type": ["string", "null"]}, "alertname": {"type": ["string", "null"]},
        "held_by_alerts": {"type": "boolean"}, "awaiting_rearm": {"type": "boolean"},
        "next_probe_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
STATUS_SCHEMA = {
    "type": "object",
    "properties": {"versions": {"type": "object", "additionalProperties": _RECORD},
                   "firing_alerts": {"type": "array", "items": {"type": "object"}},
                   "saved_percentage": {"type": ["number", "null"],
                                        "description": "FF_NEW_EMBEDDINGS_PERCENTAGE before the rollback."},
                   "local_only": {"type": "boolean"}, "redis": {"enum": ["ok", "unreachable"]},
                   "worker": {"type": "object", "description": "The answering process: pid, the version of its "
                                                               "copy and when it installed it."}},
}


class BreakerAction(BaseModel):
    """The body of POST /api/monitoring/circuit-breaker."""

    model_config = ConfigDict(extra="forbid", strict=True)

    action: Literal["open", "close", "rearm", "rollback"] = Field(
        description="open: hold the version off until closed; close: serve it again now; rearm: half-open, "
                    "one probe decides; rollback: percentage to 0 and the candidate open, in one step.")
    version: str | None = Field(None, pattern=r"^[a-z0-9_-]{1,32}$",
                                description="Which breaker, by version name (default: the candidate; rollback "
                                            "is always the candidate).")
    reason: str | None = Field(None, max_length=500, description="Why: kept in alert_events.")
    force: bool = Field(False, description="close/rearm even though a tripping alert still fires.")
    restore: bool | None = Field(None, description="Restore the percentage saved by the rollback (default: "
                                                   "yes for rearm, ALERT_RESTORE_PERCENTAGE; no for close).")



@bp.get("/api/monitoring/circuit-breaker")
@operation("Breaker state per version: failures, opened at, why (failures, alert, manual), firing alerts.",
           tags=("breaker",), ok=STATUS_SCHEMA)
def status():
    return jsonify(current_runtime().breakers.describe())


@bp.post("/api/monitoring/circuit-breaker")
@operation("Open, close, re-arm a breaker, or roll the candidate back; recorded in alert_events.", tags=("breaker",),
           body=BreakerAction, admin=True, ok=STATUS_SCHEMA, errors=(404, 409, 413))
def act():
    actor = check_admin()
    body = parse(BreakerAction, max_bytes=16 * 1024)
    runtime = current_runtime()
    actions = runtime.rollback
    version = body.version or runtime.router.roles.candidate or runtime.router.roles.baseline
    if version not in runtime.backends:
        raise ApiError(404, "unknown_version", f"no version named {version}; known: {', '.join(runtime.backends)}")
    try:
        if body.action == "open":
            result = actions.open(version, actor=actor, reason=body.reason, source="api")
        elif body.action == "close":
            result = actions.close(version, actor=actor, reason=body.reason, source="api", force=body.force,
                                   restore=bool(body.restore))
        elif body.action == "rearm":
            restore = runtime.settings.alert_restore_percentage if body.restore is None else body.restore
            result = actions.rearm(version, actor=actor, reason=body.reason, source="api", force=body.force,
                                   restore=restore)
        else:
            result = actions.rollback(actor=actor, reason=body.reason, source="api")
    except BreakerConflict as exc:
        raise ApiError(409, "alerts_firing", str(exc)) from None
    response = {"action": body.action, "outcome": result.outcome, "actions": result.actions,
                **runtime.breakers.describe()}
    if result.warnings:
        response["warnings"] = result.warnings
    return jsonify(response)
