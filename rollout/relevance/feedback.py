"""Feedback: what a client says about an answer, stored with the version that answered it.

The link is the request id `POST /api/rag/query` returns: query_log keeps the served
version under it, so feedback needs FF_ENABLE_QUERY_ANALYTICS on (rows are written within
QUERY_LOG_FLUSH_INTERVAL_S). One row per (request, document, kind): sending the same
feedback again replaces its value and counts once.

Explicit kinds say whether a result was relevant: `relevant`, `not_relevant`, and `grade`
(0-3; 2 and 3 count as relevant). `clicked` and `cited` are implicit positives.
"""

from __future__ import annotations

from dataclasses import dataclass

from rollout.metrics import Metrics

KINDS = ("relevant", "not_relevant", "grade", "clicked", "cited")
EXPLICIT = ("relevant", "not_relevant", "grade")
POSITIVE_GRADE = 2


def is_positive(kind: str, value: int | None) -> bool:
    if kind == "grade":
        return value is not None and value >= POSITIVE_GRADE
    return kind != "not_relevant"


@dataclass(frozen=True)
class FeedbackRow:
    request_id: str
    document_id: str | None
    kind: str
    value: int | None
    version: str
    category: str | None
    created: bool  # False: the same (request, document, kind) was already recorded; its value was replaced

    def as_json(self) -> dict:
        return {"request_id": self.request_id, "document_id": self.document_id, "kind": self.kind,
                "value": self.value, "version": self.version, "category": self.category,
                "status": "recorded" if self.created else "updated"}


class FeedbackStore:
    def __init__(self, pool, metrics: Metrics | None = None):
        self.pool = pool
        self.metrics = metrics

    def record(self, request_id: str, kind: str, document_id: str | None = None,
               value: int | None = None) -> FeedbackRow | None:
        """Store one piece of feedback; None when no answered query has this request id."""
        with self.pool.connection() as conn:
            answered = conn.execute(
                "SELECT served_version, category FROM query_log WHERE request_id = %s "
                "AND served_version IS NOT NULL ORDER BY logged_at DESC LIMIT 1", (request_id,)).fetchone()
            if answered is None:
                return None
            version, category = answered
            created = conn.execute(
                "INSERT INTO relevance_feedback (request_id, document_id, kind, value, version, category) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (request_id, document_id, kind) "
                "DO UPDATE SET value = EXCLUDED.value, received_at = now() RETURNING (xmax = 0)",
                (request_id, document_id or "", kind, value, version, category)).fetchone()[0]
        if created and self.metrics is not None:
            outcome = "positive" if is_positive(kind, value) else "negative"
            self.metrics.relevance_signals.labels(version, "feedback", outcome).inc()
        return FeedbackRow(request_id, document_id, kind, value, version, category, created)

    def positive_rates(self, since_s: float) -> dict[str, dict]:
        """Per version and category, explicit judgements over the last `since_s` seconds: positives and total."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT version, coalesce(category, ''), kind, value FROM relevance_feedback "
                "WHERE kind = ANY(%s) AND received_at >= now() - make_interval(secs => %s)",
                (list(EXPLICIT), since_s)).fetchall()
        counts: dict[str, dict] = {}
        for version, category, kind, value in rows:
            for key in ("", category) if category else ("",):
                cell = counts.setdefault(version, {}).setdefault(key, {"positive": 0, "total": 0})
                cell["positive"] += is_positive(kind, value)
                cell["total"] += 1
        return counts
