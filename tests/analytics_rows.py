"""Build query_log rows for tests: a QueryRecord with plain defaults, written as the query-log writer writes a
batch (query_log and its per-minute rollup in one transaction)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from rollout.analytics.record import COLUMNS, QueryRecord
from rollout.analytics.rollup import write_batch

NOW = datetime.now(UTC)


def record(**fields) -> QueryRecord:
    base = QueryRecord(
        logged_at=NOW - timedelta(minutes=5), request_id="r", mode="routed", bucket=1, reason="percentage",
        routed_version="v1", served_version="v1", query_hash="h", query_text=None, category=None, k=10,
        latency_ms=10.0, embed_ms=1.0, search_ms=9.0, top_similarity=0.8, result_count=10, cache_hit=None,
        fallback=False, fallback_reason=None, error_kind=None)
    return replace(base, **fields)


def insert(pool, records: list[QueryRecord]) -> None:
    with pool.connection() as conn, conn.transaction():
        write_batch(conn, COLUMNS, [r.row() for r in records])
