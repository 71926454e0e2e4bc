"""The candidate's search under a deadline, with the baseline hedged beside it.

A hanging candidate provider used to hold each of its users for its full timeout
(two attempts of QUERY_EMBEDDING_TIMEOUT_S) before the baseline answered. Now the
candidate's search runs on this pool while the request waits:

- up to `hedge_delay_s`: most answers arrive here, and nothing else is started;
- then the baseline's search starts (unless a baseline shadow is already in
  flight, which is the hedge), so its answer is ready by the deadline;
- at `deadline_s` the candidate is abandoned (a `deadline` failure for its breaker)
  and the baseline's answer is served. A candidate answer that arrives before the
  deadline is still served, so users stay on the version they were routed to.

A user therefore waits at most about max(deadline, hedge delay + the baseline's
own time): never more than the deadline plus the baseline's time. The pool queues
(a hung provider must not make other requests search inline, unbounded); a search
still queued at its deadline is cancelled and never runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from rollout.backends import SearchFailed, SearchResult
from rollout.shadow import SearchRun, timed_search

MAX_THREADS = 32  # candidate searches in flight per process; more wait in the queue, bounded by their deadline


class QueryDeadline:
    def __init__(self, deadline_ms: int, hedge_delay_ms: int, max_threads: int = MAX_THREADS):
        self.deadline_s = deadline_ms / 1000
        self.hedge_delay_s = min(hedge_delay_ms, deadline_ms) / 1000
        self._executor = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="rag-deadline")

    def start(self, version: str, search: Callable[[], SearchResult], arrived: float) -> CandidateSearch:
        """`arrived`: when the query reached the gateway (perf_counter): the deadline is the whole answer's."""
        return CandidateSearch(version, self._executor.submit(timed_search, version, search), arrived, self)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class CandidateSearch:
    """One candidate search in flight; its deadline counts from the query's arrival at the gateway."""

    def __init__(self, version: str, future: Future[SearchRun], started: float, deadline: QueryDeadline):
        self.version = version
        self._future = future
        self._started = started
        self._deadline = deadline

    def until_hedge(self) -> SearchRun | None:
        """The run if it ended within the hedge delay, else None (time to start the baseline)."""
        return self._wait(self._deadline.hedge_delay_s)

    def until_deadline(self) -> SearchRun:
        """The run if it ends within the deadline, else a `deadline` failure (the search is abandoned)."""
        run = self._wait(self._deadline.deadline_s)
        if run is not None:
            return run
        self._future.cancel()  # never runs if it was still queued
        waited_ms = (time.perf_counter() - self._started) * 1000
        return SearchRun(self.version, None, waited_ms, SearchFailed(
            self.version, "deadline", f"no answer within {self._deadline.deadline_s * 1000:.0f} ms"))

    def _wait(self, until_s: float) -> SearchRun | None:
        remaining = until_s - (time.perf_counter() - self._started)
        try:
            return self._future.result(timeout=max(0.0, remaining))
        except FutureTimeout:
            return None
