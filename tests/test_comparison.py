"""The agreement measures on hand-built result lists whose values are worked out by hand."""

import numpy as np
import pytest
from scipy.stats import kendalltau

from rollout.comparison import compare, kendall_tau_shared, overlap_at_k, rank_biased_overlap, top1_agreement


@pytest.mark.parametrize("a, b, k, expected", [
    (["a", "b", "c"], ["a", "b", "c"], None, 1.0),
    (["a", "b", "c"], ["d", "e", "f"], None, 0.0),
    (["a", "b", "c", "d"], ["b", "a", "d", "e"], None, 3 / 5),   # {a,b,d} shared, 5 distinct
    (["a", "b", "c", "d"], ["b", "a", "d", "e"], 2, 1.0),        # top 2: {a,b} both
    (["a", "b"], ["a", "b", "c", "d"], None, 2 / 4),             # lists of different lengths
    ([], [], None, 1.0),                                          # both empty: they agree
    (["a"], [], None, 0.0),
])
def test_overlap_at_k_is_the_jaccard_index_of_the_top_k(a, b, k, expected):
    assert overlap_at_k(a, b, k) == pytest.approx(expected)


def test_rbo_of_two_swapped_items():
    # depth 1: no overlap (A_1 = 0); depth 2: {A,B} both (A_2 = 1). With p = 0.5:
    # (1-p)/p * (0*0.5 + 1*0.25) + (X_2/2) * p^2 = 0.25 + 0.25 = 0.5
    assert rank_biased_overlap(["A", "B"], ["B", "A"], p=0.5) == pytest.approx(0.5)


def test_rbo_of_a_swap_below_the_top():
    # A_1 = 1, A_2 = 1/2, A_3 = 1; p = 0.9:
    # (0.1/0.9) * (0.9 + 0.5*0.81 + 0.729) + 1 * 0.729 = 0.226 + 0.729 = 0.955
    assert rank_biased_overlap(["A", "B", "C"], ["A", "C", "B"], p=0.9) == pytest.approx(0.955)


def test_rbo_weighs_the_top_more_than_the_bottom():
    base = list("abcdefghij")
    swapped_top = ["b", "a"] + base[2:]
    swapped_bottom = base[:8] + ["j", "i"]
    assert rank_biased_overlap(base, swapped_bottom) > rank_biased_overlap(base, swapped_top)


def test_rbo_of_uneven_lists_extrapolates_from_the_shorter():
    # S = [A], L = [A, B]; s = 1, l = 2, X_1 = 1, X_2 = 1 (B is not in S); p = 0.5.
    # (1-p)/p * (X_1/1*p + X_2/2*p^2 + X_s*(2-1)/(1*2)*p^2) + ((X_l - X_s)/l + X_s/s) * p^l
    # = 1 * (0.5 + 0.125 + 0.125) + (0 + 1) * 0.25 = 1.0: L only extends S, so they agree fully
    assert rank_biased_overlap(["A"], ["A", "B"], p=0.5) == pytest.approx(1.0)
    # S = [B], L = [A, B]: X_1 = X_s = 0, X_2 = X_l = 1 → 1 * (0 + 1/2*0.25 + 0) + (1/2 + 0) * 0.25 = 0.25
    assert rank_biased_overlap(["B"], ["A", "B"], p=0.5) == pytest.approx(0.25)


@pytest.mark.parametrize("a, b, expected", [
    (list("abcd"), list("abcd"), 1.0), (list("abcd"), list("efgh"), 0.0), ([], [], 1.0), (["a"], [], 0.0)])
def test_rbo_bounds(a, b, expected):
    assert rank_biased_overlap(a, b) == pytest.approx(expected)


def test_rbo_refuses_a_persistence_outside_0_1():
    with pytest.raises(ValueError):
        rank_biased_overlap(["a"], ["a"], p=1.0)


def test_kendall_tau_on_the_shared_ids_only():
    # shared: a, b, c (x and y are ignored); order in b: c, a, b → pairs (a,b) concordant,
    # (a,c) and (b,c) discordant: tau = (1 - 2) / 3
    assert kendall_tau_shared(["a", "x", "b", "c"], ["c", "a", "y", "b"]) == pytest.approx(-1 / 3)
    assert kendall_tau_shared(list("abc"), list("abc")) == pytest.approx(1.0)
    assert kendall_tau_shared(list("abc"), list("cba")) == pytest.approx(-1.0)
    assert kendall_tau_shared(["a", "b"], ["a", "z"]) is None  # one shared id: no ranking to compare


def test_kendall_tau_agrees_with_scipy_on_random_rankings():
    rng = np.random.default_rng(3)
    for _ in range(200):
        ids = [f"d{n}" for n in range(rng.integers(2, 30))]
        a = list(rng.permutation(ids))
        b = list(rng.permutation(ids))[: rng.integers(2, len(ids) + 1)] + ["other"]
        shared = [x for x in a if x in b]
        expected = kendalltau(range(len(shared)), [b.index(x) for x in shared]).statistic if len(shared) > 1 else None
        got = kendall_tau_shared(a, b)
        assert got == pytest.approx(expected) if expected is not None and not np.isnan(expected) else got is None


def test_top1_agreement():
    assert top1_agreement(["a", "b"], ["a", "c"]) is True
    assert top1_agreement(["a", "b"], ["b", "a"]) is False
    assert top1_agreement([], ["a"]) is None


def test_compare_takes_the_top_k_of_each_list():
    result = compare(list("abcdz"), list("badez"), k=4)  # top 4: abcd vs bade
    assert result.overlap == pytest.approx(3 / 5)
    assert result.shared == 3
    assert result.top1_agreement is False
    # shared in order a, b, d; in the other list b, a, d → one discordant pair of three
    assert result.kendall_tau == pytest.approx(1 / 3)
    assert 0 < result.rbo < 1
    assert result.as_json()["overlap"] == 0.6
