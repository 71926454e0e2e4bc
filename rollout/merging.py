"""Merged mode: one result list from the baseline and the candidate, near-duplicates removed, ranked by
reciprocal rank fusion.

The versions' cosine similarities come from different models and are not
comparable, so the fusion uses ranks only (RRF, Cormack et al. 2009: each version
adds 1 / (rrf_k + rank)). Two results are one when they are the same document,
or near-duplicates: documents whose *stored* embeddings have cosine similarity
≥ the threshold in every version that holds both (computed by pgvector in one
query, so no vector leaves the database). The versions are those that answered the query,
so the check follows the rollout's pair when the registry's roles change. The threshold is read on
the baseline's scale and mapped to each version's (`Merger.threshold_for`, the calibration of
documents' nearest-neighbour similarities): one model's 0.85 can be another's 0.7.
A group of duplicates counts as one
document found at its best rank in each version. At least `min_per_version`
results of each version are kept when that version returned them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from rollout.backends import Hit

log = logging.getLogger(__name__)

RRF_K = 60  # the constant of the RRF paper


@dataclass(frozen=True)
class MergedHit:
    hit: Hit                          # the group's representative (its best-fused document)
    score: float                      # RRF score of the group
    ranks: Mapping[str, int]          # version -> best 1-based rank of any member
    similarities: Mapping[str, float]  # version -> that member's cosine in the version's own space
    duplicates: tuple[str, ...] = ()  # other document IDs folded into this result

    @property
    def found_by(self) -> tuple[str, ...]:
        return tuple(sorted(self.ranks))

    def as_json(self) -> dict:
        return {**self.hit.as_json(), "rrf_score": round(self.score, 6), "found_by": list(self.found_by),
                "ranks": dict(self.ranks), "similarities": {v: round(s, 6) for v, s in self.similarities.items()},
                "duplicates": list(self.duplicates)}


@dataclass
class _Group:
    members: dict[str, dict[str, tuple[int, Hit]]] = field(default_factory=dict)  # id -> version -> (rank, hit)

    def best(self) -> dict[str, tuple[int, Hit]]:
        best: dict[str, tuple[int, Hit]] = {}
        for by_version in self.members.values():
            for version, (rank, hit) in by_version.items():
                if version not in best or rank < best[version][0]:
                    best[version] = (rank, hit)
        return best


def _groups(results: Mapping[str, Sequence[Hit]], duplicate_pairs: Iterable[tuple[str, str]]) -> list[_Group]:
    parent: dict[str, str] = {}

    def find(item: str) -> str:
        parent.setdefault(item, item)
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    found = {hit.id for hits in results.values() for hit in hits}
    for a, b in duplicate_pairs:
        if a in found and b in found:
            parent[find(a)] = find(b)
    groups: dict[str, _Group] = {}
    for version, hits in results.items():
        for rank, hit in enumerate(hits, 1):
            group = groups.setdefault(find(hit.id), _Group())
            group.members.setdefault(hit.id, {}).setdefault(version, (rank, hit))
    return list(groups.values())


def _fused(group: _Group, rrf_k: int) -> MergedHit:
    best = group.best()
    score = sum(1.0 / (rrf_k + rank) for rank, _ in best.values())

    def order(doc_id: str) -> tuple[float, str]:  # the member's own fused score, best first
        return -sum(1.0 / (rrf_k + rank) for rank, _ in group.members[doc_id].values()), doc_id

    representative = min(group.members, key=order)
    rep_versions = group.members[representative]
    hit = min(rep_versions.values(), key=lambda rank_hit: rank_hit[0])[1]
    return MergedHit(hit=hit, score=score, ranks={v: rank for v, (rank, _) in best.items()},
                     similarities={v: h.similarity for v, (_, h) in best.items()},
                     duplicates=tuple(sorted(set(group.members) - {representative})))


def fuse(results: Mapping[str, Sequence[Hit]], k: int, *, duplicate_pairs: Iterable[tuple[str, str]] = (),
         min_per_version: int = 0, rrf_k: int = RRF_K) -> list[MergedHit]:
    """The top `k` fused results, each version holding at least `min_per_version` when it has them."""
    ranked = sorted((_fused(g, rrf_k) for g in _groups(results, duplicate_pairs)),
                    key=lambda m: (-m.score, m.hit.id))
    selected, rest = ranked[:k], ranked[k:]
    versions = [v for v in results if results[v]]
    per_version_cap = k // len(versions) if versions else 0
    quota = {v: min(min_per_version, per_version_cap, sum(1 for m in ranked if v in m.ranks)) for v in versions}

    def count(version: str) -> int:
        return sum(1 for m in selected if version in m.ranks)

    for version in versions:
        candidates = [m for m in rest if version in m.ranks]
        while count(version) < quota[version] and candidates:
            removable = [m for m in selected
                         if version not in m.ranks and all(count(u) > quota[u] for u in m.ranks)]
            if not removable:
                break
            selected.remove(min(removable, key=lambda m: (m.score, m.hit.id)))
            selected.append(candidates.pop(0))
    return sorted(selected, key=lambda m: (-m.score, m.hit.id))


class NearDuplicates:
    """Pairs of result documents whose stored embeddings are near-identical in every version holding both.

    `table_of` names a version's embeddings table (the registry's snapshot, read at each call), so the
    versions compared are whichever answered, not the pair the process started with.
    """

    def __init__(self, pool: ConnectionPool, table_of: Callable[[str], str]):
        self.pool = pool
        self.table_of = table_of
        self._sql: dict[tuple[str, ...], str] = {}  # one statement per list of tables, built once

    def statement(self, tables: Sequence[str]) -> str:
        """Pairs near in every table, each table at its own threshold (`threshold_<n>`)."""
        key = tuple(tables)
        cached = self._sql.get(key)
        if cached is not None:
            return cached
        per_table = [f"""SELECT a.document_id AS a, b.document_id AS b,
                                1 - (a.embedding <=> b.embedding) >= %(threshold_{n})s AS near
                         FROM {table} a JOIN {table} b ON a.document_id < b.document_id
                         WHERE a.document_id = ANY(%(ids)s) AND b.document_id = ANY(%(ids)s)"""
                     for n, table in enumerate(key)]
        sql = self._sql[key] = (f"SELECT a, b FROM ({' UNION ALL '.join(per_table)}) pairs "
                                "GROUP BY a, b HAVING bool_and(near)")
        return sql

    def tables(self, versions: Iterable[str]) -> dict[str, str]:
        """Version -> its embeddings table, now."""
        return {version: self.table_of(version) for version in versions}

    def pairs(self, ids: Iterable[str], threshold: float | Mapping[str, float],
              versions: Sequence[str]) -> set[tuple[str, str]]:
        """Near-duplicate pairs among `ids` in `versions`, at one threshold or one per version (each on its
        own scale); empty (no content dedupe) when the database cannot answer."""
        ids = sorted(set(ids))
        if len(ids) < 2 or not versions:
            return set()
        per_version = threshold if isinstance(threshold, Mapping) else dict.fromkeys(versions, threshold)
        tables = self.tables(versions)
        sql = self.statement(list(tables.values()))
        params: dict[str, object] = {f"threshold_{n}": per_version[v] for n, v in enumerate(tables)}
        try:
            with self.pool.connection() as conn:
                rows = conn.execute(sql, {"ids": ids, **params}).fetchall()
        except (psycopg.Error, PoolTimeout) as exc:
            log.warning("near-duplicate check failed, merging by document id only: %s", exc)
            return set()
        return {(a, b) for a, b in rows}


class Merger:
    """Merged mode's policy: the near-duplicate threshold, the per-version minimum and RRF's constant."""

    def __init__(self, duplicates: NearDuplicates | None, *, threshold: float = 0.85, min_per_version: int = 3,
                 rrf_k: int = RRF_K):
        self.duplicates = duplicates
        self.threshold = threshold  # on the baseline's scale
        self.min_per_version = min_per_version
        self.rrf_k = rrf_k
        # the threshold on a version's own scale (the calibration sets this; unchanged until then)
        self.threshold_for: Callable[[str, float], float] = lambda version, threshold: threshold

    def thresholds(self, versions: Iterable[str]) -> dict[str, float]:
        """The near-duplicate threshold of each version the check reads, on that version's scale."""
        return {version: self.threshold_for(version, self.threshold) for version in versions}

    def merge(self, results: Mapping[str, Sequence[Hit]], k: int) -> list[MergedHit]:
        pairs: Iterable[tuple[str, str]] = ()
        if self.duplicates is not None and len(results) > 1:
            pairs = self.duplicates.pairs((hit.id for hits in results.values() for hit in hits),
                                          self.thresholds(list(results)), list(results))
        return fuse(results, k, duplicate_pairs=pairs, min_per_version=self.min_per_version, rrf_k=self.rrf_k)
