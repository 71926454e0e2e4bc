"""`GET /api/rollout/status`, `POST /api/rollout/stage` (admin) and `GET /api/rollout/decisions`.

The same `RolloutService` as `rollout stage ...` and the controller process: a command here
is applied under the state's lock, carried out on the flags (audited with the caller as
actor) and stored in `rollout_decisions`. `start` is `rollout stage start`: it names the
baseline and the candidate, which the registry records in the same transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from flask import Blueprint, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flags import V2_PERCENTAGE, FlagError, FlagNotAudited, definition
from rollout.analytics.figures import RANGES, InvalidRange, parse_range
from rollout.analytics.series import STEPS
from rollout.api.auth import admin_required, check_admin
from rollout.api.context import current_runtime
from rollout.api.errors import ApiError, bad_request
from rollout.api.openapi import operation, query_parameter
from rollout.api.validation import limit_argument, parse
from rollout.controller import Action, Command, TransitionError
from rollout.stages import RollbackTarget
from rollout.versions import NAME, UnknownVersion, VersionError

bp = Blueprint("stages", __name__)

_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
DECISION_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"}, "decided_at": {"type": "string", "format": "date-time"},
        "kind": {"enum": ["evaluation", "command", "flag_change"]},
        "action": {"type": "string", "description": "The verdict (advance, hold, pause, rollback) or the command."},
        "actor": {"type": "string", "description": "controller, or who gave the command or changed the flag."},
        "reason": {"type": "string"},
        "percentage_before": {"type": "number"}, "percentage_after": {"type": "number"},
        "status_before": {"type": "string"}, "status_after": {"type": "string"},
        "gates": {"type": "array", "description": "Evaluations: each gate's status and reason.",
                  "items": {"type": "object"}},
        "flag_changes": {"type": "array", "items": {"type": "string"}},
        "error": {"type": ["string", "null"], "description": "The change could not be carried out."},
        "notification": {"type": ["object", "null"], "description": "Rollbacks and pauses: the POST to "
                                                                    "ROLLOUT_NOTIFY_URL and how it went."},
    },
}
STATUS_SCHEMA = {
    "type": "object",
    "required": ["status", "percentage", "summary", "complete", "v1_retirable"],
    "properties": {
        "status": {"enum": ["idle", "running", "held", "paused", "rolled_back", "complete"]},
        "percentage": {"type": "number", "description": "The candidate's share the rollout is at."},
        "stage": {"type": ["integer", "null"], "description": "1-based place among the plan's stages."},
        "stages": {"type": "array", "items": {"type": "number"}},
        "next_stage": {"type": ["number", "null"]},
        "reason": {"type": "string", "description": "Why the rollout is where it is."},
        "stage_started_at": _NULLABLE_TIME, "time_in_stage_s": {"type": ["number", "null"]},
        "required_time_s": {"type": ["number", "null"], "description": "Minimum time of this stage (at 100 %: "
                                                                       "stable time before completion)."},
        "last_evaluated_at": _NULLABLE_TIME, "next_evaluation_at": _NULLABLE_TIME,
        "last_decision": {"oneOf": [DECISION_SCHEMA, {"type": "null"}]},
        "last_evaluation": {"oneOf": [DECISION_SCHEMA, {"type": "null"}]},
        "flags": {"type": "object", "description": "The flags now, and whether they agree with the rollout."},
        "controller": {"type": "object", "description": "The active controller (leader lock holder), if any."},
        "complete": {"type": "boolean"},
        "v1_retirable": {"type": "boolean", "description": "100 % and stable for the plan's time: the baseline can be "
                                                          "retired (nothing is dropped automatically)."},
        "plan": {"type": "object"}, "warnings": {"type": "array", "items": {"type": "string"}},
        "summary": {"type": "string"},
    },
}


class StageCommand(BaseModel):
    """The body of POST /api/rollout/stage."""

    # the schema's allOf says what _fields_fit_the_action checks
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"allOf": [
        {"if": {"properties": {"action": {"const": "set"}}},
         "then": {"required": ["percentage"], "properties": {"percentage": {"type": "number"}}},
         "else": {"properties": {"percentage": {"type": "null"}}}},
        {"if": {"properties": {"action": {"const": "rollback"}}},
         "else": {"properties": {"rollback_to": {"type": "null"}}}},
        {"if": {"properties": {"action": {"const": "start"}}},
         "then": {"required": ["baseline", "candidate"],
                  "properties": {"baseline": {"type": "string"}, "candidate": {"type": "string"},
                                 "expected_percentage": {"type": "null"}}},
         "else": {"properties": {"baseline": {"type": "null"}, "candidate": {"type": "null"}}}},
    ]})  # `percentage: false` is not 0: strict

    action: Literal["start", "advance", "hold", "resume", "rollback", "set"] = Field(
        description="start: roll `candidate` out against `baseline` from the first stage (409 while another "
                    "rollout is under way); advance: to the next stage (at 100 %: declare complete); hold: stop "
                    "advancing (still rolled back on a clear failure); resume: hand control back to the controller "
                    "(from 0 %: start); rollback: to 0 % or the previous stage; set: to `percentage`.")
    baseline: str | None = Field(None, pattern=NAME.pattern, max_length=32,
                                 description="start: the version users stay on (the registry's baseline).")
    candidate: str | None = Field(None, pattern=NAME.pattern, max_length=32,
                                  description="start: the version rolled out (registered and ready); not the "
                                              "baseline.")
    percentage: float | None = Field(None, ge=0, le=100, json_schema_extra={"multipleOf": 0.01},
                                     description="set: the candidate's share, 0-100 in 0.01 steps.")
    rollback_to: RollbackTarget | None = Field(
        None, description="rollback: where to (default ROLLOUT_ROLLBACK_TO).")
    reason: str | None = Field(None, max_length=500, description="Why: kept with the decision and the flag audit.")
    expected_percentage: float | None = Field(
        None, ge=0, le=100, json_schema_extra={"multipleOf": 0.01},
        description="Refuse (409) unless the rollout is at this percentage now.")

    @field_validator("percentage", "expected_percentage")
    @classmethod
    def _a_valid_percentage(cls, value: float | None) -> float | None:
        if value is None:
            return None
        try:
            return definition(V2_PERCENTAGE).parse(value)
        except FlagError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _fields_fit_the_action(self):
        if self.action == "set" and self.percentage is None:
            raise ValueError("set needs a percentage")
        if self.action != "set" and self.percentage is not None:
            raise ValueError("percentage is only for set")
        if self.action != "rollback" and self.rollback_to is not None:
            raise ValueError("rollback_to is only for rollback")
        if self.action == "start":
            if self.baseline is None or self.candidate is None:
                raise ValueError("start needs a baseline and a candidate")
            if self.baseline == self.candidate:
                raise ValueError("the baseline and the candidate must be two different versions")
            if self.expected_percentage is not None:
                raise ValueError("expected_percentage is not for start (a rollout starts from 0 %)")
        elif self.baseline is not None or self.candidate is not None:
            raise ValueError("baseline and candidate are only for start")
        return self


def _service():
    return current_runtime().stages


@bp.get("/api/rollout/status")
@operation("The staged rollout: plan, stage, time in stage, next evaluation, the last decision and why, the "
           "active controller, and whether the baseline can be retired.", tags=("rollout",), ok=STATUS_SCHEMA,
           errors=(503,))
def status():
    return jsonify(_service().status())


@bp.post("/api/rollout/stage")
@operation("Start a rollout of a candidate against the baseline, advance, hold, resume, roll it back or set its "
           "percentage; stored in rollout_decisions with the actor, the flag change audited. A start naming a "
           "version the registry does not hold is a 404; one that does not fit the registry (the baseline is not "
           "the baseline, the candidate is retired) or the rollout (another is under way) a 409.",
           tags=("rollout",), body=StageCommand, admin=True,
           ok={"type": "object", "properties": {"decision": DECISION_SCHEMA, "status": STATUS_SCHEMA}},
           errors=(404, 409, 413, 503))
def command():
    actor = check_admin()
    body = parse(StageCommand, max_bytes=16 * 1024)
    service = _service()
    try:
        if body.action == "start" and body.baseline and body.candidate:  # both, by the body's own rule
            decision = service.start(body.baseline, body.candidate, actor=actor, reason=body.reason or "")
        else:
            decision = service.command(
                Command(Action(body.action), actor=actor, reason=body.reason or "", percentage=body.percentage,
                        rollback_to=body.rollback_to),
                expected_percentage=body.expected_percentage)
    except UnknownVersion as exc:
        raise ApiError(404, "unknown_version", str(exc)) from None
    except (TransitionError, VersionError) as exc:
        raise ApiError(409, "conflict", str(exc), rollout=service.status()["summary"]) from None
    except FlagNotAudited as exc:  # the command's transaction rolled back with it: nothing changed
        raise ApiError(503, "audit_unavailable", str(exc)) from None
    return jsonify({"decision": decision, "status": service.status()})


@bp.get("/api/rollout/decisions")
@operation("The latest rollout decisions, newest first: evaluations with their gates, commands, flag changes.",
           tags=("rollout",), admin=True,
           ok={"type": "object", "properties": {"decisions": {"type": "array", "items": DECISION_SCHEMA}}},
           parameters=[query_parameter("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Rows."),
                       query_parameter("details", {"type": "boolean"},
                                       "Include each verdict, its evidence summary and the plan.")])
@admin_required
def decisions():
    limit = limit_argument(default=20)
    details = request.args.get("details", "false").lower()
    if details not in ("true", "false", "1", "0"):
        raise bad_request("details must be true or false")
    return jsonify({"decisions": _service().decisions(limit, details=details in ("true", "1"))})


GATE_HISTORY_SCHEMA = {
    "type": "object",
    "properties": {
        "range": {"type": "string"}, "since": {"type": "string", "format": "date-time"},
        "evaluations": {"type": "array", "description": "Oldest first.", "items": {"type": "object", "properties": {
            "id": {"type": "integer"}, "decided_at": {"type": "string", "format": "date-time"},
            "action": {"type": "string", "description": "The verdict."}, "percentage": {"type": "number"},
            "gates": {"type": "array", "items": {"type": "object", "description": "name, status, reason, and the "
                                                                                  "values and thresholds it used."}},
        }}},
    },
}


@bp.get("/api/rollout/gates")
@operation("Each gate's values and thresholds over time, from the stored evaluations: the latest of each step of "
           "the range (the steps of /api/monitoring/series).",
           tags=("rollout",), ok=GATE_HISTORY_SCHEMA, errors=(400, 503),
           parameters=[query_parameter("range", {"enum": list(RANGES), "default": "24h"}, "The window.")])
def gate_history():
    range_name = request.args.get("range", "24h")
    try:
        since = datetime.now(UTC) - parse_range(range_name)
    except InvalidRange as exc:
        raise bad_request(str(exc), "invalid_range") from None
    return jsonify({"range": range_name, "since": since.isoformat(),
                    "evaluations": _service().store.gate_history(since, STEPS[range_name])})
