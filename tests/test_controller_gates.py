"""The rollout's gates on constructed evidence: pass, fail, not enough data, and the exact threshold values.

Pure and seeded: every sample comes from a fixed-seed generator, so each assertion is deterministic.
"""

import math

import numpy as np
import pytest
from scipy.stats import binomtest, chi2, chisquare, ks_2samp

from rollout.controller import Evidence, GateStatus, Outcome, Thresholds, VersionEvidence
from rollout.controller.bootstrap import order_index, quantile, quantile_replicates
from rollout.controller.gates import (alerts_gate, breaker_gate, consistency_gate, coverage_gate,
                                      critical_errors_gate, error_rate_gate, latency_gate, quality_gate,
                                      sample_ratio_gate, stage_time_gate)
from rollout.controller.gates.failures import rate_bounds
from rollout.controller.gates.split import sequential_p_value

T = Thresholds(min_samples=2000, min_samples_to_roll_back=300, min_shadow_samples=100)
MEDIAN, SIGMA = 0.120, 0.5


def latencies(n, seed, scale=1.0, sigma=SIGMA):
    return np.random.default_rng(seed).lognormal(math.log(MEDIAN * scale), sigma, n)


def similarities(n, seed, mean=0.78, concentration=30):
    return np.random.default_rng(seed).beta(mean * concentration, (1 - mean) * concentration, n)


def version(n=0, errors=0, lat=None, sims=None, **more):
    return VersionEvidence(requests=n, errors=errors, latencies_s=lat if lat is not None else [],
                           top_similarities=sims if sims is not None else [], **more)


def evidence(v1=None, v2=None, percentage=50.0, elapsed=3600.0, **more):
    return Evidence(percentage=percentage, window_started_at=1000.0, evaluated_at=1000.0 + elapsed,
                    v1=v1 or version(), v2=v2 or version(), **more)


def latency_evidence(n1, n2, percentage=50.0, **v2_shape):
    return evidence(version(n1, lat=latencies(n1, 1)), version(n2, lat=latencies(n2, 2, **v2_shape)), percentage)


# -- the quantile bootstrap ---------------------------------------------------------------

@pytest.mark.parametrize("n, q, k", [(100, 0.95, 95), (101, 0.95, 96), (1, 0.95, 1), (20, 0.5, 10), (3, 0.99, 3)])
def test_quantile_is_the_inverted_cdf_order_statistic(n, q, k):
    values = np.sort(np.random.default_rng(n).random(n))
    assert order_index(n, q) == k
    assert quantile(values, q) == values[k - 1] == np.quantile(values, q, method="inverted_cdf")


def test_beta_replicates_match_brute_force_resampling():
    sample = np.sort(latencies(300, 7))
    rng = np.random.default_rng(8)
    brute = np.quantile(rng.choice(sample, size=(4000, len(sample)), replace=True), 0.95, axis=1,
                        method="inverted_cdf")
    ours = quantile_replicates(sample, 0.95, 4000, np.random.default_rng(9))
    assert ks_2samp(brute, ours).pvalue > 0.01
    assert set(np.unique(ours)) <= set(sample)


# -- latency ----------------------------------------------------------------------------

def test_latency_needs_the_minimum_samples_on_both_sides():
    short_v2 = latency_gate(latency_evidence(2000, 1999), T)
    assert short_v2.status is GateStatus.NOT_ENOUGH_DATA and "V2 has 1999 of 2000" in short_v2.reason
    short_v1 = latency_gate(latency_evidence(10, 5000, percentage=99.0), T)
    assert short_v1.status is GateStatus.NOT_ENOUGH_DATA and "V1 has 10 of 2000" in short_v1.reason


def test_a_healthy_v2_passes_latency():
    result = latency_gate(latency_evidence(18000, 2000, percentage=10.0), T)
    assert result.status is GateStatus.PASSED, result.reason
    assert result.values["p95_ratio_upper"] <= 1 + T.latency_margin
    assert result.values["mann_whitney_p"] > T.rollback_alpha


