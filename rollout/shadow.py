"""The second version's search, run beside the request on a small bounded pool of threads.

Used by shadow queries (the other version, compared in the background) and by
merged mode (both versions at once). The pool never queues: when every slot is
busy, `submit` returns None at once and the caller decides (a shadow is skipped
and counted; merged mode searches inline). So a burst of traffic can add at most
`max_concurrency` searches per process, and never delays an answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from rollout.backends import QueryRejected, SearchFailed, SearchResult

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SearchRun:
    """The outcome of one search on the pool: a result or a failure kind, and how long it took."""

    version: str
    result: SearchResult | None
    latency_ms: float
    failure: SearchFailed | None = None
    rejected: QueryRejected | None = None  # the client's input was refused: no version is at fault

    @property
    def error(self) -> str | None:
        if self.rejected is not None:
            return "rejected"
        return self.failure.kind if self.failure is not None else None


def timed_search(version: str, search: Callable[[], SearchResult]) -> SearchRun:
    """Run `search`, turning every exception into a SearchRun with a failure kind (never raises)."""
    started = time.perf_counter()
    try:
        result = search()
        failure = None
    except SearchFailed as exc:
        result, failure = None, exc
    except QueryRejected as exc:
        return SearchRun(version, None, (time.perf_counter() - started) * 1000, rejected=exc)
    except Exception as exc:  # a bug in the second search must never reach the answer
        log.exception("%s search on the shadow pool failed", version)
        result, failure = None, SearchFailed(version, "internal", f"{type(exc).__name__}: {exc}")
    return SearchRun(version, result, (time.perf_counter() - started) * 1000, failure)


@dataclass(frozen=True)
class PendingSearch:
    """A search running on the pool; `run` is resolved when it ends (never left pending)."""

    version: str
    run: Future[SearchRun]

    def result(self) -> SearchRun:
        return self.run.result()


class ShadowPool:
    def __init__(self, max_concurrency: int):
        self.max_concurrency = max_concurrency
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="rag-shadow")

    def submit(self, version: str, search: Callable[[], SearchResult],
               then: Callable[[SearchRun], None] | None = None) -> PendingSearch | None:
        """Start `search` on a free slot, then run `then(run)` in the same thread (the slot is held until
        it returns); None when all slots are busy (or the pool is shut down)."""
        if not self._slots.acquire(blocking=False):
            return None
        pending = PendingSearch(version, Future())

        def task() -> None:
            run = timed_search(version, search)
            pending.run.set_result(run)
            if then is not None:
                try:
                    then(run)
                except Exception:
                    log.exception("after the %s search on the shadow pool", version)

        def finished(future: Future) -> None:
            self._slots.release()
            if future.cancelled() and not pending.run.done():  # shut down before it started
                pending.run.set_result(SearchRun(version, None, 0.0,
                                                 SearchFailed(version, "internal", "cancelled at shutdown")))

        try:
            future = self._executor.submit(task)
        except RuntimeError:  # shut down
            self._slots.release()
            return None
        future.add_done_callback(finished)
        return pending

    def shutdown(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=True)


Finish = Callable[[SearchRun | None], None]  # completes a query's record, given its shadow's run


class Handoff:
    """Where a request and its shadow meet, so the query's record is completed once, off the request thread.

    The request says how it ended: `answered(finish)` or `failed(finish)` (the record to complete with the
    shadow's run), or `shadow_answered()` (the shadow's run was the answer: nothing to compare), or
    `abandoned()` (an unexpected error). The shadow's thread calls `shadow_done(run)`, which waits for
    that word and completes the record. Without a shadow, `finish` runs at once in the request thread.
    """

    TIMEOUT_S = 120.0  # a safety net: every request path hands over (or abandons) at once

    def __init__(self) -> None:
        self._finish: Future[Finish | None] = Future()
        self.shadow: PendingSearch | None = None  # set once the shadow has started

    def answered(self, finish: Finish) -> None:
        self._hand(finish)

    def failed(self, finish: Finish) -> None:
        self._hand(finish)

    def shadow_answered(self) -> None:
        self._set(None)
        self.shadow = None  # the record is completed at once, without a comparison

    def abandoned(self) -> None:
        self._set(None)

    def shadow_done(self, run: SearchRun, measure: Callable[[SearchRun], None]) -> None:
        """In the shadow's thread: wait for the request's word, then measure and complete the record."""
        try:
            finish = self._finish.result(timeout=self.TIMEOUT_S)
        except TimeoutError:
            log.error("a request never handed its answer to its shadow; the comparison is lost")
            return
        if finish is None:
            return
        measure(run)
        finish(run)

    def _hand(self, finish: Finish) -> None:
        if self.shadow is None:
            finish(None)
        else:
            self._set(finish)

    def _set(self, finish: Finish | None) -> None:
        if not self._finish.done():
            self._finish.set_result(finish)
