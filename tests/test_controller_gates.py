"""The rollout's gates on constructed evidence: pass, fail, not enough data, and the exact threshold values.

Pure and seeded: every sample comes from a fixed-seed generator, so each assertion is deterministic.
"""

import math

import numpy as np
import pytest
from scipy.stats import chi2, chisquare

from rollout.controller import Evidence, GateStatus, Outcome, Thresholds, VersionEvidence
from rollout.controller.gates import (
    alerts_gate,
    breaker_gate,
    consistency_gate,
    coverage_gate,
    critical_errors_gate,
    error_rate_gate,
    latency_gate,
    quality_gate,
    sample_ratio_gate,
    stage_time_gate,
)
from rollout.controller.gates.registry import GATES, gate_alpha
from rollout.controller.gates.split import sequential_p_value

T = Thresholds(min_samples=2000, min_samples_to_roll_back=300, min_shadow_samples=100)
MEDIAN, SIGMA = 0.120, 0.5
ERRORS, LATENCY, QUALITY = (gate_alpha(g, T.rollback_alpha) for name in ("errors", "latency", "quality")
                            for g in GATES if g.name == name)


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


# -- latency ----------------------------------------------------------------------------

def test_latency_needs_samples_on_both_sides():
    early = latency_gate(latency_evidence(2000, 299), T, LATENCY)
    assert early.status is GateStatus.NOT_ENOUGH_DATA and "candidate has 299 of 300" in early.reason
    short_baseline = latency_gate(latency_evidence(10, 5000, percentage=99.0), T, LATENCY)
    assert short_baseline.status is GateStatus.NOT_ENOUGH_DATA and "baseline has 10 of 300" in short_baseline.reason
    to_pass = latency_gate(latency_evidence(2000, 1999), T, LATENCY)
    assert to_pass.status is GateStatus.NOT_ENOUGH_DATA and "candidate has 1999 of 2000" in to_pass.reason


def test_a_healthy_candidate_passes_latency():
    result = latency_gate(latency_evidence(40000, 8000, percentage=10.0), T, LATENCY)
    assert result.status is GateStatus.PASSED, result.reason
    assert result.values["p95_ratio_upper"] <= 1 + T.latency_margin
    assert result.limit == pytest.approx(1.1) and result.bound < 1.0


def test_every_request_25_percent_slower_fails_on_the_mean_first():
    """At 1,000 requests a side the p95's sequences still overlap; the mean already shows the shift."""
    result = latency_gate(latency_evidence(1000, 1000, scale=1.25), T, LATENCY)
    assert result.status is GateStatus.FAILED and result.outcome is Outcome.ROLLBACK
    assert result.values["mean_excess_lower_ms"] > 0 and "mean latency" in result.reason
    assert result.values["p95_ratio_lower"] <= 1.1 < result.values["p95_ratio"]


def test_a_slower_tail_alone_fails_on_the_p95_not_on_the_mean():
    tail = SIGMA + math.log(1.25) / 1.6448536
    result = latency_gate(latency_evidence(20000, 20000, sigma=tail), T, LATENCY)
    assert result.status is GateStatus.FAILED
    assert result.bound == result.values["p95_ratio_lower"] > 1.1
    assert result.values["mean_excess_lower_ms"] < 0 and "mean latency" not in result.reason


def test_a_candidate_at_the_margin_is_neither_passed_nor_rolled_back():
    result = latency_gate(latency_evidence(20000, 20000, scale=1.10), T, LATENCY)
    assert result.status is GateStatus.NOT_ENOUGH_DATA, result.reason
    assert "not yet shown within +10 %" in result.reason


def test_ceiling_fails_a_slow_candidate_even_when_the_baseline_is_as_slow():
    slow = evidence(version(3000, lat=latencies(3000, 1, scale=4)), version(3000, lat=latencies(3000, 2, scale=4)))
    result = latency_gate(slow, T, LATENCY)
    assert result.status is GateStatus.FAILED and "over the 800 ms ceiling" in result.reason
    assert 0.9 < result.values["p95_ratio"] < 1.1


@pytest.mark.parametrize("seconds, status", [(0.8, GateStatus.FAILED), (0.7999, GateStatus.PASSED)])
def test_ceiling_at_exactly_800_ms_is_a_breach(seconds, status):
    flat = np.full(2000, seconds)
    assert latency_gate(evidence(version(2000, lat=flat), version(2000, lat=flat)), T, LATENCY).status is status


@pytest.mark.parametrize("candidate_seconds, status", [(0.5, GateStatus.PASSED), (0.5001, GateStatus.FAILED)])
def test_margin_at_exactly_its_value_is_allowed(candidate_seconds, status):
    thresholds = Thresholds(min_samples=2000, min_samples_to_roll_back=100, latency_margin=0.25)
    result = latency_gate(evidence(version(2000, lat=np.full(2000, 0.4)),
                                   version(2000, lat=np.full(2000, candidate_seconds))), thresholds, LATENCY)
    assert result.status is status, result.reason


