"""Known-item probes: a document's own words as the query; each version should find that document.

On a schedule (the controller's `probes` job, every RELEVANCE_PROBE_INTERVAL_S), a few
documents per category are drawn and turned into queries (their title, their first
sentence, or a template around the title). Every version searches every probe directly,
not through the gateway, so probes need no user traffic and never enter user metrics or
query_log. The rank each version gives the source document is kept in
`relevance_probes`; hit@k and reciprocal rank per version (and category) follow from it.
"""

from __future__ import annotations

import logging
import random
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Summary

from rollout.backends import SearchFailed, VersionBackend
from rollout.relevance.ranking import rank_of

log = logging.getLogger(__name__)

STYLES = ("title", "first_sentence", "template")
TEMPLATE = "information about {title}"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def first_sentence(text: str, max_chars: int = 300) -> str:
    return _SENTENCE_END.split(text.strip(), maxsplit=1)[0][:max_chars]


@dataclass(frozen=True)
class Probe:
    document_id: str
    category: str | None
    style: str
    query: str


def probe_for(document_id: str, category: str | None, title: str, content: str, style: str) -> Probe:
    if style == "title":
        query = title
    elif style == "first_sentence":
        query = first_sentence(content)
    elif style == "template":
        query = TEMPLATE.format(title=title.lower())
    else:
        raise ValueError(f"unknown probe style {style!r}; expected one of {', '.join(STYLES)}")
    return Probe(document_id, category, style, query)


@dataclass(frozen=True)
class ProbeResult:
    probe: Probe
    version: str
    rank: int | None
    error: str | None = None


class KnownItemProbes:
    def __init__(self, pool, backends: Mapping[str, VersionBackend], metrics: ProbeMetrics | None = None, *,
                 per_category: int = 5, k: int = 10, styles: Sequence[str] = STYLES, seed: int | None = None):
        self.pool = pool
        self.backends = backends
        self.metrics = metrics
        self.per_category = per_category
        self.k = k
        self.styles = tuple(styles)
        self.random = random.Random(seed)

    def sample(self) -> list[Probe]:
        """Up to `per_category` documents of each category, each with a style drawn at random."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT id, category, title, content FROM (SELECT id, category, title, content, row_number() "
                "OVER (PARTITION BY category ORDER BY md5(id || %s)) AS n FROM documents) d WHERE n <= %s "
                "ORDER BY category, id", (str(self.random.random()), self.per_category)).fetchall()
        return [probe_for(doc, category, title, content, self.random.choice(self.styles))
                for doc, category, title, content in rows]

    def run(self, probes: Sequence[Probe] | None = None) -> list[ProbeResult]:
        """One round: every version searches every probe; the ranks are stored and counted."""
        probes = self.sample() if probes is None else probes
        results = []
        for probe in probes:
            for version, backend in self.backends.items():
                try:
                    ranked = backend.search(probe.query, self.k).ids
                except SearchFailed as exc:
                    results.append(ProbeResult(probe, version, None, exc.kind))
                    continue
                results.append(ProbeResult(probe, version, rank_of(ranked, probe.document_id)))
        self._store(results)
        return results

    def _store(self, results: list[ProbeResult]) -> None:
        if not results:
            return
        round_id = uuid.uuid4().hex
        with self.pool.connection() as conn, conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO relevance_probes (round_id, version, document_id, category, style, rank, k, error) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [(round_id, r.version, r.probe.document_id, r.probe.category, r.probe.style, r.rank, self.k, r.error)
                 for r in results])
        if self.metrics is not None:
            for r in results:
                if r.error is None:
                    self.metrics.outcomes.labels(r.version, "hit" if r.rank else "miss").inc()
                    self.metrics.reciprocal_rank.labels(r.version).observe(1 / r.rank if r.rank else 0.0)


class ProbeMetrics:
    """The probes' series, in the registry of the process that runs them: the controller serves its own
    (ROLLOUT_CONTROLLER_METRICS_PORT), so its rounds are scraped there, not from the gateway."""

    def __init__(self, registry: CollectorRegistry):
        self.outcomes = Counter("rag_relevance_probes", "Known-item probes by version and outcome (hit: the source "
                                "document in the top k; miss).", ["version", "outcome"], registry=registry)
        self.reciprocal_rank = Summary("rag_relevance_probe_reciprocal_rank", "1 / the rank of a probe's source "
                                       "document (0: not in the top k); its mean is the MRR.", ["version"],
                                       registry=registry)


def probe_summary(pool, since_s: float) -> dict[str, dict[str, dict]]:
    """Per version and category ('' : all), over the last `since_s` seconds: probes, hits, hit@k, MRR, errors."""
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT version, category, GROUPING(category), count(*) FILTER (WHERE error IS NULL), "
            "count(rank), coalesce(sum(1.0 / rank), 0), count(error) FROM relevance_probes "
            "WHERE probed_at >= now() - make_interval(secs => %s) "
            "GROUP BY GROUPING SETS ((version), (version, category)) ", (since_s,)).fetchall()
    summary: dict[str, dict[str, dict]] = {}
    for version, category, all_categories, probes, hits, rr, errors in rows:
        key = "" if all_categories else (category or "(none)")
        summary.setdefault(version, {})[key] = {
            "probes": probes, "hits": hits, "errors": errors,
            "hit_rate": hits / probes if probes else None, "mrr": float(rr) / probes if probes else None}
    return summary
