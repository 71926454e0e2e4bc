"""The dashboard's figures over time, from `query_log`: one point per step of the range, per version.

Points sit on a fixed grid (multiples of the step since the epoch), so a point that has
ended cannot change: each process keeps the ended points of every range and, on the next
read, counts only the rows since the last of them (plus a margin for rows still in the
query log writer's queue). The console polls every few seconds; a 24-hour range of a busy
log then costs a few seconds of rows instead of a day's. Everything is counted again every
RECOUNT_S, so rows written late (an import, a replay) show within that time.

Each point counts the queries routed to the version (as the dashboard does): requests, latency
p50/p95/p99 (`percentile_cont`), error and fallback rates; and, for the queries the routed
version answered itself, cache hit rate and mean top similarity; and the mean shadow overlap.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from psycopg_pool import ConnectionPool

from rollout.config import Settings
from rollout.database import read_snapshot

RANGES: dict[str, timedelta] = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "6h": timedelta(hours=6),
                                 "24h": timedelta(hours=24), "7d": timedelta(days=7)}
# the width of one point over each range (60 to 96 points)
STEPS: dict[str, timedelta] = {"15m": timedelta(seconds=15), "1h": timedelta(minutes=1),
                                "6h": timedelta(minutes=5), "24h": timedelta(minutes=15), "7d": timedelta(hours=2)}
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
LATE_ROWS = timedelta(seconds=60)  # rows may reach query_log this long after they were logged
RECOUNT_S = 300.0

_POINTS = """
    SELECT date_bin(%(step)s, logged_at, %(epoch)s) AS point, routed_version, count(*),
           percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms),
           count(*) FILTER (WHERE fallback OR served_version IS NULL),
           count(*) FILTER (WHERE fallback),
           avg(cache_hit::int) FILTER (WHERE served_version = routed_version),
           avg(overlap), avg(top_similarity) FILTER (WHERE served_version = routed_version)
    FROM query_log WHERE logged_at >= %(since)s AND logged_at < %(until)s AND mode = 'routed'
    GROUP BY 1, 2"""


def grid(at: datetime, step: timedelta) -> datetime:
    """The start of the point `at` falls in."""
    return at - (at - EPOCH) % step


@dataclass
class _Ended:
    """The ended points of one step: every point from `since` up to (not including) `until`."""

    since: datetime
    until: datetime
    counted_at: float
    points: dict[tuple[datetime, str], dict] = field(default_factory=dict)


class Series:
    def __init__(self, pool: ConnectionPool, settings: Settings):
        self.pool = pool
        self.settings = settings
        self._ended: dict[timedelta, _Ended] = {}
        self._lock = threading.Lock()

    def read(self, range_name: str, versions: tuple[str, ...], *, until: datetime | None = None) -> dict:
        """The points of the last `range_name`, each of `versions` listed even without points (the
        baseline and the candidate); the first point starts on the grid up to one step before `since`."""
        window, step = RANGES[range_name], STEPS[range_name]  # the caller has checked the name
        until = until or datetime.now(UTC)
        since = grid(until - window, step)
        final = grid(until - LATE_ROWS, step)  # points before it have ended, late rows included
        with self._lock:
            kept = self._ended.get(step)
        if kept is None or kept.since > since or kept.until > until or \
                time.monotonic() - kept.counted_at > RECOUNT_S:
            kept = _Ended(since, since, time.monotonic())
        fresh = self._count(step, kept.until, until)
        ended = {key: point for key, point in fresh.items() if key[0] < final}
        if ended:
            kept = _Ended(kept.since, final, kept.counted_at,
                          {**{k: p for k, p in kept.points.items() if k[0] >= since}, **ended})
            with self._lock:
                self._ended[step] = kept
        points = {**{k: p for k, p in kept.points.items() if k[0] >= since}, **fresh}
        by_version: dict[str, list[dict]] = {v: [] for v in versions}
        for (_at, version), point in sorted(points.items()):
            by_version.setdefault(version, []).append(point)
        return {"range": range_name, "since": since.isoformat(), "until": until.isoformat(),
                "step_s": step.total_seconds(), "versions": by_version}

    def forget(self) -> None:
        """Drop the kept points: the next read counts every row of its range again."""
        with self._lock:
            self._ended.clear()

    def _count(self, step: timedelta, since: datetime, until: datetime) -> dict[tuple[datetime, str], dict]:
        params = {"step": step, "epoch": EPOCH, "since": since, "until": until}
        points = {}
        with read_snapshot(self.pool, self.settings.monitoring_query_timeout_ms) as conn:
            for row in conn.execute(_POINTS, params):
                at, version, requests, (p50, p95, p99), errors, fallbacks, cache, overlap, similarity = row
                points[(at, version)] = {
                    "at": at.isoformat(), "requests": requests, "rate_per_s": requests / step.total_seconds(),
                    "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "error_rate": errors / requests,
                    "fallback_rate": fallbacks / requests, "cache_hit_rate": _float(cache),
                    "mean_overlap": _float(overlap), "mean_top_similarity": _float(similarity)}
        return points


def _float(value) -> float | None:
    return None if value is None else float(value)
