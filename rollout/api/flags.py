"""`GET /api/flags` (values and their sources) and `PUT /api/flags/<name>` (admin)."""

from __future__ import annotations

import redis
from flask import Blueprint, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from flags import FlagError, FlagNotAudited, UnknownFlag
from rollout.api.auth import admin_required, check_admin
from rollout.api.context import current_runtime
from rollout.api.errors import ApiError, bad_request
from rollout.api.openapi import operation, query_parameter
from rollout.api.validation import limit_argument, parse

bp = Blueprint("flags", __name__)


class FlagUpdate(BaseModel):
    """The body of PUT /api/flags/<name>."""

    model_config = ConfigDict(extra="forbid")

    value: bool | float | str | None = Field(
        description="New value: true/false, or 0-100 for the percentage; null drops the override.")
    reason: str | None = Field(None, max_length=500, description="Why: kept in flag_audit.")



@bp.get("/api/flags")
@operation("Every flag's value and where it comes from (redis override, env, default).", tags=("flags",))
def list_flags():
    runtime = current_runtime()
    snapshot = runtime.flags.snapshot()
    return jsonify({
        "flags": runtime.flags.describe(),
        "version": snapshot.version,
        "redis": "ok" if runtime.replicator.healthy else "unreachable",
        "snapshot_age_s": runtime.replicator.snapshot_age_s(),
    })


@bp.put("/api/flags/<name>")
@operation("Change a flag (null drops the override); recorded in flag_audit.", tags=("flags",),
           body=FlagUpdate, admin=True, errors=(404, 413, 503))
def update_flag(name: str):
    actor = check_admin()
    body = parse(FlagUpdate, max_bytes=16 * 1024)
    store = current_runtime().flags
    try:
        if body.value is None:
            change = store.reset(name, actor=actor, reason=body.reason)
        else:
            change = store.set(name, body.value, actor=actor, reason=body.reason)
    except UnknownFlag as exc:
        raise ApiError(404, "unknown_flag", str(exc)) from None
    except FlagError as exc:
        raise bad_request(str(exc), "invalid_value") from None
    except redis.RedisError as exc:
        raise ApiError(503, "redis_unavailable", f"the flag was not changed: Redis is unreachable ({exc})") from None
    except FlagNotAudited as exc:
        raise ApiError(503, "audit_unavailable", str(exc)) from None
    return jsonify({"flag": change.flag, "old": change.old, "new": change.new, "version": change.version,
                    "actor": change.actor, "reason": change.reason, "changed": change.changed})


@bp.get("/api/flags/audit")
@operation("Recent flag changes from flag_audit.", tags=("flags",), admin=True,
           parameters=[query_parameter("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Rows."),
                       query_parameter("flag", {"type": "string"}, "Only this flag.")])
@admin_required
def flag_audit():
    limit = limit_argument()
    return jsonify({"changes": current_runtime().flag_audit.recent(limit, request.args.get("flag"))})
