"""Per-model calibration: a score on the baseline's scale, read on another version's scale.

Two embedding models put cosine similarity on different scales (one model's 0.35 can mean
what another's 0.8 means), so a client's `min_similarity` is read on the *baseline's*
scale and mapped to the answering version's by quantiles: a threshold the baseline's best
result clears in q % of queries becomes the score the other version's best result clears in
q % of queries. The scales are learned from query_log: shadow pairs first (both versions
scored the same queries, the fairest comparison), each version's own traffic when there
are too few pairs. They are learned again in the background (the runtime's periodic tick),
never while a query waits. Each version's scores are its best result's similarity per query (the
score `min_similarity` most often decides on). Until a version has `min_samples` scores
the threshold is passed unchanged: there is nothing to map it with.

A calibrated candidate abstains (returns nothing over the threshold) as often as the
baseline does; `abstain_rates` compares the two on the same window.

Thresholds on the similarity of two *documents* (merged mode's near-duplicate check) are
mapped the same way on a second pair of scales: each version's nearest-neighbour similarity of
a random sample of its documents (a query and its best result sit lower on a model's scale than
two near-copies, so the query scores would map a document threshold far too low). Above a
scale's highest quantile a score is mapped linearly towards 1, where every model puts the
same vector.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg_pool import PoolTimeout

from rollout.database import read_snapshot

log = logging.getLogger(__name__)

GRID = np.linspace(0.0, 1.0, 201)  # the quantiles kept per version


@dataclass(frozen=True)
class ScoreScale:
    """One version's score distribution, as its quantiles on GRID."""

    version: str
    quantiles: np.ndarray
    samples: int
    source: str  # shadow_pairs | traffic

    @classmethod
    def learn(cls, version: str, scores: Sequence[float], source: str) -> ScoreScale:
        values = np.asarray(scores, dtype=float)
        return cls(version, np.quantile(values, GRID), len(values), source)

    def rank(self, score: float) -> float:
        """Share of this version's scores below `score` (0-1), interpolated between quantiles."""
        q = self.quantiles
        if score <= q[0]:
            return 0.0
        if score >= q[-1]:
            return 1.0
        unique, first = np.unique(q, return_index=True)  # flat stretches: take the lowest share
        return float(np.interp(score, unique, GRID[first]))

    def score_at(self, share: float) -> float:
        return float(np.interp(share, GRID, self.quantiles))


def map_score(score: float, source: ScoreScale, target: ScoreScale) -> float:
    """`score` on `source`'s scale, expressed on `target`'s (the same quantile; above `source`'s highest
    score, the same share of the way to 1)."""
    if source.version == target.version:
        return score
    top, target_top = float(source.quantiles[-1]), float(target.quantiles[-1])
    if top < score and top < 1 and target_top < 1:
        return target_top + (min(score, 1.0) - top) / (1 - top) * (1 - target_top)
    return target.score_at(source.rank(score))


