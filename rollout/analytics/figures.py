"""The figures that answer "is the candidate as good as the baseline yet?", read from `query_log`:
the one place they are computed.

`GET /api/monitoring/dashboard`, `rollout monitor` and `rollout baseline` all call
`Figures.dashboard()`. Per version, over a window:

- requests, latency p50/p95/p99, error rate and fallbacks count the queries *routed*
  to the version: a candidate failure answered by the baseline is a candidate error, and its latency
  (the candidate's failed attempt plus the baseline's answer) is what the candidate's user waited;
- mean top similarity takes every top similarity the version produced, as the
  server (routed queries) or as the shadow (the same queries, measured in the
  background), each in that version's own embedding space;
  A signal: the success criterion holds the candidate's mean against the similarity floor read
  on the baseline's scale and mapped to the candidate's by the calibration, never a raw floor;
- cache hit rate counts queries the version served with a query cache configured;
- shadow overlap compares the served list with the shadow list of the same query;
- embedding tokens count what the version's model embedded (served or shadow), and their cost
  is at the model's price per million tokens (`EMBEDDING_PRICES_PER_MTOK`).

Percentiles are PostgreSQL's `percentile_cont` (linear interpolation, as numpy's
default). All reads of one call share a REPEATABLE READ snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
from psycopg_pool import ConnectionPool

from flags import GRADUAL_MIGRATION, V2_PERCENTAGE, FlagSnapshot
from rollout.analytics.series import RANGES, Series
from rollout.database import read_snapshot
from rollout.formatting import rate_percent
from rollout.routing import Roles

if TYPE_CHECKING:
    from rollout.relevance.calibration import Calibration  # an annotation only: the runtime passes one in

CRITICAL_WINDOW = timedelta(hours=24)
# the SQL the dashboard and the rollout controller share: which queries judge a version, and which failed it
ROUTED = "mode = 'routed' AND reason <> 'forced'"
FAILED = "(fallback OR served_version IS NULL)"


class InvalidRange(ValueError):
    pass


def parse_range(name: str) -> timedelta:
    try:
        return RANGES[name]
    except KeyError:
        raise InvalidRange(f"unknown range {name!r}; expected one of {', '.join(RANGES)}") from None


def distribution(values) -> dict:
    """count, mean, min, p10/p50/p90/p95/p99, max of `values` (None entries skipped); empty → count 0."""
    data = np.asarray([v for v in values if v is not None], dtype=float)
    if data.size == 0:
        return {"count": 0}
    p10, p50, p90, p95, p99 = np.percentile(data, [10, 50, 90, 95, 99])
    return {"count": int(data.size), "mean": float(data.mean()), "min": float(data.min()), "p10": float(p10),
            "p50": float(p50), "p90": float(p90), "p95": float(p95), "p99": float(p99), "max": float(data.max())}


def target_shares(snapshot: FlagSnapshot, baseline: str, candidate: str) -> dict[str, float]:
    """The share (0-1) of users the flags route to the baseline and to the candidate."""
    share = snapshot[V2_PERCENTAGE] / 100 if snapshot[GRADUAL_MIGRATION] and candidate != baseline else 0.0
    return {baseline: 1.0 - share, candidate: share} if candidate != baseline else {baseline: 1.0}


@dataclass
class ShadowFigures:
    compared: int = 0
    mean_overlap: float | None = None
    mean_rbo: float | None = None
    top1_agreement_rate: float | None = None


@dataclass
class VersionFigures:
    version: str
    requests: int = 0                  # routed to this version
    served: int = 0                    # answered by this version (for the baseline, fallbacks too)
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0                    # routed here, and this version did not answer
    error_rate: float | None = None
    fallbacks: int = 0                 # routed here, answered by the baseline after a failure
    mean_top_similarity: float | None = None
    similarity_samples: int = 0
    cache_hit_rate: float | None = None
    cache_samples: int = 0
    actual_share: float | None = None  # of routed queries
    target_share: float = 0.0          # from the flags, now
    embed_tokens: int = 0              # query embeddings by this version's model (served and shadow, routed mode)
    price_per_mtok_usd: float | None = None  # EMBEDDING_PRICES_PER_MTOK for its model (local: 0); None: unknown
    cost_usd: float | None = None      # embed_tokens at that price
    shadow: ShadowFigures = field(default_factory=ShadowFigures)

    @classmethod
    def from_json(cls, data: dict) -> VersionFigures:
        data = dict(data)
        data["shadow"] = ShadowFigures(**data.get("shadow", {}))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class Criterion:
    name: str
    description: str
    status: str                        # pass | fail | insufficient_data
    value: float | int | None
    threshold: float | int
    detail: str


@dataclass
class Baseline:
    id: int
    created_at: datetime
    range: str
    figures: VersionFigures
    note: str | None = None

    def as_json(self) -> dict:
        return {"id": self.id, "created_at": self.created_at.isoformat(), "range": self.range,
                "figures": asdict(self.figures), "note": self.note}


@dataclass
class Dashboard:
    range: str
    since: datetime
    until: datetime
    queries: int
    merged_queries: int
    failed_queries: int                # no version could answer
    critical_errors_24h: int
    versions: dict[str, VersionFigures]  # the rollout's baseline first, then its candidate
    criteria: list[Criterion]
    baseline: Baseline | None = None

    @property
    def pair(self) -> tuple[str, str]:
        """The baseline's and the candidate's names (the same twice when no rollout is under way)."""
        names = list(self.versions)
        return names[0], names[-1]

    @property
    def verdict(self) -> str:
        """pass (every criterion passes), fail (one fails), or incomplete (data missing for one)."""
        statuses = {c.status for c in self.criteria}
        if "fail" in statuses:
            return "fail"
        return "pass" if statuses == {"pass"} else "incomplete"

    def as_json(self) -> dict:
        return {"range": self.range, "since": self.since.isoformat(), "until": self.until.isoformat(),
                "queries": self.queries, "merged_queries": self.merged_queries,
                "failed_queries": self.failed_queries, "critical_errors_24h": self.critical_errors_24h,
                "versions": {v: asdict(f) for v, f in self.versions.items()},
                "criteria": [asdict(c) for c in self.criteria], "verdict": self.verdict,
                "baseline": self.baseline.as_json() if self.baseline else None}


_WINDOW = "logged_at >= %(since)s AND logged_at < %(until)s"

_BY_ROUTED = f"""
    SELECT routed_version, count(*),
           percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms),
           count(*) FILTER (WHERE {FAILED}),
           count(*) FILTER (WHERE fallback)
    FROM query_log WHERE {_WINDOW} AND {ROUTED} GROUP BY routed_version"""

_BY_SERVED = f"""
    SELECT served_version, count(*), avg(cache_hit::int), count(cache_hit),
           count(overlap), avg(overlap), avg(rbo), avg(top1_agreement::int)
    FROM query_log WHERE {_WINDOW} AND mode = 'routed' AND served_version IS NOT NULL GROUP BY served_version"""

_SIMILARITY = f"""
    SELECT version, avg(similarity), count(similarity), coalesce(sum(tokens), 0)::bigint FROM (
        SELECT served_version AS version, top_similarity AS similarity, embed_tokens AS tokens FROM query_log
        WHERE {_WINDOW} AND mode = 'routed' AND served_version IS NOT NULL
        UNION ALL
        SELECT other_version, other_top_similarity, other_embed_tokens FROM query_log
        WHERE {_WINDOW} AND mode = 'routed' AND other_version IS NOT NULL
    ) observed GROUP BY version"""

_TOTALS = """
    SELECT count(*) FILTER (WHERE logged_at >= %(since)s),
           count(*) FILTER (WHERE logged_at >= %(since)s AND mode = 'merged'),
           count(*) FILTER (WHERE logged_at >= %(since)s AND served_version IS NULL),
           count(*) FILTER (WHERE logged_at >= %(day_ago)s AND served_version IS NULL)
    FROM query_log WHERE logged_at >= least(%(since)s, %(day_ago)s) AND logged_at < %(until)s"""

_LATEST_BASELINE = """SELECT id, created_at, range, figures, note FROM performance_baselines
                      WHERE version = %s ORDER BY created_at DESC, id DESC LIMIT 1"""


@dataclass(frozen=True)
class CriteriaLimits:
    """The limits of the seed's success criteria: the rollout controller's thresholds (ROLLOUT_MAX_P95_MS,
    ROLLOUT_MIN_SIMILARITY, ROLLOUT_MAX_CRITICAL_ERRORS, ROLLOUT_MAX_ERROR_RATE) and the dashboard's own
    (CRITERIA_MIN_SAMPLES, CRITERIA_MIN_CACHE_HIT_RATE). The composition root reads them from the settings."""

    max_p95_ms: float = 800.0
    min_similarity: float = 0.7
    max_critical_errors: int = 0
    max_error_rate: float = 0.001
    min_samples: int = 100  # queries a version needs before a criterion is known
    min_cache_hit_rate: float = 0.7


class Figures:
    def __init__(self, pool: ConnectionPool, limits: CriteriaLimits, roles: Callable[[], Roles],
                 price_per_mtok: Callable[[str], float | None] = lambda version: None,
                 calibration: Calibration | None = None, *, timeout_ms: int = 15000):
        self.pool = pool
        self.limits = limits
        self.timeout_ms = timeout_ms  # of each dashboard read (MONITORING_QUERY_TIMEOUT_MS)
        self.roles = roles  # the baseline and the candidate (the router's snapshot of the registry)
        self.price_per_mtok = price_per_mtok  # USD per million embedding tokens of a version by name
        self.calibration = calibration  # maps the similarity floor to the candidate's scale (None: raw only)
        self._series = Series(pool, timeout_ms, price_per_mtok)

    def dashboard(self, range_name: str, flags: FlagSnapshot, *, until: datetime | None = None) -> Dashboard:
        """Figures over the last `range_name` (1h, 24h, 7d); InvalidRange otherwise."""
        window = parse_range(range_name)
        until = until or datetime.now(UTC)
        params = {"since": until - window, "until": until, "day_ago": until - CRITICAL_WINDOW}
        baseline, candidate = self.roles()
        candidate = candidate or baseline
        versions = {v: VersionFigures(v) for v in (baseline, candidate)}
        with read_snapshot(self.pool, self.timeout_ms) as conn:
            for version, requests, percentiles, errors, fallbacks in conn.execute(_BY_ROUTED, params):
                if version not in versions:  # a version out of the rollout (an earlier one)
                    continue
                f = versions[version]
                f.requests, f.errors, f.fallbacks = requests, errors, fallbacks
                f.p50_ms, f.p95_ms, f.p99_ms = percentiles
                f.error_rate = errors / requests
            for row in conn.execute(_BY_SERVED, params):
                version, served, cache_rate, cache_samples, compared, overlap, rbo, top1 = row
                if version not in versions:
                    continue
                f = versions[version]
                f.served, f.cache_hit_rate, f.cache_samples = served, _float(cache_rate), cache_samples
                f.shadow = ShadowFigures(compared, _float(overlap), _float(rbo), _float(top1))
            for version, similarity, samples, tokens in conn.execute(_SIMILARITY, params):
                if version not in versions:
                    continue
                versions[version].mean_top_similarity = _float(similarity)
                versions[version].similarity_samples = samples
                versions[version].embed_tokens = tokens
            queries, merged, failed, critical = conn.execute(_TOTALS, params).fetchone()
            stored = _baseline(conn.execute(_LATEST_BASELINE, (baseline,)).fetchone())
        for f in versions.values():
            f.price_per_mtok_usd = self.price_per_mtok(f.version)
            f.cost_usd = None if f.price_per_mtok_usd is None else f.embed_tokens * f.price_per_mtok_usd / 1e6
        routed = sum(f.requests for f in versions.values())
        for version, share in target_shares(flags, baseline, candidate).items():
            versions[version].target_share = share
            versions[version].actual_share = versions[version].requests / routed if routed else None
        dashboard = Dashboard(range_name, params["since"], until, queries, merged, failed, critical, versions, [],
                              stored)
        dashboard.criteria = self.criteria(dashboard)
        return dashboard

    def series(self, range_name: str, *, until: datetime | None = None) -> dict:
        """The dashboard's per-version figures over time (see rollout.analytics.series); InvalidRange."""
        parse_range(range_name)
        pair = tuple(dict.fromkeys(v for v in self.roles() if v))
        return self._series.read(range_name, pair, until=until)

    def store_baseline(self, dashboard: Dashboard, note: str | None = None) -> Baseline:
        """Keep the baseline's figures of `dashboard`: later figures are compared with them."""
        name = dashboard.pair[0]
        figures = dashboard.versions[name]
        with self.pool.connection() as conn:
            row = conn.execute("""INSERT INTO performance_baselines (version, range, figures, note)
                                  VALUES (%s, %s, %s, %s) RETURNING id, created_at, range, figures, note""",
                               (name, dashboard.range, json.dumps(asdict(figures)), note)).fetchone()
        return _baseline(row)

    def latest_baseline(self) -> Baseline | None:
        with self.pool.connection() as conn:
            return _baseline(conn.execute(_LATEST_BASELINE, (self.roles().baseline,)).fetchone())

    def criteria(self, d: Dashboard) -> list[Criterion]:
        """The seed's success criteria for the candidate, with the rollout controller's thresholds (`ROLLOUT_*`).
        Each names the versions it compares (the dashboard's pair: the baseline, then the candidate)."""
        t, (v1, v2) = self.limits, (d.versions[name] for name in d.pair)
        base, cand = d.pair
        max_p95_ms = t.max_p95_ms
        enough = t.min_samples
        if v1.requests >= enough or d.baseline is None or d.baseline.figures.p95_ms is None:
            reference, source, reference_known = v1.p95_ms, base, v1.requests >= enough
        else:  # the baseline has (almost) no traffic left: judge the candidate against the stored figures
            reference, source = d.baseline.figures.p95_ms, f"the stored baseline of {d.baseline.created_at:%Y-%m-%d}"
            reference_known = True
        latency_known = reference_known and v2.requests >= enough and v2.p95_ms is not None
        return [
            _criterion(
                "v2_p95_latency", f"{cand} p95 ≤ {base} p95 and < {max_p95_ms:g} ms", v2.p95_ms,
                max_p95_ms, latency_known,
                latency_known and v2.p95_ms <= reference and v2.p95_ms < max_p95_ms,
                f"{cand} p95 {_ms(v2.p95_ms)} vs {source} p95 {_ms(reference)}, limit {max_p95_ms:g} ms; "
                f"{v2.requests} {cand} and {v1.requests} {base} queries"),
            self._similarity(v1, v2, t.min_similarity, enough),
            _criterion(
                "critical_errors_24h", f"at most {t.max_critical_errors} critical errors in 24 h",
                d.critical_errors_24h, t.max_critical_errors, True,
                d.critical_errors_24h <= t.max_critical_errors,
                f"{d.critical_errors_24h} queries no version could answer in the last 24 h"),
            _criterion(
                "v2_error_rate", f"{cand} error rate < {t.max_error_rate:.2%}", v2.error_rate,
                t.max_error_rate, v2.requests >= enough,
                v2.error_rate is not None and v2.error_rate < t.max_error_rate,
                f"{v2.errors} of {v2.requests} {cand} queries failed ({v2.fallbacks} answered by {base})"),
            _criterion(
                "v2_cache_hit_rate", f"{cand} query cache hit rate > {t.min_cache_hit_rate:.0%}",
                v2.cache_hit_rate, t.min_cache_hit_rate, v2.cache_samples >= enough,
                (v2.cache_hit_rate or 0) > t.min_cache_hit_rate,
                f"{_pct(v2.cache_hit_rate)} over {v2.cache_samples} {cand} queries with a query cache"
                if v2.cache_samples else f"no {cand} query went through a query cache"),
        ]


    def _similarity(self, base: VersionFigures, cand: VersionFigures, floor: float, enough: int) -> Criterion:
        """Mean top similarity, a signal on each version's own scale: it passes or fails only against the floor
        read on the baseline's scale and mapped to the candidate's by the calibration (never a raw 0.7)."""
        c = self.calibration
        calibrated = cand.version == base.version or (
            c is not None and c.baseline == base.version and {base.version, cand.version} <= set(c.scales))
        mapped = c.threshold_for(cand.version, floor) if c is not None and calibrated else None
        shown = (f"{cand.version} {_num(cand.mean_top_similarity)} over {cand.similarity_samples} results, "
                 f"{base.version} {_num(base.mean_top_similarity)} (each on its own scale)")
        if mapped is None:
            return _criterion("v2_mean_similarity", f"candidate mean top similarity above {floor:g} on the baseline's "
                              "scale, mapped by calibration", cand.mean_top_similarity, floor, False, False,
                              f"{shown}; a signal only until the calibration has learned both scales")
        return _criterion("v2_mean_similarity", f"candidate mean top similarity above {floor:g} on the baseline's "
                          f"scale ({mapped:.3f} on {cand.version}'s)", cand.mean_top_similarity, mapped,
                          cand.similarity_samples >= enough, (cand.mean_top_similarity or 0) > mapped,
                          f"{shown}; the floor mapped to {cand.version}'s scale: {mapped:.3f}")


def _criterion(name: str, description: str, value, threshold, known: bool, passed: bool, detail: str) -> Criterion:
    status = "insufficient_data" if not known else ("pass" if passed else "fail")
    return Criterion(name, description, status, value, threshold, detail)


def _baseline(row) -> Baseline | None:
    if row is None:
        return None
    figures = row[3] if isinstance(row[3], dict) else json.loads(row[3])
    return Baseline(row[0], row[1], row[2], VersionFigures.from_json(figures), row[4])


def _float(value) -> float | None:
    return None if value is None else float(value)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


_pct = rate_percent
