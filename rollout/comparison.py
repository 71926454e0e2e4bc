"""How much two ranked result lists agree: the measures behind shadow queries, merged mode and `rollout compare`.

Pure functions over lists of document IDs, best first. The two versions' similarity
scores live in different embedding spaces and are not comparable, so every measure
here looks only at which documents come back and in what order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

RBO_PERSISTENCE = 0.9  # top-weighted: the first 10 ranks carry about 86 % of the weight


def overlap_at_k(a: Sequence[str], b: Sequence[str], k: int | None = None) -> float:
    """Jaccard index of the two top-k ID sets (1.0 when both are empty: they agree)."""
    top_a, top_b = set(a[:k]), set(b[:k])
    union = top_a | top_b
    return len(top_a & top_b) / len(union) if union else 1.0


def rank_biased_overlap(a: Sequence[str], b: Sequence[str], p: float = RBO_PERSISTENCE) -> float:
    """Extrapolated rank-biased overlap (Webber, Moffat & Zobel 2010, eq. 32), for lists of any lengths.

    1.0 for identical lists, 0.0 for disjoint ones; agreement near the top weighs
    more than agreement further down (persistence `p`). Both empty → 1.0.
    """
    if not 0 < p < 1:
        raise ValueError("the persistence p must be between 0 and 1")
    if not a and not b:
        return 1.0
    if not a or not b:
        return 0.0
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    s, n = len(short), len(long)  # the paper's s and l
    seen_short: set[str] = set()
    seen_long: set[str] = set()
    overlap = 0  # X_d: items shared by the two prefixes of depth d
    overlaps = [0]
    for d in range(1, n + 1):
        item_long = long[d - 1]
        if d <= s:
            item_short = short[d - 1]
            if item_short == item_long:
                overlap += 1
            else:
                overlap += (item_short in seen_long) + (item_long in seen_short)
            seen_short.add(item_short)
        elif item_long in seen_short:
            overlap += 1
        seen_long.add(item_long)
        overlaps.append(overlap)
    x_s, x_l = overlaps[s], overlaps[n]
    weighted = sum(overlaps[d] / d * p ** d for d in range(1, n + 1))
    weighted += sum(x_s * (d - s) / (s * d) * p ** d for d in range(s + 1, n + 1))
    value = (1 - p) / p * weighted + ((x_l - x_s) / n + x_s / s) * p ** n
    return min(1.0, max(0.0, value))  # floating-point sums may stray past the bounds by an ulp


def kendall_tau_shared(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Kendall's tau between the two rankings of the IDs both lists hold; None under two shared IDs.

    Positions in a result list are never tied, so tau-a and tau-b agree: (concordant − discordant)
    pairs over all pairs. Counted directly: for the short lists of a query this costs microseconds,
    where scipy.stats.kendalltau spends about 200 µs validating its input (the tests check the two agree).
    """
    position_b = {item: rank for rank, item in enumerate(b)}
    ranks = [position_b[item] for item in a if item in position_b]
    n = len(ranks)
    if n < 2:
        return None
    balance = sum(1 if ranks[i] < ranks[j] else -1 for i in range(n) for j in range(i + 1, n))
    return balance / (n * (n - 1) / 2)


def top1_agreement(a: Sequence[str], b: Sequence[str]) -> bool | None:
    """Whether both lists put the same document first; None when either is empty."""
    if not a or not b:
        return None
    return a[0] == b[0]


@dataclass(frozen=True, slots=True)
class Comparison:
    """Agreement between a primary list and another version's list for the same query."""

    overlap: float
    rbo: float
    kendall_tau: float | None
    top1_agreement: bool | None
    shared: int

    def as_json(self) -> dict:
        return {"overlap": round(self.overlap, 6), "rbo": round(self.rbo, 6),
                "kendall_tau": None if self.kendall_tau is None else round(self.kendall_tau, 6),
                "top1_agreement": self.top1_agreement, "shared": self.shared}


def compare(primary: Sequence[str], other: Sequence[str], k: int | None = None) -> Comparison:
    """Every measure at once, on the top `k` of each list."""
    a, b = list(primary[:k]), list(other[:k])
    return Comparison(overlap=overlap_at_k(a, b), rbo=rank_biased_overlap(a, b),
                      kendall_tau=kendall_tau_shared(a, b), top1_agreement=top1_agreement(a, b),
                      shared=len(set(a) & set(b)))