class Calibration:
    """The learned scales, refreshed from query_log; maps thresholds from the baseline's scale.

    `baseline` is a name or a function giving the baseline now (the registry's snapshot): the scale
    read is always the current baseline's, and a change of baseline makes the next tick learn again.
    """

    def __init__(self, pool, baseline: str | Callable[[], str], *, window_s: float = 7 * 86400,
                 min_samples: int = 200, max_samples: int = 20000, refresh_s: float = 600,
                 statement_timeout_ms: int = 5000, tables: Callable[[], Mapping[str, str]] | None = None,
                 neighbour_samples: int = 500):
        self.pool = pool
        self.tables = tables  # version -> embeddings table, for the documents' neighbour scales
        self.neighbour_samples = neighbour_samples
        self.neighbour_scales: dict[str, ScoreScale] = {}
        self._baseline: Callable[[], str] = baseline if callable(baseline) else (lambda: baseline)
        self._learned_for: str | None = None  # the baseline when the scales were last learned
        self.window_s = window_s
        self.min_samples = min_samples
        self.max_samples = max_samples
        self.refresh_s = refresh_s
        self.statement_timeout_ms = statement_timeout_ms
        self.scales: dict[str, ScoreScale] = {}
        self._learned_at = 0.0
        self._lock = threading.Lock()

    @property
    def baseline(self) -> str:
        return self._baseline()

    def learn(self, samples: Mapping[str, tuple[Sequence[float], str]]) -> None:
        """Set the scales from scores per version: {version: (scores, source)}; too few scores: no scale."""
        self.scales = {v: ScoreScale.learn(v, scores, source) for v, (scores, source) in samples.items()
                       if len(scores) >= self.min_samples}
        self._learned_at = time.monotonic()
        self._learned_for = self.baseline

    def learn_neighbours(self, samples: Mapping[str, Sequence[float]]) -> None:
        """Set the documents' scales from nearest-neighbour similarities per version; too few: no scale."""
        self.neighbour_scales = {v: ScoreScale.learn(v, scores, "neighbours") for v, scores in samples.items()
                                 if len(scores) >= self.min_samples}

    def duplicate_threshold_for(self, version: str, baseline_threshold: float) -> float:
        """A document-to-document threshold (baseline scale) for `version`; unchanged while a scale is missing."""
        source, target = self.neighbour_scales.get(self.baseline), self.neighbour_scales.get(version)
        if version == self.baseline or source is None or target is None:
            return baseline_threshold
        return map_score(baseline_threshold, source, target)

    def threshold_for(self, version: str, baseline_threshold: float | None) -> float | None:
        """A client's threshold (baseline scale) for `version`; unchanged while a scale is missing."""
        if baseline_threshold is None or version == self.baseline:
            return baseline_threshold
        source, target = self.scales.get(self.baseline), self.scales.get(version)
        if source is None or target is None:
            return baseline_threshold
        return map_score(baseline_threshold, source, target)

    def abstain_rates(self, baseline_threshold: float, samples: Mapping[str, Sequence[float]]) -> dict[str, float]:
        """Per version, the share of `samples` (best scores) under the threshold mapped to its scale."""
        rates = {}
        for version, scores in samples.items():
            values = np.asarray(scores, dtype=float)
            if len(values) == 0:
                continue
            threshold = self.threshold_for(version, baseline_threshold)
            rates[version] = float(np.mean(values < threshold))
        return rates

    def describe(self) -> dict:
        return {v: {"samples": s.samples, "source": s.source, "p10": s.score_at(0.1), "p50": s.score_at(0.5),
                    "p90": s.score_at(0.9)} for v, s in self.scales.items()}

    # -- query_log -------------------------------------------------------------------------------
    def refresh_if_due(self, *, wait: bool = True) -> None:
        """Learn the scales again when `refresh_s` has passed or the baseline changed (a background tick
        calls this, never a query).

        `wait=False` reads query_log on a thread of its own, so the caller's loop (the flag
        replicator's tick) is never held by a slow database.
        """
        if self.pool is None:
            return
        if time.monotonic() - self._learned_at < self.refresh_s and self._learned_for == self.baseline:
            return
        if not self._lock.acquire(blocking=False):
            return  # a refresh is under way: use the scales we have
        if wait:
            self._refresh()
        else:
            threading.Thread(target=self._refresh, name="calibration-refresh", daemon=True).start()

    def _refresh(self) -> None:
        try:
            self.learn(self.read_samples())
            if self.tables is not None:
                self.learn_neighbours(self.read_neighbours(self.tables()))
        except (psycopg.Error, PoolTimeout) as exc:  # keep the last scales; a threshold never fails a query
            self._learned_at = time.monotonic()
            self._learned_for = self.baseline  # tried for this baseline: again after refresh_s
            log.warning("calibration not refreshed: %s", exc)
        finally:
            self._lock.release()

    def read_neighbours(self, tables: Mapping[str, str]) -> dict[str, list[float]]:
        """Per version, the cosine of a random sample of its documents to their nearest other document
        (pgvector's index answers each; no vector leaves the database)."""
        samples = {}
        with read_snapshot(self.pool, self.statement_timeout_ms) as conn:
            for version, table in tables.items():
                rows = conn.execute(
                    f"SELECT nearest.similarity FROM (SELECT document_id, embedding FROM {table} "
                    f"ORDER BY random() LIMIT %(n)s) sample CROSS JOIN LATERAL ("
                    f"SELECT 1 - (other.embedding <=> sample.embedding) AS similarity FROM {table} other "
                    f"WHERE other.document_id <> sample.document_id "
                    f"ORDER BY other.embedding <=> sample.embedding LIMIT 1) nearest",
                    {"n": self.neighbour_samples}).fetchall()
                samples[version] = [float(similarity) for (similarity,) in rows]
        return samples

    def read_samples(self) -> dict[str, tuple[list[float], str]]:
        """Best scores per version: shadow pairs when there are enough, else the version's own traffic."""
        window = {"secs": self.window_s, "limit": self.max_samples}
        with read_snapshot(self.pool, self.statement_timeout_ms) as conn:
            pairs = conn.execute(
                "SELECT served_version, top_similarity, other_version, other_top_similarity FROM query_log "
                "WHERE logged_at >= now() - make_interval(secs => %(secs)s) AND mode = 'routed' "
                "AND top_similarity IS NOT NULL AND other_top_similarity IS NOT NULL "
                "ORDER BY logged_at DESC LIMIT %(limit)s", window).fetchall()
            traffic = conn.execute(
                "SELECT served_version, top_similarity FROM query_log "
                "WHERE logged_at >= now() - make_interval(secs => %(secs)s) AND mode = 'routed' "
                "AND top_similarity IS NOT NULL ORDER BY logged_at DESC LIMIT %(limit)s", window).fetchall()
        shadow: dict[str, list[float]] = {}
        for served, score, other, other_score in pairs:
            shadow.setdefault(served, []).append(score)
            shadow.setdefault(other, []).append(other_score)
        own: dict[str, list[float]] = {}
        for served, score in traffic:
            own.setdefault(served, []).append(score)
        samples = {}
        for version in set(shadow) | set(own):
            if len(shadow.get(version, ())) >= self.min_samples:
                samples[version] = (shadow[version], "shadow_pairs")
            else:
                samples[version] = (own.get(version, []), "traffic")
        return samples
