"""The path of one query: decide, search the routed version, fall back to the baseline, measure.

Kept apart from Flask so the CLI, benchmarks and tests drive the same code the
HTTP endpoint does. Work that is not the answer (analytics, comparisons) is handed
to record and pair listeners, which must return at once (they enqueue; they
never do I/O inline).

The two versions are the rollout's baseline and candidate (`Roles`, read once per request
from the router's snapshot of the version registry).

Shadow queries (FF_USE_PARALLEL_RAG): the other version is searched at the same
time on the bounded shadow pool; the answer never waits for it. When it ends, the
two lists are compared in the pool's thread and the query's record is emitted. A
shadow that fails, times out or cannot start (pool saturated) is counted and
changes nothing in the answer. One exception saves time without changing what the
client gets: when the candidate answers for the user and fails, the baseline's shadow
already in flight is the fallback answer.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from flags import PARALLEL_RAG, PERFORMANCE_LOGGING, FlagStore
from rollout.analytics.record import QueryRecord
from rollout.analytics.rows import QueryRows, TextPolicy
from rollout.backends import SearchBackend, SearchFailed, SearchResult
from rollout.comparison import Comparison, compare
from rollout.deadline import QueryDeadline
from rollout.merging import MergedHit, Merger
from rollout.metrics import Metrics
from rollout.routing import Decision, Reason, Roles, Router
from rollout.shadow import Handoff, PendingSearch, SearchRun, ShadowPool, timed_search

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


@dataclass(frozen=True)
class MergedAnswer:
    """One list from both versions (merged mode)."""

    query: RagQuery
    decision: Decision
    hits: list[MergedHit]
    runs: Mapping[str, SearchRun]  # each searched version's result or failure
    held_off: Reason | None        # why the candidate was not searched, if it was not
    comparison: Comparison | None  # when both versions answered
    latency_ms: float

    @property
    def answered(self) -> list[str]:
        return [v for v, run in self.runs.items() if run.result is not None]

    @property
    def served_by(self) -> str:
        answered = self.answered
        return "merged" if len(answered) > 1 else answered[0]


RecordListener = Callable[[QueryRecord], None]
PairListener = Callable[["RagAnswer", SearchResult, Comparison], None]  # must return at once (enqueue only)


class VersionHealthRecorder:
    """What the gateway tells about each version's outcome (the circuit breaker listens)."""

    def record_success(self, version: str, elapsed_ms: float | None = None) -> None: ...

    def record_failure(self, version: str, kind: str) -> None: ...