def test_every_request_25_percent_slower_fails_on_the_typical_request_first():
    """At 2,000 samples a side the p95's interval is still too wide; the rank test already sees the shift."""
    result = latency_gate(latency_evidence(2000, 2000, scale=1.25), T)
    assert result.status is GateStatus.FAILED and result.outcome is Outcome.ROLLBACK
    assert result.values["mann_whitney_p"] < T.rollback_alpha and "Mann-Whitney" in result.reason
    assert result.values["p95_ratio_lower"] <= 1.1 < result.values["p95_ratio"]


def test_every_request_25_percent_slower_fails_on_both_tests_with_more_samples():
    result = latency_gate(latency_evidence(8000, 8000, scale=1.25), T)
    assert result.status is GateStatus.FAILED
    assert result.values["p95_ratio_lower"] > 1.1 and result.values["mann_whitney_p"] < T.rollback_alpha
    assert "+10 % margin" in result.reason and "Mann-Whitney" in result.reason


def test_a_slower_tail_alone_fails_on_the_p95_not_on_the_typical_request():
    tail = SIGMA + math.log(1.25) / 1.6448536
    result = latency_gate(latency_evidence(20000, 20000, sigma=tail), T)
    assert result.status is GateStatus.FAILED
    assert result.values["p95_ratio_lower"] > 1.1
    assert result.values["mann_whitney_p"] > 0.5 and "Mann-Whitney" not in result.reason


def test_a_v2_at_the_margin_is_neither_passed_nor_rolled_back():
    result = latency_gate(latency_evidence(20000, 20000, scale=1.10), T)
    assert result.status is GateStatus.NOT_ENOUGH_DATA, result.reason
    assert "not yet shown within +10 %" in result.reason


def test_ceiling_fails_a_slow_v2_even_when_v1_is_as_slow():
    slow = evidence(version(3000, lat=latencies(3000, 1, scale=4)), version(3000, lat=latencies(3000, 2, scale=4)))
    result = latency_gate(slow, T)
    assert result.status is GateStatus.FAILED and "over the 800 ms ceiling" in result.reason
    assert 0.9 < result.values["p95_ratio"] < 1.1


@pytest.mark.parametrize("seconds, status", [(0.8, GateStatus.FAILED), (0.7999, GateStatus.PASSED)])
def test_ceiling_at_exactly_800_ms_is_a_breach(seconds, status):
    flat = np.full(2000, seconds)
    assert latency_gate(evidence(version(2000, lat=flat), version(2000, lat=flat)), T).status is status


@pytest.mark.parametrize("v2_seconds, status", [(0.5, GateStatus.PASSED), (0.5001, GateStatus.FAILED)])
def test_margin_at_exactly_its_value_is_allowed(v2_seconds, status):
    thresholds = Thresholds(min_samples=100, min_samples_to_roll_back=100, latency_margin=0.25)
    result = latency_gate(evidence(version(100, lat=np.full(100, 0.4)), version(100, lat=np.full(100, v2_seconds))),
                          thresholds)
    assert result.status is status, result.reason


@pytest.mark.parametrize("v1", [version(), version(5, lat=latencies(5, 1))])
def test_at_100_percent_only_the_ceiling_is_judged(v1):
    result = latency_gate(evidence(v1, version(2000, lat=latencies(2000, 3)), percentage=100.0), T)
    assert result.status is GateStatus.PASSED and "ceiling only" in result.reason
    assert "p95_ratio" not in result.values


def test_latency_is_deterministic_for_the_same_evidence():
    same = latency_evidence(2000, 2000, scale=1.05)
    assert latency_gate(same, T) == latency_gate(same, T)


# -- quality ----------------------------------------------------------------------------

def quality_evidence(n, mean, overlaps=()):
    return evidence(v2=version(n, sims=similarities(n, 4, mean)), shadow_overlaps=overlaps)


def test_quality_passes_a_healthy_v2_without_shadow_data():
    result = quality_gate(quality_evidence(2000, 0.78), T)
    assert result.status is GateStatus.PASSED and "no shadow data" in result.reason
    assert result.values["similarity_lower"] > 0.7


