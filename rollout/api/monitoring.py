"""`GET /api/monitoring/dashboard`: the baseline beside the candidate from query_log, and the success criteria
with their values."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from flags import QUERY_ANALYTICS
from rollout.analytics.figures import RANGES, InvalidRange
from rollout.api.context import current_runtime
from rollout.api.errors import bad_request
from rollout.api.openapi import operation, query_parameter
from rollout.relevance.summary import runtime_relevance

bp = Blueprint("monitoring_dashboard", __name__)

VERSION_FIGURES = {
    "type": "object",
    "properties": {
        "requests": {"type": "integer", "description": "Queries routed to this version."},
        "served": {"type": "integer",
                   "description": "Queries this version answered (the baseline's include fallbacks)."},
        "p50_ms": {"type": ["number", "null"]}, "p95_ms": {"type": ["number", "null"]},
        "p99_ms": {"type": ["number", "null"]},
        "errors": {"type": "integer"}, "error_rate": {"type": ["number", "null"]},
        "fallbacks": {"type": "integer"},
        "mean_top_similarity": {"type": ["number", "null"]}, "similarity_samples": {"type": "integer"},
        "cache_hit_rate": {"type": ["number", "null"]}, "cache_samples": {"type": "integer"},
        "actual_share": {"type": ["number", "null"]}, "target_share": {"type": "number"},
        "embed_tokens": {"type": "integer", "description": "Query embedding tokens of this version's model (served "
                                                           "and shadow; estimated where a model reports none)."},
        "price_per_mtok_usd": {"type": ["number", "null"], "description": "USD per 1M tokens of the model "
                                                                          "(EMBEDDING_PRICES_PER_MTOK; local: 0)."},
        "cost_usd": {"type": ["number", "null"], "description": "embed_tokens at that price; null: no price."},
        "shadow": {"type": "object", "properties": {
            "compared": {"type": "integer"}, "mean_overlap": {"type": ["number", "null"]},
            "mean_rbo": {"type": ["number", "null"]}, "top1_agreement_rate": {"type": ["number", "null"]}}},
    },
}
DASHBOARD_SCHEMA = {
    "type": "object",
    "required": ["range", "versions", "criteria", "verdict"],
    "properties": {
        "range": {"enum": list(RANGES)}, "since": {"type": "string"}, "until": {"type": "string"},
        "queries": {"type": "integer"}, "merged_queries": {"type": "integer"},
        "failed_queries": {"type": "integer"}, "critical_errors_24h": {"type": "integer"},
        "versions": {"type": "object", "additionalProperties": VERSION_FIGURES,
                     "description": "Figures per version name (the baseline and the candidate)."},
        "criteria": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "description": {"type": "string"},
            "status": {"enum": ["pass", "fail", "insufficient_data"]},
            "value": {"type": ["number", "null"]}, "threshold": {"type": "number"}, "detail": {"type": "string"}}}},
        "verdict": {"enum": ["pass", "fail", "incomplete"]},
        "baseline": {"type": ["object", "null"],
                     "description": "The latest stored baseline figures (`rollout baseline`)."},
        "query_analytics": {"type": "boolean", "description": "FF_ENABLE_QUERY_ANALYTICS now."},
        "relevance": {"type": "object", "description": "Relevance evidence over the window: each source's figures "
                      "(judge, feedback, probes, golden), the relevance gate's reading and the calibration.",
                      "properties": {"sources": {"type": "object"}, "gate": {"type": "object"},
                                     "calibration": {"type": "object"}}},
    },
}


@bp.get("/api/monitoring/dashboard")
@operation("The baseline beside the candidate over a window (requests, latency percentiles, error rate, similarity, "
           "fallbacks, cache hit rate, traffic share, shadow overlap) and the success criteria.", tags=("monitoring",),
           ok=DASHBOARD_SCHEMA, errors=(400, 503),
           parameters=[query_parameter("range", {"enum": list(RANGES), "default": "24h"}, "The window.")])
def dashboard():
    runtime = current_runtime()
    range_name = request.args.get("range", "24h")
    snapshot = runtime.flags.snapshot()
    try:
        figures = runtime.figures.dashboard(range_name, snapshot)
    except InvalidRange as exc:
        raise bad_request(str(exc), "invalid_range") from None
    return jsonify({**figures.as_json(), "query_analytics": bool(snapshot[QUERY_ANALYTICS]),
                    "relevance": runtime_relevance(runtime, figures.since)})


SERIES_POINT = {
    "type": "object",
    "properties": {
        "at": {"type": "string", "format": "date-time", "description": "Start of the point's interval."},
        "requests": {"type": "integer"}, "rate_per_s": {"type": "number"},
        "p50_ms": {"type": ["number", "null"], "description": "From log-spaced buckets: within 4.4 % of exact."},
        "p95_ms": {"type": ["number", "null"]}, "p99_ms": {"type": ["number", "null"]},
        "error_rate": {"type": ["number", "null"]}, "fallback_rate": {"type": ["number", "null"]},
        "cache_hit_rate": {"type": ["number", "null"]}, "mean_overlap": {"type": ["number", "null"]},
        "mean_top_similarity": {"type": ["number", "null"]},
        "embed_tokens": {"type": "integer", "description": "Query embedding tokens of the version (served, shadow)."},
        "cost_usd": {"type": ["number", "null"], "description": "Those tokens at the version's price."},
    },
}
COST = {"type": "object", "properties": {
    "embed_tokens": {"type": "integer"}, "price_per_mtok_usd": {"type": ["number", "null"]},
    "cost_usd": {"type": ["number", "null"], "description": "null: no price for the version's model."}}}
SERIES_SCHEMA = {
    "type": "object",
    "required": ["range", "step_s", "versions"],
    "properties": {
        "range": {"enum": list(RANGES)}, "since": {"type": "string"}, "until": {"type": "string"},
        "step_s": {"type": "number", "description": "Width of one point."},
        "versions": {"type": "object", "additionalProperties": {"type": "array", "items": SERIES_POINT}},
        "cost": {"type": "object", "additionalProperties": COST, "description": "Embedding tokens and cost per "
                                                                                "version over the range."},
    },
}


@bp.get("/api/monitoring/series")
@operation("The dashboard's per-version figures over time (requests, latency percentiles, error, fallback and "
           "cache hit rates, similarity, shadow overlap, embedding tokens and cost), one point per step of the "
           "range, from the per-minute rollup of the query log.", tags=("monitoring",),
           ok=SERIES_SCHEMA, errors=(400, 503),
           parameters=[query_parameter("range", {"enum": list(RANGES), "default": "24h"}, "The window.")])
def series():
    try:
        return jsonify(current_runtime().figures.series(request.args.get("range", "24h")))
    except InvalidRange as exc:
        raise bad_request(str(exc), "invalid_range") from None


COVERAGE_SCHEMA = {
    "type": "object",
    "properties": {
        "min_percent": {"type": "number", "description": "V2_MIN_COVERAGE_PERCENT: below it a category is not "
                                                         "routed to the candidate."},
        "counted": {"type": "boolean", "description": "false until the first count (the candidate is refused)."},
        "error": {"type": ["string", "null"], "description": "Why the last count failed (the previous is kept)."},
        "versions": {"type": "object", "additionalProperties": {"type": "object", "additionalProperties": {
            "type": "object", "properties": {"embedded": {"type": "integer"}, "total": {"type": "integer"},
                                             "ratio": {"type": "number"}, "routable": {"type": "boolean"}}}}},
    },
}


@bp.get("/api/monitoring/coverage")
@operation("Migration coverage per version and category (documents embedded of all), from the routing guard's "
           "last count, and whether the candidate may answer each category.", tags=("monitoring",),
           ok=COVERAGE_SCHEMA)
def coverage():
    monitor = current_runtime().coverage
    versions = monitor.describe()
    return jsonify({"min_percent": monitor.min_percent, "counted": bool(versions), "error": monitor.last_error,
                    "versions": versions})
