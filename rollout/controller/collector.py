"""The evidence collector: what the gates judge, read from `query_log`, the candidate's breaker and the coverage.

Only the rows of the rollout's baseline and candidate (`Roles`) count.

The window is the stage's: from `stage_started_at` (when the percentage was set) to the
evaluation. Only routed queries count (mode `routed`, reason not `forced`): merged-mode
answers and requests an admin forced to a version say nothing about the split or about
what users get from it. Per routed version, as `Figures` counts them: a candidate failure
answered by the baseline is a candidate error and its latency is what the candidate's user
waited; a similarity counts only when the routed version itself answered (the baseline's
similarity after a fallback lives on the baseline's scale).

Sample ratio: the split's assignments, not who served. A query routed by `percentage`
counts for its version; one a guard (breaker, alert, incomplete coverage) sent to the
baseline counts for the candidate when its bucket is inside the percentage (a request forced
to the candidate that a guard turned away is left out). Units are distinct users (the keyed
hash of the routing key; routing is sticky per user), and rows without a user hash (written
before the column existed) count one each.

Bounded: counts are exact, but each version's latencies and similarities are a uniform
random sample of at most `max_samples` rows (Bernoulli sampling in PostgreSQL, keeping each
answered row with probability max_samples / answered), and the same for shadow overlaps.
Every read shares one REPEATABLE READ snapshot, so samples never outnumber the counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
from psycopg_pool import ConnectionPool

from flags import QUERY_ANALYTICS, FlagStore, threshold
from rollout.analytics.figures import FAILED, ROUTED
from rollout.analytics.losses import read_losses
from rollout.breaker import CircuitBreakers
from rollout.breaker.state import CLOSED
from rollout.controller.evidence import Evidence, VersionEvidence
from rollout.database import one_row, read_snapshot
from rollout.migration.coverage import CoverageMonitor
from rollout.moments import moment
from rollout.routing import Reason, Roles

GUARD_REASONS = [Reason.BREAKER_OPEN.value, Reason.ALERT.value, Reason.V2_INCOMPLETE.value]

_WINDOW = "logged_at >= %(since)s AND logged_at < %(until)s"

_COUNTS = f"""
    SELECT routed_version,
           count(*) FILTER (WHERE logged_at >= %(since)s),
           count(*) FILTER (WHERE logged_at >= %(since)s AND {FAILED}),
           count(*) FILTER (WHERE logged_at >= %(since)s AND served_version IS NOT NULL),
           count(overlap) FILTER (WHERE logged_at >= %(since)s),
           count(*) FILTER (WHERE logged_at >= %(critical_since)s AND served_version IS NULL)
    FROM query_log
    WHERE logged_at >= least(%(since)s, %(critical_since)s) AND logged_at < %(until)s AND {ROUTED}
      AND routed_version IN (%(baseline)s, %(candidate)s)
    GROUP BY routed_version"""

_ASSIGNMENTS = f"""
    SELECT assigned, count(DISTINCT user_hash) + count(*) FILTER (WHERE user_hash IS NULL)
    FROM (SELECT CASE WHEN reason IN ('percentage', 'holdback') THEN routed_version ELSE %(candidate)s END AS assigned,
                 user_hash
          FROM query_log
          WHERE {_WINDOW} AND mode = 'routed' AND routed_version IN (%(baseline)s, %(candidate)s)
            AND (reason IN ('percentage', 'holdback') OR (reason = ANY(%(guards)s) AND bucket < %(threshold)s))) split
    GROUP BY assigned"""

_CROSSOVER = f"""
    SELECT count(*), count(*) FILTER (WHERE versions > 1)
    FROM (SELECT user_hash, count(DISTINCT routed_version) AS versions FROM query_log
          WHERE {_WINDOW} AND {ROUTED} AND user_hash IS NOT NULL AND routed_version IN (%(baseline)s, %(candidate)s)
          GROUP BY user_hash) users"""

_LOGGED = f"SELECT count(*) FROM query_log WHERE {_WINDOW}"

_SAMPLES = f"""
    SELECT routed_version, latency_ms, CASE WHEN served_version = routed_version THEN top_similarity END
    FROM query_log
    WHERE {_WINDOW} AND {ROUTED} AND served_version IS NOT NULL AND routed_version IN (%(baseline)s, %(candidate)s)
      AND random() < CASE routed_version WHEN %(baseline)s THEN %(keep_baseline)s ELSE %(keep_candidate)s END"""

_OVERLAPS = f"""
    SELECT overlap FROM query_log
    WHERE {_WINDOW} AND {ROUTED} AND overlap IS NOT NULL AND routed_version IN (%(baseline)s, %(candidate)s)
      AND random() < %(keep)s"""


def _keep(available: int, wanted: int) -> float:
    """The share of rows to keep so that about `wanted` of `available` remain (1.0: all of them)."""
    return 1.0 if available <= wanted else wanted / available


@dataclass
class _Counts:
    requests: int = 0
    errors: int = 0
    answered: int = 0
    overlaps: int = 0
    critical: int = 0
    assigned: int = 0


class Facts(TypedDict):
    """What this process knows besides the query log (the `Evidence` fields of the same names)."""

    coverage_complete: bool
    coverage_detail: str
    analytics_enabled: bool
    breaker_closed: bool
    breaker_detail: str
    tripping_alerts: tuple[str, ...]


@dataclass(frozen=True)
class Collected:
    """The evidence, and a JSON summary of how it was gathered (kept with the decision)."""

    evidence: Evidence
    summary: dict[str, Any]


class EvidenceCollector:
    def __init__(self, pool: ConnectionPool, breakers: CircuitBreakers, coverage: CoverageMonitor, *,
                 max_samples: int, statement_timeout_ms: int, roles: Callable[[], Roles],
                 flags: FlagStore | None = None, holdback: float = 0.0):
        self.pool = pool
        self.holdback = holdback  # ROLLOUT_HOLDBACK_PERCENT: users the router keeps on the baseline
        self.flags = flags
        self.roles = roles  # the baseline and the candidate (the router's snapshot of the registry)
        self.breakers = breakers
        self.coverage = coverage
        self.max_samples = max_samples
        self.statement_timeout_ms = statement_timeout_ms

    def collect(self, percentage: float, since: float, until: float, critical_window_s: float,
                facts: Facts | None = None) -> Collected:
        """The evidence of the window [since, until) at `percentage` (epoch seconds).

        `facts`: the breaker, alerts, coverage and analytics flag as they were (a replay passes the
        stored ones); None reads this process's copies now."""
        baseline, candidate = self.roles()
        candidate = candidate or ""  # no rollout: nothing is routed to a candidate
        since_at, until_at, critical_since = moment(since), moment(until), moment(until - critical_window_s)
        params = {"since": since_at, "until": until_at, "critical_since": critical_since,
                  "guards": GUARD_REASONS, "threshold": threshold(percentage), "baseline": baseline,
                  "candidate": candidate}
        counts = {baseline: _Counts(), candidate: _Counts()}
        with read_snapshot(self.pool, self.statement_timeout_ms) as conn:
            for version, requests, errors, answered, overlaps, critical in conn.execute(_COUNTS, params):
                counts[version] = _Counts(requests, errors, answered, overlaps, critical)
            for version, assigned in conn.execute(_ASSIGNMENTS, params):
                counts[version].assigned = assigned
            users_seen, users_on_both = one_row(conn.execute(_CROSSOVER, params).fetchone(), "users crossing over")
            keep = {v: _keep(c.answered, self.max_samples) for v, c in counts.items()}
            latencies: dict[str, list[float]] = {baseline: [], candidate: []}
            similarities: dict[str, list[float]] = {baseline: [], candidate: []}
            for version, latency_ms, similarity in conn.execute(
                    _SAMPLES, {**params, "keep_baseline": keep[baseline], "keep_candidate": keep[candidate]}):
                latencies[version].append(latency_ms / 1000)
                if similarity is not None:
                    similarities[version].append(similarity)
            overlap_total = sum(c.overlaps for c in counts.values())
            keep_overlaps = _keep(overlap_total, self.max_samples)
            overlaps = [row[0] for row in conn.execute(_OVERLAPS, {**params, "keep": keep_overlaps})]
            logged = one_row(conn.execute(_LOGGED, params).fetchone(), "rows logged")[0]
            losses = read_losses(conn, since_at, until_at)
        facts = self.facts() if facts is None else facts
        versions = {v: VersionEvidence(requests=c.requests, errors=c.errors, critical_errors=c.critical,
                                       latencies_s=np.asarray(latencies[v]),
                                       top_similarities=np.asarray(similarities[v]), assigned=c.assigned)
                    for v, c in counts.items()}
        evidence = Evidence(percentage=percentage, window_started_at=since, evaluated_at=until,
                            v1=versions[baseline], v2=versions[candidate],
                            shadow_overlaps=np.asarray(overlaps, dtype=float),
                            users_seen=users_seen, users_on_both=users_on_both, rows_logged=logged,
                            rows_lost=losses.rows, lost_detail=losses.describe(), holdback=self.holdback, **facts)
        summary = {
            "window": {"since": since_at.isoformat(), "until": until_at.isoformat(), "seconds": until - since},
            "critical_since": critical_since.isoformat(),
            "max_samples": self.max_samples,
            **{v: {"requests": c.requests, "errors": c.errors, "critical_errors": c.critical, "answered": c.answered,
                   "assigned_users": c.assigned, "latency_samples": len(latencies[v]),
                   "similarity_samples": len(similarities[v]), "sampled_share": keep[v]}
               for v, c in counts.items()},
            "shadow": {"compared": overlap_total, "samples": len(overlaps), "sampled_share": keep_overlaps},
            "users": {"seen": users_seen, "on_both": users_on_both},
            "rows": {"logged": logged, "lost": losses.rows, "lost_detail": losses.describe()},
            "holdback": self.holdback,
            "facts": {"coverage_complete": facts["coverage_complete"], "coverage_detail": facts["coverage_detail"],
                      "breaker_closed": facts["breaker_closed"], "breaker_detail": facts["breaker_detail"],
                      "tripping_alerts": list(facts["tripping_alerts"]),
                      "analytics_enabled": facts["analytics_enabled"]},
        }
        return Collected(evidence, summary)

    def facts(self) -> Facts:
        """The candidate's coverage and breaker, the tripping alerts and the analytics flag, from this
        process's copies."""
        shortfalls = self.coverage.shortfalls()
        if shortfalls is None:
            complete, coverage = False, "not counted yet" + (f" ({self.coverage.last_error})"
                                                             if self.coverage.last_error else "")
        else:
            complete = not shortfalls
            coverage = ", ".join(f"{category} {c.embedded}/{c.total}" for category, c in shortfalls[:10])
            if len(shortfalls) > 10:
                coverage += f" and {len(shortfalls) - 10} more"
        state = self.breakers.state()
        record = state.record(state.held_version or "")
        breaker = record.state if record.state == CLOSED else ", ".join(
            filter(None, [record.state, record.cause.value if record.cause else None, record.detail]))
        analytics = True if self.flags is None else bool(self.flags.get(QUERY_ANALYTICS))
        return {"coverage_complete": complete, "coverage_detail": coverage, "analytics_enabled": analytics,
                "breaker_closed": record.state == CLOSED, "breaker_detail": breaker,
                "tripping_alerts": tuple(sorted(alert.alertname for alert in state.alerts.values()))}
