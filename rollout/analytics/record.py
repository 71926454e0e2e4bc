"""One row of `query_log`: what happened to one query, as the gateway saw it.

Built by the gateway once a query is complete (after its shadow search, if any),
handed to listeners that must return at once. The fields are the table's columns
in order, so the writer can COPY a record as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime


@dataclass(frozen=True, slots=True)
class QueryRecord:
    logged_at: datetime                 # when the query arrived (UTC)
    request_id: str
    mode: str                           # routed | merged
    bucket: int | None
    reason: str                         # the routing decision's reason
    routed_version: str
    served_version: str | None          # v1 | v2 | merged; None: no version could answer
    query_hash: str
    query_text: str | None              # only with QUERY_LOG_STORE_TEXT=true
    category: str | None
    k: int
    latency_ms: float
    embed_ms: float | None
    search_ms: float | None
    top_similarity: float | None        # in the served version's own space
    result_count: int
    cache_hit: bool | None              # None: that version has no query cache
    fallback: bool
    fallback_reason: str | None
    error_kind: str | None              # why no version answered
    other_version: str | None = None    # the shadow, or the second source of a merged answer
    other_latency_ms: float | None = None
    other_top_similarity: float | None = None
    other_error: str | None = None
    overlap: float | None = None        # Jaccard of the two ID lists
    rbo: float | None = None
    kendall_tau: float | None = None
    top1_agreement: bool | None = None
    user_hash: str | None = None        # keyed hash of the routing key: distinct users for the sample ratio check
    embed_tokens: int | None = None     # tokens the served version's embedding of the query used (0: cached)
    other_embed_tokens: int | None = None  # ... and other_version's

    def row(self) -> tuple:
        return tuple(getattr(self, name) for name in COLUMNS)


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(QueryRecord))
