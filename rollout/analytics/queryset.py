"""`rollout compare`: a set of queries run against both versions directly (no routing), side by side.

Each query goes to both backends, in alternating order so neither version always
runs on a warmer cache; one warm-up query per version is not counted. The report
gives overlap, latency and similarity distributions, and the queries on which the
versions disagree most (lowest rank-biased overlap).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rollout.analytics.figures import distribution
from rollout.backends import VersionBackend
from rollout.comparison import Comparison, compare
from rollout.errors import RolloutError
from rollout.shadow import SearchRun, timed_search


def read_queries(path: Path) -> list[str]:
    """One query per line; blank lines and lines starting with # are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RolloutError(f"cannot read the query file {path}: {exc}") from None
    queries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not queries:
        raise RolloutError(f"{path} holds no queries (one per line; # starts a comment)")
    return queries


@dataclass(frozen=True)
class QueryPair:
    query: str
    runs: Mapping[str, SearchRun]
    comparison: Comparison | None  # None when a version failed

    def top(self, version: str, n: int = 3) -> list[str]:
        result = self.runs[version].result
        return [hit.title for hit in result.hits[:n]] if result else []

    def as_json(self) -> dict:
        return {"query": self.query,
                "comparison": self.comparison.as_json() if self.comparison else None,
                "versions": {v: {"latency_ms": round(run.latency_ms, 3), "error": run.error,
                                 "top_similarity": run.result.top_similarity if run.result else None,
                                 "ids": run.result.ids if run.result else []}
                             for v, run in self.runs.items()}}


@dataclass(frozen=True)
class QuerySetReport:
    k: int
    pairs: list[QueryPair]
    names: tuple[str, str]  # the two versions compared (the baseline, then the candidate)

    def compared(self) -> list[QueryPair]:
        return [p for p in self.pairs if p.comparison is not None]

    def disagreements(self, n: int = 5) -> list[QueryPair]:
        """The `n` compared queries with the lowest RBO (then lowest overlap)."""
        return sorted(self.compared(), key=lambda p: (p.comparison.rbo, p.comparison.overlap, p.query))[:n]

    def summary(self) -> dict:
        compared = self.compared()
        top1 = [p.comparison.top1_agreement for p in compared if p.comparison.top1_agreement is not None]
        versions = {}
        for version in self.names:
            runs = [p.runs[version] for p in self.pairs]
            ok = [r for r in runs if r.result is not None]
            versions[version] = {
                "errors": len(runs) - len(ok),
                "latency_ms": distribution(r.latency_ms for r in ok),
                "top_similarity": distribution(r.result.top_similarity for r in ok),
            }
        return {
            "queries": len(self.pairs), "compared": len(compared), "k": self.k,
            "overlap": distribution(p.comparison.overlap for p in compared),
            "rbo": distribution(p.comparison.rbo for p in compared),
            "kendall_tau": distribution(p.comparison.kendall_tau for p in compared),
            "top1_agreement_rate": sum(top1) / len(top1) if top1 else None,
            "versions": versions,
        }


def compare_query_set(backends: Mapping[str, VersionBackend], names: tuple[str, str], queries: Sequence[str],
                      k: int = 10, category: str | None = None) -> QuerySetReport:
    """Each query against the two versions `names` (alternating which goes first)."""
    first, second = names
    for name in names:  # warm-up: connections, caches; not counted
        timed_search(name, lambda b=backends[name]: b.search(queries[0], k, category))
    pairs = []
    for n, query in enumerate(queries):
        order = (first, second) if n % 2 == 0 else (second, first)
        runs = {v: timed_search(v, lambda v=v, q=query: backends[v].search(q, k, category)) for v in order}
        runs = {v: runs[v] for v in names}
        ok = all(run.result is not None for run in runs.values())
        comparison = compare(runs[first].result.ids, runs[second].result.ids, k) if ok else None
        pairs.append(QueryPair(query, runs, comparison))
    return QuerySetReport(k, pairs, names)