def test_a_clear_similarity_drop_rolls_back_before_the_minimum_samples():
    result = quality_gate(quality_evidence(300, 0.68), T)
    assert result.status is GateStatus.FAILED and result.values["similarity_upper"] <= 0.7


@pytest.mark.parametrize("n, mean", [(299, 0.5), (1999, 0.78)])
def test_quality_waits_below_its_sample_counts(n, mean):
    assert quality_gate(quality_evidence(n, mean), T).status is GateStatus.NOT_ENOUGH_DATA


@pytest.mark.parametrize("value, status", [(0.7, GateStatus.FAILED), (0.7001, GateStatus.PASSED)])
def test_similarity_floor_at_exactly_its_value_fails(value, status):
    assert quality_gate(evidence(v2=version(2000, sims=np.full(2000, value))), T).status is status


def test_shadow_overlap_is_judged_when_present():
    rng = np.random.default_rng(5)
    good = quality_gate(quality_evidence(2000, 0.78, rng.beta(7.2, 2.8, 400)), T)
    assert good.status is GateStatus.PASSED and good.values["shadow_overlap"] > 0.5
    low = quality_gate(quality_evidence(2000, 0.78, rng.beta(3, 7, 400)), T)
    assert low.status is GateStatus.FAILED and "shadow overlap" in low.reason
    few = quality_gate(quality_evidence(2000, 0.78, rng.beta(7.2, 2.8, 99)), T)
    assert few.status is GateStatus.NOT_ENOUGH_DATA and "99 of 100" in few.reason


# -- errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("requests, status", [(2995, GateStatus.PASSED), (2994, GateStatus.NOT_ENOUGH_DATA)])
def test_zero_errors_prove_compliance_from_2995_requests(requests, status):
    """The rule of three: with no error, the 95 % upper bound drops below 0.1 % at 2,995 requests."""
    assert error_rate_gate(evidence(v2=version(requests)), T).status is status


def test_a_clearly_high_error_rate_rolls_back_early():
    result = error_rate_gate(evidence(v2=version(600, errors=6)), T)
    assert result.status is GateStatus.FAILED and result.values["error_rate_v2_lower"] >= 0.001


def test_an_ambiguous_error_rate_holds():
    result = error_rate_gate(evidence(v2=version(1000, errors=2)), T)
    assert result.status is GateStatus.NOT_ENOUGH_DATA and "not yet shown below 0.10 %" in result.reason


def test_no_v2_requests_is_not_enough_data():
    assert error_rate_gate(evidence(), T).status is GateStatus.NOT_ENOUGH_DATA


@pytest.mark.parametrize("errors, requests", [(0, 3000), (3, 5000), (40, 2000), (7, 7)])
def test_rate_bounds_are_scipy_clopper_pearson(errors, requests):
    interval = binomtest(errors, requests).proportion_ci(confidence_level=0.90, method="exact")
    assert rate_bounds(errors, requests, 0.95, 0.95) == pytest.approx((interval.low, interval.high), rel=1e-6)


def test_critical_errors_hold_the_stage():
    passed = critical_errors_gate(evidence(v2=version(10, critical_errors=0)), T, 86400)
    held = critical_errors_gate(evidence(v2=version(10, critical_errors=1)), T, 86400)
    two = evidence(v2=version(10, critical_errors=2))
    allowed = critical_errors_gate(two, Thresholds(max_critical_errors=2), 86400)
    assert passed.status is GateStatus.PASSED and allowed.status is GateStatus.PASSED
    assert held.status is GateStatus.FAILED and held.outcome is Outcome.HOLD and "last 24 h" in held.reason


# -- sample ratio -----------------------------------------------------------------------

def split_evidence(v1, v2, percentage=10.0, **more):
    return evidence(version(v1, **more.get("first", {})), version(v2, **more.get("second", {})), percentage)


def test_the_target_split_passes():
    result = sample_ratio_gate(split_evidence(9000, 1000), T)
    assert result.status is GateStatus.PASSED and result.values["p_value"] == pytest.approx(1.0)


