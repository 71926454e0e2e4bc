"""Ranking measures over one ranked list of document ids and its graded judgements.

A judgement maps a document id to a grade (0 = not relevant, 3 = answers the query);
documents without a grade count as 0. nDCG uses the exponential gain 2^grade - 1 with a
log2(rank + 1) discount, so one perfect answer outweighs several partial ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np


def dcg(grades: Sequence[float]) -> float:
    return sum((2.0 ** g - 1.0) / math.log2(rank + 1) for rank, g in enumerate(grades, start=1))


def ndcg(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """Discounted gain of the top k against the best possible order; 0 when nothing is relevant."""
    ideal = dcg(sorted((g for g in relevant.values() if g > 0), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg([relevant.get(doc, 0) for doc in ranked[:k]]) / ideal


def recall(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    """Share of the relevant documents (grade > 0) found in the top k."""
    wanted = {doc for doc, g in relevant.items() if g > 0}
    if not wanted:
        return 0.0
    return len(wanted.intersection(ranked[:k])) / len(wanted)


def reciprocal_rank(ranked: Sequence[str], relevant: Mapping[str, int]) -> float:
    """1 / rank of the first relevant document; 0 when none is listed."""
    for rank, doc in enumerate(ranked, start=1):
        if relevant.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def rank_of(ranked: Sequence[str], document: str) -> int | None:
    """1-based rank of one document, None when it is not in the list."""
    try:
        return list(ranked).index(document) + 1
    except ValueError:
        return None


def bootstrap_interval(values: Sequence[float], *, draws: int = 2000, confidence: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (queries resampled with replacement).

    For a paired comparison pass the per-query differences: resampling whole queries keeps
    each query's two measurements together, which is what makes the interval narrow.
    """
    data = np.asarray(values, dtype=float)
    if len(data) == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(draws, len(data)))].mean(axis=1)
    tail = (1 - confidence) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))
