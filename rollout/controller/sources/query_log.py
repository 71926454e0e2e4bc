"""query_log (built in): the gateway's own record of every routed query, as named measures.

The same rows and the same SQL the built-in gates and the dashboard count: routed queries
only (not merged answers, not requests an admin forced), in the stage's window, per routed
version. A custom gate's `query` names one measure:

- counts: `errors` (failed: no answer, or answered by the other version's fallback),
  `fallbacks`, `no_answer` (the user got nothing), `cache_hits` (of the queries with a cache);
- values: `latency_p50_ms`, `latency_p95_ms`, `latency_p99_ms`, `mean_top_similarity`.
"""

from __future__ import annotations

from typing import Literal

from rollout.analytics.figures import FAILED, ROUTED
from rollout.controller.sources.reading import Measurement, NoData, Window, number
from rollout.controller.sources.source import MetricQuery, Source, SourceConfig
from rollout.database import read_snapshot

# measure -> (events, trials) for counts, or (value, None)
MEASURES: dict[str, tuple[str, str | None]] = {
    "errors": (f"count(*) FILTER (WHERE {FAILED})", "count(*)"),
    "fallbacks": ("count(*) FILTER (WHERE fallback)", "count(*)"),
    "no_answer": ("count(*) FILTER (WHERE served_version IS NULL)", "count(*)"),
    "cache_hits": ("count(*) FILTER (WHERE cache_hit)", "count(cache_hit)"),
    "latency_p50_ms": ("percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms)", None),
    "latency_p95_ms": ("percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)", None),
    "latency_p99_ms": ("percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms)", None),
    "mean_top_similarity": ("avg(top_similarity) FILTER (WHERE served_version = routed_version)", None),
}


class QueryLogConfig(SourceConfig):
    type: Literal["query_log"] = "query_log"


class QueryLogSource(Source):
    Config = QueryLogConfig
    counts_from = "the measure (errors, fallbacks, no_answer, cache_hits count; the others are values)"

    @classmethod
    def problems(cls, query: MetricQuery) -> list[str]:
        found = []
        if query.query not in MEASURES:
            found.append(f"query_log has no measure {query.query!r}; known: {', '.join(MEASURES)}")
        if query.total is not None:
            found.append("query_log's measures say themselves whether they count; total is not used")
        return found

    def read(self, query: MetricQuery, window: Window) -> dict[str, Measurement]:
        if query.query not in MEASURES:
            raise NoData(f"query_log has no measure {query.query!r}")
        if self.context.pool is None:
            raise NoData("query_log is not readable here (no database pool)")
        events, trials = MEASURES[query.query]
        columns = events if trials is None else f"{events}, {trials}"
        sql = (f"SELECT routed_version, {columns} FROM query_log "
               f"WHERE logged_at >= %(since)s AND logged_at < %(until)s AND {ROUTED} "
               "AND routed_version IN (%(baseline)s, %(candidate)s) GROUP BY routed_version")
        roles = {version: role for role, version in window.versions().items()}
        found: dict[str, Measurement] = {}
        with read_snapshot(self.context.pool, self.context.statement_timeout_ms) as conn:
            for row in conn.execute(sql.encode(), window.params()):
                role = roles[row[0]]
                if trials is not None and row[2]:
                    found[role] = Measurement.counts(number(row[1], query.query), number(row[2], query.query))
                elif trials is None and row[1] is not None:
                    found[role] = Measurement(value=number(row[1], query.query))
        if "candidate" not in found:
            raise NoData(f"query_log has no {query.query} for the candidate {window.candidate} in the window")
        return found