def test_at_100_percent_only_the_ceiling_is_judged():
    result = latency_gate(evidence(version(), version(2000, lat=latencies(2000, 3)), percentage=100.0), T, LATENCY)
    assert result.status is GateStatus.PASSED and "ceiling only" in result.reason
    assert "p95_ratio" not in result.values


# -- quality ----------------------------------------------------------------------------

def quality_evidence(n, mean, overlaps=()):
    return evidence(v2=version(n, sims=similarities(n, 4, mean)), shadow_overlaps=overlaps)


def test_quality_passes_a_healthy_candidate_without_shadow_data():
    result = quality_gate(quality_evidence(2000, 0.78), T, QUALITY)
    assert result.status is GateStatus.PASSED and "no shadow data" in result.reason
    assert result.values["similarity_lower"] > 0.7


def test_a_clear_similarity_drop_rolls_back_before_the_minimum_samples():
    result = quality_gate(quality_evidence(300, 0.68), T, QUALITY)
    assert result.status is GateStatus.FAILED and result.values["similarity_upper"] <= 0.7
    assert (result.statistic, result.bound, result.limit) == (result.values["similarity"],
                                                              result.values["similarity_upper"], 0.7)


@pytest.mark.parametrize("n, mean", [(299, 0.5), (1999, 0.78)])
def test_quality_waits_below_its_sample_counts(n, mean):
    assert quality_gate(quality_evidence(n, mean), T, QUALITY).status is GateStatus.NOT_ENOUGH_DATA


@pytest.mark.parametrize("value, status", [(0.7, GateStatus.FAILED), (0.7001, GateStatus.PASSED)])
def test_similarity_floor_at_exactly_its_value_fails(value, status):
    assert quality_gate(evidence(v2=version(2000, sims=np.full(2000, value))), T, QUALITY).status is status


def test_shadow_overlap_is_judged_when_present():
    rng = np.random.default_rng(5)
    good = quality_gate(quality_evidence(2000, 0.78, rng.beta(7.2, 2.8, 400)), T, QUALITY)
    assert good.status is GateStatus.PASSED and good.values["shadow_overlap"] > 0.5
    low = quality_gate(quality_evidence(2000, 0.78, rng.beta(3, 7, 400)), T, QUALITY)
    assert low.status is GateStatus.FAILED and "shadow overlap" in low.reason
    few = quality_gate(quality_evidence(2000, 0.78, rng.beta(7.2, 2.8, 99)), T, QUALITY)
    assert few.status is GateStatus.NOT_ENOUGH_DATA and "99 of 100" in few.reason


# -- errors -----------------------------------------------------------------------------

def first_passing(errors=0):
    """The fewest requests at which `errors` errors pass the error gate."""
    return next(n for n in range(100, 100_000, 100)
                if error_rate_gate(evidence(v2=version(n, errors=errors)), T, ERRORS).status is GateStatus.PASSED)


def test_zero_errors_prove_compliance_after_a_few_thousand_requests():
    n = first_passing()
    assert 3000 <= n <= 8000   # the fixed-sample rule of three needs 2,995; a sequence pays a little for looking
    assert error_rate_gate(evidence(v2=version(n - 100)), T, ERRORS).status is GateStatus.NOT_ENOUGH_DATA


def test_a_clearly_high_error_rate_rolls_back_early():
    result = error_rate_gate(evidence(v2=version(1000, errors=10)), T, ERRORS)
    assert result.status is GateStatus.FAILED and result.values["error_rate_candidate_lower"] >= 0.001
    assert result.bound == result.values["error_rate_candidate_lower"] and result.limit == 0.001


def test_an_ambiguous_error_rate_holds():
    result = error_rate_gate(evidence(v2=version(1000, errors=2)), T, ERRORS)
    assert result.status is GateStatus.NOT_ENOUGH_DATA and "not yet shown below 0.10 %" in result.reason


def test_no_candidate_requests_is_not_enough_data():
    assert error_rate_gate(evidence(), T, ERRORS).status is GateStatus.NOT_ENOUGH_DATA


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
def test_at_100_percent_any_baseline_assignment_is_a_mismatch(v1, status):
    assert sample_ratio_gate(split_evidence(v1, 5000, percentage=100.0), T).status is status


@pytest.mark.slow  # a simulation of many rollouts
def test_the_sequential_test_stays_valid_under_repeated_looks():
    """Looking 50 times at growing counts: the fixed-sample chi-square false-alarms several times alpha,
    the sequential p-value at most alpha."""
    rng, alpha, runs = np.random.default_rng(11), 0.01, 1000
    looks = np.arange(200, 10001, 200)
    to_v2 = np.cumsum(rng.random((runs, looks[-1])) < 0.1, axis=1)[:, looks - 1]
    statistic = (to_v2 - 0.1 * looks) ** 2 / (0.1 * looks) + (to_v2 - 0.1 * looks) ** 2 / (0.9 * looks)
    chi_alarms = np.any(chi2.sf(statistic, 1) < alpha, axis=1).sum()
    seq_alarms = sum(any(sequential_p_value([n - k, k], [0.9, 0.1]) < alpha for n, k in zip(looks, run, strict=False))
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
