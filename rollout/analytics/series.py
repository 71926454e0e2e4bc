"""The dashboard's figures over time, from the per-minute rollup of `query_log`: one point per step of the
range, per version.

Points sit on a fixed grid (whole minutes since the epoch), so a point that has ended cannot
change: each process keeps the ended points of every range and, on the next read, sums only the
periods since the last of them (plus a margin for rows still in the query log writer's queue).
Everything is summed again every RECOUNT_S, so rows written late (an import, a replay) show
within that time. The rollup (rollout.analytics.rollup) makes even a first read cheap: a day in
15-minute points reads 96 quarter-hour rows a version, an hour in minutes 60 minute rows.

Each point counts the routed-mode queries routed to the version: requests, latency p50/p95/p99
(from the rollup's latency buckets, exact to a bucket), error and fallback rates; and, for the
queries the routed version answered itself, cache hit rate and mean top similarity; the mean
shadow overlap; and the embedding tokens the version used (served and shadow) with their cost
at the version's price per million tokens (None when no price is known).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from psycopg_pool import ConnectionPool

from rollout.analytics.rollup import grain_for, quantile
from rollout.database import read_snapshot

RANGES: dict[str, timedelta] = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "6h": timedelta(hours=6),
                                 "24h": timedelta(hours=24), "7d": timedelta(days=7)}
# the width of one point over each range (15 to 96 points), whole minutes of the rollup
STEPS: dict[str, timedelta] = {"15m": timedelta(minutes=1), "1h": timedelta(minutes=1),
                                "6h": timedelta(minutes=5), "24h": timedelta(minutes=15), "7d": timedelta(hours=2)}
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
LATE_ROWS = timedelta(seconds=60)  # rows may reach query_log this long after they were logged
RECOUNT_S = 300.0

_POINTS = """
    SELECT date_bin(%(step)s, period, %(epoch)s) AS point, version, sum(requests)::bigint, sum(errors)::bigint,
           sum(fallbacks)::bigint, sum(cache_hits)::bigint, sum(cache_samples)::bigint, sum(similarity_sum),
           sum(similarity_samples)::bigint, sum(overlap_sum), sum(overlap_samples)::bigint,
           sum(embed_tokens)::bigint
    FROM query_log_rollup WHERE grain_minutes = %(grain)s AND period >= %(since)s AND period < %(until)s
    GROUP BY 1, 2"""
# each point's latency buckets added up by the database, and for each quantile q the buckets holding the
# samples at ranks floor(q·(n−1)) and ceil(q·(n−1)) (0-based, as percentile_cont takes them); counted in
# float8, exact far beyond any count of queries, and much faster than numeric
QUANTILES = (0.5, 0.95, 0.99)
_RANKS = ", ".join(f"min(bucket) FILTER (WHERE upto > floor({q} * (total - 1))), "
                   f"min(bucket) FILTER (WHERE upto > ceil({q} * (total - 1)))" for q in QUANTILES)
_BUCKETS = f"""
    WITH buckets AS (
        SELECT date_bin(%(step)s, period, %(epoch)s) AS point, version, bucket::int, sum(queries::float8) AS queries
        FROM query_log_rollup, jsonb_each_text(latency_buckets) AS b (bucket, queries)
        WHERE grain_minutes = %(grain)s AND period >= %(since)s AND period < %(until)s
        GROUP BY 1, 2, 3
    ), ranked AS (
        SELECT point, version, bucket, sum(queries) OVER (PARTITION BY point, version ORDER BY bucket) AS upto,
               sum(queries) OVER (PARTITION BY point, version) AS total
        FROM buckets
    )
    SELECT point, version, total::bigint, {_RANKS} FROM ranked GROUP BY point, version, total"""


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
    def __init__(self, pool: ConnectionPool, timeout_ms: int,
                 price_per_mtok: Callable[[str], float | None] = lambda version: None):
        self.pool = pool
        self.timeout_ms = timeout_ms  # of each read (MONITORING_QUERY_TIMEOUT_MS)
        self.price_per_mtok = price_per_mtok  # USD per million embedding tokens of a version; None: unknown
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
        costs = {version: self._cost(version, sum(p["embed_tokens"] for p in listed))
                 for version, listed in by_version.items()}
        by_version = {version: [{**p, "cost_usd": _cost(p["embed_tokens"], costs[version]["price_per_mtok_usd"])}
                                for p in listed] for version, listed in by_version.items()}
        return {"range": range_name, "since": since.isoformat(), "until": until.isoformat(),
                "step_s": step.total_seconds(), "versions": by_version, "cost": costs}

    def _cost(self, version: str, tokens: int) -> dict:
        price = self.price_per_mtok(version)
        return {"embed_tokens": tokens, "price_per_mtok_usd": price, "cost_usd": _cost(tokens, price)}

    def forget(self) -> None:
        """Drop the kept points: the next read counts every row of its range again."""
        with self._lock:
            self._ended.clear()

    def _count(self, step: timedelta, since: datetime, until: datetime) -> dict[tuple[datetime, str], dict]:
        params = {"step": step, "epoch": EPOCH, "since": since, "until": until,
                  "grain": grain_for(step.total_seconds())}
        points = {}
        latencies: dict[tuple[datetime, str], list[float | None]] = {}
        with read_snapshot(self.pool, self.timeout_ms) as conn:
            for at, version, total, *buckets in conn.execute(_BUCKETS, params):
                pairs = zip(QUANTILES, buckets[::2], buckets[1::2], strict=True)
                latencies[(at, version)] = [quantile(q, total, low, high) for q, low, high in pairs]
            for row in conn.execute(_POINTS, params):
                (at, version, requests, errors, fallbacks, cache_hits, cache_samples, similarity, similarity_samples,
                 overlap, overlap_samples, tokens) = row
                p50, p95, p99 = latencies.get((at, version), [None] * len(QUANTILES))
                points[(at, version)] = {
                    "at": at.isoformat(), "requests": requests, "rate_per_s": requests / step.total_seconds(),
                    "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "error_rate": _share(errors, requests),
                    "fallback_rate": _share(fallbacks, requests), "cache_hit_rate": _share(cache_hits, cache_samples),
                    "mean_overlap": _share(overlap, overlap_samples),
                    "mean_top_similarity": _share(similarity, similarity_samples), "embed_tokens": tokens}
        return points


def _share(part, whole) -> float | None:
    return float(part) / whole if whole else None



def _cost(tokens: int, price_per_mtok: float | None) -> float | None:
    return None if price_per_mtok is None else tokens * price_per_mtok / 1e6
