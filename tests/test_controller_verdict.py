"""The verdict: gates combined into one outcome (the safe choice wins), explained, and stored as JSON."""

import json
import math

import numpy as np
import pytest

from rollout.controller import (
    Evidence,
    GateResult,
    GateStatus,
    Outcome,
    RolloutPlan,
    Thresholds,
    Verdict,
    VersionEvidence,
    judge,
)
from rollout.controller.gates.registry import GATES, gate_alpha
from rollout.controller.gates.relevance import RelevanceEvidence, Verdicts

PLAN = RolloutPlan(min_stage_s=3600, thresholds=Thresholds(min_samples=2000, min_samples_to_roll_back=300))
N = 10000   # per version: enough for every gate to pass on healthy traffic (errors need about 5,000)


def traffic(n, seed, scale=1.0, similarity=0.78, errors=0):
    rng = np.random.default_rng(seed)
    return VersionEvidence(requests=n, errors=errors, latencies_s=rng.lognormal(math.log(0.12 * scale), 0.5, n),
                           top_similarities=rng.beta(similarity * 30, (1 - similarity) * 30, n))


def stage(v1=None, v2=None, elapsed=3600.0, percentage=50.0, **facts):
    return Evidence(percentage=percentage, window_started_at=5000.0, evaluated_at=5000.0 + elapsed,
                    v1=v1 or traffic(N, 1), v2=v2 or traffic(N, 2), **facts)


def test_healthy_evidence_advances_and_says_so():
    verdict = judge(stage(), PLAN)
    assert verdict.outcome is Outcome.ADVANCE, verdict.reason
    assert verdict.reason == f"advance: all {len(verdict.gates)} gates passed"
    assert verdict.deciding() == []
    assert [g.name for g in verdict.gates] == ["consistency", "stage_time", "breaker", "alerts", "coverage",
                                               "analytics", "traffic", "lost_rows", "crossover", "sample_ratio",
                                               "errors", "critical_errors", "latency", "quality"]


def test_a_young_stage_holds_and_names_the_wait():
    verdict = judge(stage(elapsed=1800.0), PLAN)
    assert verdict.outcome is Outcome.HOLD
    assert verdict.reason == "hold: stage_time: 0.5 h of 1.0 h in this stage"
    assert [g.name for g in verdict.deciding()] == ["stage_time"]


def test_not_enough_samples_holds():
    verdict = judge(stage(traffic(4000, 1), traffic(1000, 2), percentage=20.0), PLAN)
    assert verdict.outcome is Outcome.HOLD, verdict.reason
    assert {g.name for g in verdict.deciding()} >= {"latency", "quality", "errors"}
    assert "candidate has 1000 of 2000 latency samples" in verdict.reason


def test_a_regression_rolls_back_and_explains_with_values():
    verdict = judge(stage(v2=traffic(N, 2, scale=1.3)), PLAN)
    assert verdict.outcome is Outcome.ROLLBACK
    latency = verdict.gate("latency")
    assert latency.status is GateStatus.FAILED and latency.values["p95_ratio"] > 1.2
    assert verdict.reason.startswith("rollback: latency: the candidate's mean latency is +")
    assert "candidate p95 is +" in verdict.reason


