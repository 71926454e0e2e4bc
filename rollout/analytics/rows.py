"""The query_log record of each way a query ends: answered (with its shadow's run and comparison),
merged from both versions, or failed. The gateway decides; this module only writes down.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from rollout.analytics.record import QueryRecord
from rollout.backends import SearchFailed, SearchResult
from rollout.comparison import Comparison
from rollout.routing import Decision
from rollout.shadow import SearchRun

TextPolicy = Callable[[str], tuple[str, str | None]]  # text -> (keyed hash, text kept or None)


class Query(Protocol):
    """The fields of a query the log keeps (the gateway's RagQuery)."""

    @property
    def text(self) -> str: ...
    @property
    def k(self) -> int: ...
    @property
    def category(self) -> str | None: ...
    @property
    def user_key(self) -> str: ...
    @property
    def request_id(self) -> str: ...


class QueryRows:
    """Builds records; `query_text` hashes (and keeps, if configured) texts, `cache_hit` says whether a
    result came from its version's query cache (None: that version has none)."""

    def __init__(self, query_text: TextPolicy, cache_hit: Callable[[SearchResult], bool | None]):
        self.query_text = query_text
        self.cache_hit = cache_hit

    def answered(self, query: Query, decision: Decision, arrived: float, latency_ms: float, result: SearchResult,
                 failure: SearchFailed | None, shadow: SearchRun | None,
                 comparison: Comparison | None) -> QueryRecord:
        """A routed answer; `failure`: why the routed version did not answer (the baseline did)."""
        return QueryRecord(
            **self._base(query, decision, arrived, latency_ms, "routed"), **self._served(result),
            fallback=failure is not None, fallback_reason=failure.kind if failure else None, error_kind=None,
            **_other(shadow, comparison))

    def merged(self, query: Query, decision: Decision, arrived: float, latency_ms: float,
               runs: Mapping[str, SearchRun], served_by: str, comparison: Comparison | None) -> QueryRecord:
        """The first version that answered (the baseline unless it failed) in the main columns, the other in
        other_*."""
        main = next(v for v, run in runs.items() if run.result is not None)
        result = runs[main].result
        assert result is not None
        others = [run for version, run in runs.items() if version != main]
        failed = [run for run in runs.values() if run.failure is not None]
        return QueryRecord(
            **self._base(query, decision, arrived, latency_ms, "merged"),
            **{**self._served(result), "served_version": served_by},
            fallback=bool(failed), fallback_reason=failed[0].error if failed else None, error_kind=None,
            **_other(others[0] if others else None, comparison))

    def failed(self, query: Query, decision: Decision, arrived: float, latency_ms: float, error: SearchFailed,
               fallback_from: SearchFailed | None, mode: str = "routed") -> QueryRecord:
        """No version answered: `error` is the last failure, `fallback_from` the routed version's if it was
        not the baseline."""
        return QueryRecord(
            **self._base(query, decision, arrived, latency_ms, mode), served_version=None, embed_ms=None,
            search_ms=None, top_similarity=None, result_count=0, cache_hit=None, fallback=fallback_from is not None,
            fallback_reason=fallback_from.kind if fallback_from else None, error_kind=error.kind)

    def _base(self, query: Query, decision: Decision, arrived: float, latency_ms: float,
              mode: str) -> dict[str, Any]:
        query_hash, text = self.query_text(query.text)
        user_hash, _ = self.query_text(query.user_key)  # the same keyed hash; the key itself is never kept
        return dict(logged_at=datetime.fromtimestamp(arrived, UTC), request_id=query.request_id, mode=mode,
                    bucket=decision.bucket, reason=decision.reason.value, routed_version=decision.version,
                    query_hash=query_hash, query_text=text, category=query.category, k=query.k,
                    latency_ms=latency_ms, user_hash=user_hash or None)

    def _served(self, result: SearchResult) -> dict[str, Any]:
        return dict(served_version=result.version, embed_ms=result.embed_ms, search_ms=result.search_ms,
                    top_similarity=result.top_similarity, result_count=len(result.hits),
                    cache_hit=self.cache_hit(result), embed_tokens=result.tokens)


def _other(run: SearchRun | None, comparison: Comparison | None) -> dict[str, Any]:
    """The other_* and comparison columns of a record."""
    fields: dict[str, Any] = {}
    if run is not None:
        fields.update(other_version=run.version, other_latency_ms=run.latency_ms, other_error=run.error,
                      other_top_similarity=run.result.top_similarity if run.result is not None else None,
                      other_embed_tokens=run.result.tokens if run.result is not None else None)
    if comparison is not None:
        fields.update(overlap=comparison.overlap, rbo=comparison.rbo, kendall_tau=comparison.kendall_tau,
                      top1_agreement=comparison.top1_agreement)
    return fields
