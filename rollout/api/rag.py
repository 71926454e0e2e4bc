"""`POST /api/rag/query` and the per-version health checks."""

from __future__ import annotations

import os
import re
import uuid
from typing import Literal

from flask import Blueprint, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from rollout.api.auth import check_admin
from rollout.api.context import current_runtime
from rollout.api.errors import ApiError, bad_request
from rollout.api.openapi import operation
from rollout.api.validation import parse, whole_number
from rollout.backends import QueryRejected, SearchFailed
from rollout.gateway import MergedAnswer, RagAnswer, RagQuery

bp = Blueprint("rag", __name__)

MAX_QUERY_BYTES = 8 * 1024
MAX_BODY_BYTES = 64 * 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class QueryRequest(BaseModel):
    """The body of POST /api/rag/query."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"allOf": [  # checked in query()
        {"if": {"required": ["mode"], "properties": {"mode": {"const": "merged"}}},
         "then": {"properties": {"version": {"type": "null"}}}}]})

    query: str = Field(min_length=1, description="The question; at most 8 KiB of UTF-8.")
    k: whole_number(1, 50) = Field(10, description="How many results.")
    category: str | None = Field(None, min_length=1, max_length=128, description="Only this category.")
    user_id: str | None = Field(None, min_length=1, max_length=256, description="Sticky routing key.")
    session_id: str | None = Field(None, min_length=1, max_length=256,
                                   description="Routing key when there is no user id.")
    min_similarity: float | None = Field(None, ge=-1, le=1, description="Drop results below this cosine.")
    version: str | None = Field(None, pattern=r"^[a-z0-9_-]{1,32}$",
                                description="Force a version by name: the baseline or the candidate "
                                            "(admin token required); another name is neither the baseline "
                                            "nor the candidate (400).")
    mode: Literal["routed", "merged"] = Field(
        "routed", description="routed: the user's version answers. merged: one list from the baseline and the "
                              "candidate, near-duplicates removed, ranked by reciprocal rank fusion (the baseline "
                              "alone while the candidate is held off).")

    @field_validator("query")
    @classmethod
    def _query_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the query is blank")
        if len(value.encode("utf-8")) > MAX_QUERY_BYTES:
            raise ValueError(f"the query is longer than {MAX_QUERY_BYTES} bytes")
        return value


HIT_SCHEMA = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "title": {"type": "string"}, "snippet": {"type": "string"},
                   "category": {"type": "string"}, "metadata": {"type": "object"},
                   "similarity": {"type": "number", "description": "Cosine similarity in the serving version."},
        "rrf_score": {"type": "number", "description": "merged mode: reciprocal rank fusion score."},
        "found_by": {"type": "array", "items": {"type": "string"}, "description": "merged mode: version names."},
        "ranks": {"type": "object", "description": "merged mode: 1-based rank in each version that found it."},
        "similarities": {"type": "object", "description": "merged mode: cosine in each version's own space."},
        "duplicates": {"type": "array", "items": {"type": "string"},
                       "description": "merged mode: near-duplicate documents folded into this result."}},
}
ANSWER_SCHEMA = {
    "type": "object",
    "required": ["results", "served_by", "decision", "fallback", "latency_ms", "request_id"],
    "properties": {
        "results": {"type": "array", "items": HIT_SCHEMA},
        "served_by": {"type": "string", "description": "The version's name, or merged."},
        "mode": {"enum": ["routed", "merged"]},
        "sources": {"type": "object", "description": "merged mode: per version, its result count, latency and "
                                                     "error, or why it was held off.",
                    "additionalProperties": {"type": "object", "properties": {
                        "results": {"type": "integer"}, "latency_ms": {"type": "number"},
                        "error": {"type": "string"}, "held_off": {"type": "string"}}}},
        "comparison": {"type": ["object", "null"],
                       "description": "merged mode: how the two versions' lists agree; null unless both answered.",
                       "properties": {"overlap": {"type": "number"}, "rbo": {"type": "number"},
                                      "kendall_tau": {"type": ["number", "null"]},
                                      "top1_agreement": {"type": "boolean"}, "shared": {"type": "integer"}}},
        "decision": {"type": "object", "properties": {
            "version": {"type": "string", "description": "The routed version (before any fallback)."},
            "reason": {"type": "string", "description": "percentage, migration_disabled, breaker_open, alert, "
                                                        "v2_incomplete, forced or error."},
            "bucket": {"type": ["integer", "null"], "description": "The user's bucket, 0-9999."}}},
        "fallback": {"type": "boolean", "description": "The candidate failed and the baseline answered in the same "
                                                       "request (merged mode: a version failed and the other "
                                                       "answered)."},
        "fallback_reason": {"type": "string"},
        "hint": {"type": "string", "description": "Why there are no results, when the query named a category "
                                                  "that holds no documents."},
        "latency_ms": {"type": "number"},
        "request_id": {"type": "string"},
    },
}



def _user_key(body: QueryRequest) -> str:
    """user_id (body, then X-User-Id), else a session id, else random (counted)."""
    user = body.user_id or request.headers.get("X-User-Id", "").strip()
    if user:
        return user
    session = body.session_id or request.headers.get("X-Session-Id", "").strip() or request.cookies.get("session_id")
    if session:
        return f"session:{session}"
    current_runtime().metrics.anonymous_requests.inc()
    return f"anonymous:{uuid.uuid4().hex}"


def _request_id() -> str:
    given = request.headers.get("X-Request-Id", "")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex


@bp.post("/api/rag/query")
@operation("Answer a RAG query from the version the user is routed to (the baseline if the candidate fails), or "
           "from both "
           "versions merged.", tags=("rag",),
           body=QueryRequest, ok=ANSWER_SCHEMA, errors=(401, 403, 413, 503))
def query():
    body = parse(QueryRequest, max_bytes=MAX_BODY_BYTES)
    if body.version is not None and body.mode == "merged":
        raise bad_request("version and mode=merged exclude each other: merged mode searches both versions")
    if body.version is not None:
        roles = current_runtime().router.roles
        if body.version not in roles:
            raise bad_request(f"version {body.version} is neither the baseline ({roles.baseline}) nor the "
                              f"candidate ({roles.candidate or 'none'})")
        check_admin()
    rag_query = RagQuery(text=body.query, k=body.k, category=body.category, min_similarity=body.min_similarity,
                         user_key=_user_key(body), forced=body.version, request_id=_request_id())
    gateway = current_runtime().gateway
    try:
        if body.mode == "merged":
            answer = gateway.answer_merged(rag_query)
            payload = merged_json(answer)
        else:
            answer = gateway.answer(rag_query)
            payload = answer_json(answer)
    except QueryRejected as exc:
        raise ApiError(400, "invalid_query", str(exc), request_id=rag_query.request_id) from None
    except SearchFailed as exc:
        raise ApiError(503, "search_unavailable", f"no version could answer: {exc}",
                       request_id=rag_query.request_id) from None
    hint = _category_hint(body.category) if not payload["results"] else None
    if hint:
        payload["hint"] = hint
    response = jsonify(payload)
    response.headers["X-Request-Id"] = rag_query.request_id
    response.headers["X-Served-By"] = answer.served_by
    response.headers["X-Rollout-Worker"] = str(os.getpid())
    return response


def _category_hint(category: str | None) -> str | None:
    """An empty answer for a category no document has says so, with the ones there are."""
    if category is None:
        return None
    known = current_runtime().coverage.categories()
    if known is None or category in known:
        return None
    shown = ", ".join(sorted(known)[:20]) or "none"
    return f"no document has the category {category!r}; categories: {shown}"


def answer_json(answer: RagAnswer) -> dict:
    decision = answer.decision
    body = {
        "results": [hit.as_json() for hit in answer.result.hits],
        "served_by": answer.served_by,
        "decision": {"version": decision.version, "reason": decision.reason.value, "bucket": decision.bucket},
        "fallback": answer.fallback,
        "latency_ms": round(answer.latency_ms, 3),
        "request_id": answer.query.request_id,
        "mode": "routed",
    }
    if answer.failure is not None:
        body["fallback_reason"] = answer.failure.kind
    return body


def merged_json(answer: MergedAnswer) -> dict:
    decision = answer.decision
    sources: dict[str, dict] = {}
    for version, run in answer.runs.items():
        sources[version] = {"results": len(run.result.hits) if run.result else 0,
                            "latency_ms": round(run.latency_ms, 3)}
        if run.failure is not None:
            sources[version]["error"] = run.failure.kind
    if answer.held_off is not None:
        held = next((v for v in current_runtime().router.roles if v is not None and v not in answer.runs), "candidate")
        sources[held] = {"results": 0, "held_off": answer.held_off.value}
    failed = [run.failure.kind for run in answer.runs.values() if run.failure is not None]
    body = {
        "results": [hit.as_json() for hit in answer.hits],
        "served_by": answer.served_by,
        "decision": {"version": decision.version, "reason": decision.reason.value, "bucket": decision.bucket},
        "fallback": bool(failed),
        "latency_ms": round(answer.latency_ms, 3),
        "request_id": answer.query.request_id,
        "mode": "merged",
        "sources": sources,
        "comparison": answer.comparison.as_json() if answer.comparison else None,
    }
    if failed:
        body["fallback_reason"] = failed[0]
    return body


@bp.get("/api/rag/versions/<version>/health")
@operation("Health of one version by name: database, rows embedded, HNSW index, embedder, dimensions.",
           tags=("rag",), errors=(404, 503))
def version_health(version: str):
    return _health(version)


@bp.get("/api/rag/<version>/health")
@operation("Health of one version (the older path; same answer as /api/rag/versions/{version}/health).",
           tags=("rag",), errors=(404, 503))
def version_health_old_path(version: str):
    return _health(version)


def _health(version: str):
    backends = current_runtime().backends
    if version not in backends:
        raise ApiError(404, "unknown_version", f"unknown version {version!r}; expected one of {', '.join(backends)}")
    report = backends[version].health()
    return jsonify(report), 200 if report["status"] == "ok" else 503
