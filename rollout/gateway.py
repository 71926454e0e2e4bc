"""The path of one query: decide, search the routed version, fall back to V1, measure.

Kept apart from Flask so the CLI, benchmarks and tests drive the same code the
HTTP endpoint does. Work that is not the answer (analytics, comparisons) is handed
to observers, which must return at once (they enqueue; they never do I/O inline).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from flags import PERFORMANCE_LOGGING, FlagStore
from rollout.backends import SearchFailed, SearchResult, VersionBackend
from rollout.metrics import Metrics
from rollout.routing import Decision, Router

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RagQuery:
    text: str
    k: int = 10
    category: str | None = None
    min_similarity: float | None = None
    user_key: str = ""
    forced: str | None = None
    request_id: str = ""


@dataclass(frozen=True)
class RagAnswer:
    query: RagQuery
    decision: Decision
    result: SearchResult
    fallback: bool
    latency_ms: float
    failure: SearchFailed | None = None  # why the routed version did not answer

    @property
    def served_by(self) -> str:
        return self.result.version


Observer = Callable[[RagAnswer], None]


class VersionHealthRecorder:
    """What the gateway tells about each version's outcome (the circuit breaker listens)."""

    def record_success(self, version: str) -> None: ...

    def record_failure(self, version: str, kind: str) -> None: ...


class RagGateway:
    def __init__(self, router: Router, backends: Mapping[str, VersionBackend], metrics: Metrics,
                 flags: FlagStore, health: VersionHealthRecorder | None = None):
        self.router = router
        self.backends = backends
        self.metrics = metrics
        self.flags = flags
        self.health = health or VersionHealthRecorder()
        self.observers: list[Observer] = []

    def answer(self, query: RagQuery) -> RagAnswer:
        """Answer from the routed version, or from V1 when V2 fails; SearchFailed if V1 fails too."""
        started = time.perf_counter()
        decision = self.router.decide(query.user_key, query.category, query.forced)
        self.metrics.routing_decisions.labels(decision.version, decision.reason.value).inc()
        failure = None
        try:
            result = self._search(decision.version, query)
        except SearchFailed as exc:
            if decision.version == "v1":
                self.metrics.requests.labels("v1", "error").inc()
                raise
            failure = exc
            self.metrics.fallbacks.labels(exc.kind).inc()
            result = self._search("v1", query)
        latency_ms = (time.perf_counter() - started) * 1000
        answer = RagAnswer(query, decision, result, failure is not None, latency_ms, failure)
        self._measure(answer)
        for observer in self.observers:
            observer(answer)
        return answer

    def _search(self, version: str, query: RagQuery) -> SearchResult:
        try:
            result = self.backends[version].search(query.text, query.k, query.category, query.min_similarity)
        except SearchFailed as exc:
            self.metrics.version_errors.labels(version, exc.kind).inc()
            self.health.record_failure(version, exc.kind)
            raise
        self.health.record_success(version)
        return result

    def _measure(self, answer: RagAnswer) -> None:
        result, m = answer.result, self.metrics
        version = result.version
        m.requests.labels(version, "fallback" if answer.fallback else "ok").inc()
        m.request_duration.labels(version).observe(answer.latency_ms / 1000)
        m.stage_duration.labels(version, "embed").observe(result.embed_ms / 1000)
        m.stage_duration.labels(version, "search").observe(result.search_ms / 1000)
        if result.top_similarity is not None:
            m.top_similarity.labels(version).observe(result.top_similarity)
        if self.flags.snapshot()[PERFORMANCE_LOGGING]:
            log.info("rag query request_id=%s served_by=%s reason=%s fallback=%s latency_ms=%.1f "
                     "embed_ms=%.1f search_ms=%.1f hits=%d", answer.query.request_id, version,
                     answer.decision.reason.value, answer.fallback, answer.latency_ms, result.embed_ms,
                     result.search_ms, len(result.hits))
