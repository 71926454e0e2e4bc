"""Process endpoints: `/healthz`, `/metrics`, `/openapi.json`."""

from __future__ import annotations

import psycopg
from flask import Blueprint, Response, current_app, jsonify
from psycopg_pool import PoolTimeout

from rollout.api.context import current_runtime
from rollout.api.openapi import build_document, operation

bp = Blueprint("system", __name__)


@bp.get("/healthz")
@operation("Liveness and readiness: 200 while PostgreSQL answers (Redis down is 'degraded', still 200).",
           tags=("system",), errors=(503,))
def healthz():
    runtime = current_runtime()
    try:
        with runtime.pool.connection(timeout=2) as conn:
            conn.execute("SELECT 1")
        database = "ok"
    except (psycopg.Error, PoolTimeout):
        database = "unreachable"
    redis_state = "ok" if runtime.replicator.healthy else "unreachable"
    status = "ok" if database == "ok" and redis_state == "ok" else ("degraded" if database == "ok" else "down")
    body = {"status": status, "database": database, "redis": redis_state,
            "flags_snapshot_age_s": runtime.replicator.snapshot_age_s(),
            "flags_version": runtime.flags.snapshot().version}
    return jsonify(body), 503 if status == "down" else 200


@bp.get("/metrics")
@operation("Prometheus metrics (text exposition; merged across gunicorn workers).", tags=("system",),
           content_type="text/plain", ok={"type": "string"})
def metrics():
    runtime = current_runtime()
    return Response(runtime.metrics.render(), mimetype="text/plain; version=0.0.4; charset=utf-8")


@bp.get("/openapi.json")
@operation("This OpenAPI document.", tags=("system",))
def openapi():
    return jsonify(build_document(current_app))