def test_a_mismatch_pauses():
    result = sample_ratio_gate(split_evidence(9300, 700), T)
    assert result.status is GateStatus.FAILED and result.outcome is Outcome.PAUSE
    assert result.values["p_value"] == pytest.approx(chisquare([9300, 700], [9000, 1000]).pvalue)
    assert result.values["sequential_p_value"] < T.srm_alpha


def test_too_few_assignments_to_check():
    assert sample_ratio_gate(split_evidence(40, 4), T).status is GateStatus.NOT_ENOUGH_DATA


def test_assignments_count_instead_of_requests_when_given():
    mismatched_requests = split_evidence(9300, 700, first={"assigned": 900}, second={"assigned": 100})
    assert sample_ratio_gate(mismatched_requests, T).status is GateStatus.PASSED


@pytest.mark.parametrize("v1, status", [(0, GateStatus.PASSED), (3, GateStatus.FAILED)])
def test_at_100_percent_any_v1_assignment_is_a_mismatch(v1, status):
    assert sample_ratio_gate(split_evidence(v1, 5000, percentage=100.0), T).status is status


def test_the_sequential_test_stays_valid_under_repeated_looks():
    """Looking 50 times at growing counts: the fixed-sample chi-square false-alarms several times alpha,
    the sequential p-value at most alpha."""
    rng, alpha, runs = np.random.default_rng(11), 0.01, 1000
    looks = np.arange(200, 10001, 200)
    to_v2 = np.cumsum(rng.random((runs, looks[-1])) < 0.1, axis=1)[:, looks - 1]
    statistic = (to_v2 - 0.1 * looks) ** 2 / (0.1 * looks) + (to_v2 - 0.1 * looks) ** 2 / (0.9 * looks)
    chi_alarms = np.any(chi2.sf(statistic, 1) < alpha, axis=1).sum()
    seq_alarms = sum(any(sequential_p_value([n - k, k], [0.9, 0.1]) < alpha for n, k in zip(looks, run))
                     for run in to_v2.tolist())
    assert seq_alarms / runs <= alpha
    assert chi_alarms / runs > 2 * alpha


# -- consistency and facts --------------------------------------------------------------------

@pytest.mark.parametrize("v2, more, words", [
    (version(10, errors=11), {}, "more errors"),
    (version(-1), {}, "negative"),
    (version(2, lat=[0.1, float("nan")]), {}, "non-finite"),
    (version(2, lat=[0.1, -0.1]), {}, "negative or non-finite"),
    (version(3, lat=[0.1] * 4), {}, "more latency samples"),
    (version(2, sims=[0.5, 1.5]), {}, "outside [-1, 1]"),
    (version(2), {"shadow_overlaps": [0.5, 1.2]}, "shadow overlaps"),
    (version(2), {"percentage": 150.0}, "outside 0-100"),
    (version(2), {"elapsed": -5.0}, "ends before it starts"),
])
def test_impossible_evidence_pauses(v2, more, words):
    result = consistency_gate(evidence(v2=v2, **more))
    assert result.status is GateStatus.FAILED and result.outcome is Outcome.PAUSE and words in result.reason


def test_facts_from_the_caller():
    assert breaker_gate(evidence(breaker_closed=False, breaker_detail="half-open")).outcome is Outcome.ROLLBACK
    assert breaker_gate(evidence()).status is GateStatus.PASSED
    firing = alerts_gate(evidence(tripping_alerts=["V2HighErrorRate"]))
    assert firing.outcome is Outcome.ROLLBACK and "V2HighErrorRate" in firing.reason
    assert alerts_gate(evidence()).status is GateStatus.PASSED
    gap = coverage_gate(evidence(coverage_complete=False, coverage_detail="pricing 80 %"))
    assert gap.outcome is Outcome.HOLD and "pricing 80 %" in gap.reason
    assert coverage_gate(evidence()).status is GateStatus.PASSED


@pytest.mark.parametrize("elapsed, status", [(3599.0, GateStatus.NOT_ENOUGH_DATA), (3600.0, GateStatus.PASSED)])
def test_stage_time_at_exactly_the_minimum_passes(elapsed, status):
    assert stage_time_gate(evidence(elapsed=elapsed), 3600.0).status is status