class RagGateway:
    def __init__(self, router: Router, backends: Mapping[str, SearchBackend], metrics: Metrics,
                 flags: FlagStore, health: VersionHealthRecorder | None = None, *,
                 shadow_pool: ShadowPool | None = None, shadow_sample_rate: float = 1.0,
                 merger: Merger | None = None, query_text: TextPolicy | None = None,
                 deadline: QueryDeadline | None = None):
        self.router = router
        self.deadline = deadline
        self.backends = backends
        self.metrics = metrics
        self.flags = flags
        self.health = health or VersionHealthRecorder()
        self.shadow_pool = shadow_pool
        self.shadow_sample_rate = shadow_sample_rate
        self.merger = merger or Merger(None)
        self.rows = QueryRows(query_text or (lambda text: ("", None)), self._cache_hit)
        self.record_listeners: list[RecordListener] = []  # each query's record, once complete
        # a client's min_similarity is on the baseline's scale; this maps it to a version's (calibration)
        self.threshold_for: Callable[[str, float | None], float | None] = lambda version, threshold: threshold
        self.pair_listeners: list[PairListener] = []  # each answer with its shadow's result (the relevance judge)

    # -- routed answers (with an optional shadow) -----------------------------------
    def answer(self, query: RagQuery) -> RagAnswer:
        """Answer from the routed version, or from the baseline when the candidate fails; SearchFailed if
        the baseline fails too."""
        arrived, started = time.time(), time.perf_counter()
        roles = self.router.roles  # one snapshot of the pair for the whole request
        decision = self.router.decide(query.user_key, query.category, query.forced)
        self.metrics.routing_decisions.labels(decision.version, decision.reason.value).inc()
        handoff = Handoff()  # how the shadow's thread completes this query's record
        handoff.shadow = self._start_shadow(roles, decision.version, query, handoff)
        failure, hedge = None, None
        try:
            try:
                if self.deadline is None or decision.version == roles.baseline:
                    result = self._search(decision.version, query)
                else:
                    run, hedge = self._within_deadline(roles.baseline, decision.version, query,
                                                       hedged=handoff.shadow is not None, arrived=started)
                    result = self._account(run)
            except SearchFailed as exc:
                if decision.version == roles.baseline:
                    raise
                failure = exc
                self.metrics.fallbacks.labels(exc.kind).inc()
                result = self._fallback(roles.baseline, query, handoff, hedge)
        except SearchFailed as exc:
            self.metrics.requests.labels(roles.baseline, "error").inc()
            latency_ms = (time.perf_counter() - started) * 1000
            final = exc  # `exc` is unbound when the block ends; the record may be written later
            handoff.failed(lambda run: self._emit(
                self.rows.failed(query, decision, arrived, latency_ms, final, failure)))
            raise
        except BaseException:
            handoff.abandoned()  # an unexpected error: the shadow ends without a comparison
            raise
        latency_ms = (time.perf_counter() - started) * 1000
        answer = RagAnswer(query, decision, result, failure is not None, latency_ms, failure)
        try:
            self._measure(answer)
        finally:
            handoff.answered(lambda run: self._complete(answer, arrived, run))
        return answer

    def _complete(self, answer: RagAnswer, arrived: float, shadow: SearchRun | None) -> None:
        """Compare with the shadow (if it answered) and emit the query's record."""
        comparison = None
        if shadow is not None and shadow.result is not None:
            comparison = compare(answer.result.ids, shadow.result.ids, answer.query.k)
            self._measure_comparison(answer.served_by, comparison)
            for listener in self.pair_listeners:
                self._call(listener, answer, shadow.result, comparison)
        self._emit(self.rows.answered(answer.query, answer.decision, arrived, answer.latency_ms, answer.result,
                                      answer.failure, shadow, comparison))

    def _start_shadow(self, roles: Roles, version: str, query: RagQuery, handoff: Handoff) -> PendingSearch | None:
        if self.shadow_pool is None or not self.flags.snapshot()[PARALLEL_RAG]:
            return None
        shadow = roles.other(version)
        if shadow is None:
            return None
        if self.shadow_sample_rate < 1.0 and random.random() >= self.shadow_sample_rate:
            self.metrics.shadow_skipped.labels(shadow, "sampled_out").inc()
            return None
        if shadow == roles.candidate and self.router.v2_held_off(query.category, serving=False) is not None:
            self.metrics.shadow_skipped.labels(shadow, "held_off").inc()
            return None
        pending = self.shadow_pool.submit(shadow, lambda: self._raw_search(shadow, query),
                                          lambda run: handoff.shadow_done(run, self._measure_shadow))
        if pending is None:
            self.metrics.shadow_skipped.labels(shadow, "saturated").inc()
        return pending

    def _within_deadline(self, baseline: str, version: str, query: RagQuery, *,
                         hedged: bool, arrived: float) -> tuple[SearchRun, SearchRun | None]:
        """The candidate's run, or a `deadline` failure; and the baseline's hedge if one was searched.

        Past the hedge delay the baseline is searched here, beside the candidate (unless its shadow,
        already in flight, is the hedge); the candidate keeps until the deadline to answer.
        """
        assert self.deadline is not None
        pending = self.deadline.start(version, lambda: self._raw_search(version, query), arrived)
        run = pending.until_hedge()
        if run is not None:
            return run, None
        hedge = None if hedged else timed_search(baseline, lambda: self._raw_search(baseline, query))
        run = pending.until_deadline()
        self.metrics.hedged_requests.labels(version, "candidate" if run.result is not None else "baseline").inc()
        return run, hedge

    def _fallback(self, baseline: str, query: RagQuery, handoff: Handoff,
                  hedge: SearchRun | None = None) -> SearchResult:
        """The baseline's answer after a candidate failure: its hedge or its shadow in flight if there is
        one, else a new search."""
        if hedge is not None:
            return self._account(hedge)
        shadow = handoff.shadow
        if shadow is None:
            return self._search(baseline, query)
        handoff.shadow_answered()  # no comparison: the shadow becomes the answer
        self.metrics.shadow_fallback_served.labels(baseline).inc()
        return self._account(shadow.result())

    def _measure_shadow(self, run: SearchRun) -> None:
        m = self.metrics
        if run.result is None:
            m.shadow_failures.labels(run.version, run.error).inc()
            return
        m.shadow_duration.labels(run.version).observe(run.latency_ms / 1000)
        if run.result.top_similarity is not None:
            m.shadow_top_similarity.labels(run.version).observe(run.result.top_similarity)

    def _measure_comparison(self, served: str, comparison: Comparison) -> None:
        m = self.metrics
        m.shadow_comparisons.labels(served).inc()
        m.shadow_overlap.labels(served, "jaccard").observe(comparison.overlap)
        m.shadow_overlap.labels(served, "rbo").observe(comparison.rbo)
        if comparison.top1_agreement:
            m.shadow_top1_agreement.labels(served).inc()

    # -- merged answers ----------------------------------------------------------------
    def answer_merged(self, query: RagQuery) -> MergedAnswer:
        """Search both versions at once and fuse their lists; the baseline alone while the candidate is held
        off."""
        arrived, started = time.time(), time.perf_counter()
        baseline, candidate = self.router.roles
        decision = self.router.decide(query.user_key, query.category, query.forced, probe=False)
        held_off = self.router.v2_held_off(query.category, serving=True)
        pending, bounded = None, None
        if held_off is None and candidate is not None and self.deadline is not None:
            # a hanging candidate costs the deadline, no more
            bounded = self.deadline.start(candidate, lambda: self._raw_search(candidate, query), started)
        elif held_off is None and candidate is not None and self.shadow_pool is not None:
            pending = self.shadow_pool.submit(candidate, lambda: self._search(candidate, query))
        runs = {baseline: timed_search(baseline, lambda: self._search(baseline, query))}
        if bounded is not None:
            runs[candidate] = self._counted(bounded.until_deadline())
        elif held_off is None and candidate is not None:
            runs[candidate] = pending.result() if pending is not None else timed_search(
                candidate, lambda: self._search(candidate, query))
        rejected = next((run.rejected for run in runs.values() if run.rejected is not None), None)
        if rejected is not None:
            raise rejected
        answered = {v: run.result for v, run in runs.items() if run.result is not None}
        if not answered:
            failure = runs[baseline].failure
            self.metrics.requests.labels(baseline, "error").inc()
            self._emit(self.rows.failed(query, decision, arrived, (time.perf_counter() - started) * 1000, failure,
                                        None, mode="merged"))
            raise failure
        hits = self.merger.merge({v: result.hits for v, result in answered.items()}, query.k)
        comparison = (compare(answered[baseline].ids, answered[candidate].ids, query.k)
                      if len(answered) == 2 and candidate is not None else None)
        latency_ms = (time.perf_counter() - started) * 1000
        merged = MergedAnswer(query, decision, hits, runs, held_off, comparison, latency_ms)
        for result in answered.values():
            self._measure_stages(result)
        self.metrics.merged_requests.labels("both" if len(answered) == 2 else next(iter(answered))).inc()
        self._emit(self.rows.merged(query, decision, arrived, latency_ms, runs, merged.served_by, comparison))
        return merged

    # -- searching and measuring ---------------------------------------------------------
    def _raw_search(self, version: str, query: RagQuery) -> SearchResult:
        return self.backends[version].search(query.text, query.k, query.category,
                                             self.threshold_for(version, query.min_similarity))

    def _search(self, version: str, query: RagQuery) -> SearchResult:
        """A serving search: its failure or success counts for the version's health."""
        started = time.perf_counter()
        try:
            result = self._raw_search(version, query)
        except SearchFailed as exc:
            self._count_failure(version, exc)
            raise
        self.health.record_success(version, (time.perf_counter() - started) * 1000)
        return result

    def _account(self, run: SearchRun) -> SearchResult:
        """Count a search run on the pool as a serving search; raise its failure (or the client's refusal,
        which counts for no version)."""
        if run.rejected is not None:
            raise run.rejected
        self._counted(run)
        if run.failure is not None:
            raise run.failure
        return run.result

    def _counted(self, run: SearchRun) -> SearchRun:
        """Count a pooled run for its version's health, as a serving search, without raising."""
        if run.failure is not None:
            self._count_failure(run.version, run.failure)
        elif run.result is not None:
            self.health.record_success(run.version, run.latency_ms)
        return run

    def _count_failure(self, version: str, exc: SearchFailed) -> None:
        self.metrics.version_errors.labels(version, exc.kind).inc()
        self.health.record_failure(version, exc.kind)

    def _measure_stages(self, result: SearchResult) -> None:
        m, version = self.metrics, result.version
        m.stage_duration.labels(version, "embed").observe(result.embed_ms / 1000)
        m.stage_duration.labels(version, "search").observe(result.search_ms / 1000)
        if result.top_similarity is not None:
            m.top_similarity.labels(version).observe(result.top_similarity)

    def _measure(self, answer: RagAnswer) -> None:
        result, m = answer.result, self.metrics
        version = result.version
        m.requests.labels(version, "fallback" if answer.fallback else "ok").inc()
        if not result.hits:
            m.relevance_abstentions.labels(version).inc()
        m.request_duration.labels(version).observe(answer.latency_ms / 1000)
        self._measure_stages(result)
        if self.flags.snapshot()[PERFORMANCE_LOGGING]:
            log.info("rag query request_id=%s served_by=%s reason=%s fallback=%s latency_ms=%.1f "
                     "embed_ms=%.1f search_ms=%.1f hits=%d", answer.query.request_id, version,
                     answer.decision.reason.value, answer.fallback, answer.latency_ms, result.embed_ms,
                     result.search_ms, len(result.hits))

    # -- records ---------------------------------------------------------------------------
    def _emit(self, record: QueryRecord) -> None:
        for listener in self.record_listeners:
            self._call(listener, record)

    @staticmethod
    def _call(callback: Callable, *values: object) -> None:
        try:
            callback(*values)
        except Exception:  # a listener must never break an answer
            log.exception("query listener %r failed", callback)

    def _cache_hit(self, result: SearchResult) -> bool | None:
        backend = self.backends.get(result.version)
        return result.cache_hit if backend is not None and backend.query_cache is not None else None
