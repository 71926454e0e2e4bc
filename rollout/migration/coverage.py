"""Coverage: the share of documents each version has embedded, per category; the candidate's routing guard.

The candidate can only answer what it has embedded, so the router refuses it (reason
`v2_incomplete`) for a category whose coverage is below V2_MIN_COVERAGE_PERCENT,
and for queries without a category when the whole corpus is below it. A routing
decision must not touch the database, so a thread counts every
COVERAGE_REFRESH_S seconds and the guard reads the last counts. Before the first
count succeeds the candidate is refused: not knowing is not being complete.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from rollout.metrics import Metrics
from rollout.migration.status import category_counts
from rollout.routing import Reason
from rollout.version_spec import VersionSettings

log = logging.getLogger(__name__)

CORPUS = "__all__"  # the gauge's category label for the whole corpus


@dataclass(frozen=True)
class Coverage:
    embedded: int
    total: int

    @property
    def ratio(self) -> float:
        return self.embedded / self.total if self.total else 1.0

    def below(self, percent: float) -> bool:
        return self.embedded * 100 < percent * self.total


class CoverageMonitor:
    def __init__(self, pool: ConnectionPool, versions: Mapping[str, VersionSettings], metrics: Metrics, *,
                 guarded: str | None, min_percent: float = 100.0, interval_s: float = 10.0):
        self.pool = pool
        self.versions = dict(versions)
        self.guarded = guarded  # the candidate: the version this guard holds off
        self.metrics = metrics
        self.min_percent = min_percent
        self.interval_s = interval_s
        self._snapshot: Mapping[str, Mapping[str, Coverage]] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.before_count: list[Callable[[psycopg.Connection], None]] = []  # e.g. the registry's snapshot

    # -- the guard (local state only) -------------------------------------------------
    def v2_blocked(self, category: str | None, *, serving: bool = False) -> Reason | None:
        if self.min_percent <= 0:
            return None
        snapshot = self._snapshot
        if snapshot is None:
            return Reason.V2_INCOMPLETE
        counts = snapshot.get(self.guarded or "", {}).get(CORPUS if category is None else category)
        if counts is not None and counts.below(self.min_percent):
            return Reason.V2_INCOMPLETE
        return None  # a category without documents has nothing the candidate could miss

    def categories(self) -> set[str] | None:
        """The categories that hold documents, from the last count; None before the first count."""
        snapshot = self._snapshot
        if snapshot is None:
            return None
        return {c for counts in snapshot.values() for c in counts if c != CORPUS}

    def coverage(self, version: str, category: str | None = None) -> Coverage | None:
        snapshot = self._snapshot
        if snapshot is None:
            return None
        return snapshot.get(version, {}).get(CORPUS if category is None else category)

    def describe(self) -> dict:
        """The last counts per version and category (the corpus as `all`), for people; {} before the first."""
        snapshot = self._snapshot or {}
        return {version: {("all" if category == CORPUS else category): {
                    "embedded": counts.embedded, "total": counts.total, "ratio": counts.ratio,
                    "routable": not counts.below(self.min_percent) if version == self.guarded else True}
                 for category, counts in sorted(categories.items())}
                for version, categories in snapshot.items()}

    def shortfalls(self, version: str | None = None) -> list[tuple[str, Coverage]] | None:
        """The categories of `version` (default: the candidate) below the routing bar, from the last count;
        None before the first count."""
        version = version or self.guarded or ""
        snapshot = self._snapshot
        if snapshot is None:
            return None
        return [(category, counts) for category, counts in sorted(snapshot.get(version, {}).items())
                if category != CORPUS and counts.below(self.min_percent)]

    # -- counting (off the request path) ----------------------------------------------
    def refresh(self) -> bool:
        """Count now; on failure keep the last counts and return False."""
        try:
            with self.pool.connection(timeout=5) as conn:
                for listener in self.before_count:
                    listener(conn)
                snapshot = {name: self._count(conn, version) for name, version in self.versions.items()}
        except (psycopg.Error, PoolTimeout) as exc:
            if self.last_error is None:
                log.warning("coverage: counting failed, keeping the last counts: %s", exc)
            self.last_error = str(exc).strip() or type(exc).__name__
            return False
        previous = self._snapshot or {}
        self._snapshot = MappingProxyType(snapshot)
        self.last_error = None
        self._export(previous, snapshot)
        return True

    @staticmethod
    def _count(conn: psycopg.Connection, version: VersionSettings) -> Mapping[str, Coverage]:
        counts = {c.category: Coverage(c.embedded, c.total) for c in category_counts(conn, version)}
        counts[CORPUS] = Coverage(sum(c.embedded for c in counts.values()), sum(c.total for c in counts.values()))
        return MappingProxyType(counts)

    def _export(self, previous: Mapping[str, Mapping[str, Coverage]],
                snapshot: Mapping[str, Mapping[str, Coverage]]) -> None:
        gauge = self.metrics.migration_coverage
        for version, categories in snapshot.items():
            for category, counts in categories.items():
                gauge.labels(version, category).set(counts.ratio)
            for gone in set(previous.get(version, {})) - set(categories):
                try:
                    gauge.remove(version, gone)
                except KeyError:
                    pass

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.refresh()
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="coverage", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.refresh()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