def test_rollback_beats_pause_beats_hold():
    mismatch = dict(v1=traffic(N, 1), v2=traffic(N // 2, 2))   # half the expected share at 50 %
    assert judge(stage(**mismatch), PLAN).outcome is Outcome.PAUSE
    assert judge(stage(**mismatch, coverage_complete=False), PLAN).outcome is Outcome.PAUSE
    both = judge(stage(**mismatch, breaker_closed=False), PLAN)
    assert both.outcome is Outcome.ROLLBACK and [g.name for g in both.deciding()] == ["breaker"]
    assert judge(stage(coverage_complete=False, elapsed=10.0), PLAN).outcome is Outcome.HOLD


def test_a_firing_alert_rolls_back_a_young_stage_at_once():
    verdict = judge(stage(traffic(50, 1), traffic(50, 2), elapsed=60.0, tripping_alerts=("V2ErrorBudget",)), PLAN)
    assert verdict.outcome is Outcome.ROLLBACK and "V2ErrorBudget" in verdict.reason


def test_inconsistent_evidence_pauses_and_skips_the_statistics():
    broken = VersionEvidence(requests=10, errors=20)
    verdict = judge(stage(v2=broken), PLAN)
    assert verdict.outcome is Outcome.PAUSE
    for name in ("sample_ratio", "errors", "latency", "quality", "critical_errors"):
        assert verdict.gate(name).status is GateStatus.SKIPPED
    assert judge(stage(v2=broken, breaker_closed=False), PLAN).outcome is Outcome.ROLLBACK


def test_critical_errors_hold_an_otherwise_good_stage():
    v2 = traffic(N, 2)
    critical = VersionEvidence(requests=v2.requests, latencies_s=v2.latencies_s, top_similarities=v2.top_similarities,
                               critical_errors=1)
    verdict = judge(stage(v2=critical), PLAN)
    assert verdict.outcome is Outcome.HOLD and [g.name for g in verdict.deciding()] == ["critical_errors"]


def test_the_last_stage_needs_the_stability_time():
    plan = RolloutPlan(min_stage_s=60, complete_after_s=7200, thresholds=PLAN.thresholds)
    at_100 = dict(v1=VersionEvidence(), v2=traffic(N, 2), percentage=100.0)
    assert judge(stage(**at_100, elapsed=3600.0), plan).outcome is Outcome.HOLD
    assert judge(stage(**at_100, elapsed=7200.0), plan).outcome is Outcome.ADVANCE


def test_a_verdict_survives_a_json_round_trip():
    verdict = judge(stage(v2=traffic(N, 2, scale=1.3), tripping_alerts=("A",)), PLAN)
    text = json.dumps(verdict.to_dict(), allow_nan=False)
    again = Verdict.from_dict(json.loads(text))
    assert again == verdict and again.to_dict() == verdict.to_dict()


def test_gate_values_are_json_ready():
    result = GateResult("x", GateStatus.PASSED, Outcome.HOLD, "r",
                        {"nan": float("nan"), "inf": np.float64("inf"), "n": np.int64(3), "ok": np.bool_(True),
                         "list": np.array([1.5, np.nan])})
    assert result.values == {"nan": None, "inf": None, "n": 3, "ok": True, "list": [1.5, None]}
    json.dumps(result.to_dict(), allow_nan=False)
    with pytest.raises(TypeError):
        GateResult("x", GateStatus.PASSED, Outcome.HOLD, "r", {"bad": object()})


def test_asking_for_an_unknown_gate_names_the_known_ones():
    with pytest.raises(KeyError, match="latency"):
        judge(stage(), PLAN).gate("speed")


def test_relevance_evidence_makes_relevance_the_quality_gate_with_its_share_of_alpha():
    relevance = RelevanceEvidence(judge={"": Verdicts(wins=200, losses=200, ties=600)})
    verdict = judge(stage(relevance=relevance), PLAN)
    names = [g.name for g in verdict.gates]
    assert names[-1] == "relevance" and "quality" not in names
    assert verdict.gate("relevance").status is GateStatus.PASSED, verdict.reason
    applying = tuple(g for g in GATES if g.name != "quality")
    share = gate_alpha(next(g for g in GATES if g.name == "relevance"), PLAN.thresholds.rollback_alpha, applying)
    assert verdict.gate("relevance").thresholds["rollback_alpha"] == pytest.approx(share)
    assert share == pytest.approx(PLAN.thresholds.rollback_alpha / 4)

    untrusted = judge(stage(relevance=relevance, v2=VersionEvidence(requests=10, errors=20)), PLAN)
    assert untrusted.gate("relevance").status is GateStatus.SKIPPED
