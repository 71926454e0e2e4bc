"""Health checks with their actions, table-driven: each row is evidence, the gate that answers,
its status, the verdict's outcome and words the reason must carry."""

import pytest

from rollout.controller import Evidence, GateStatus, Outcome, RolloutPlan, Thresholds, VersionEvidence, judge

PLAN = RolloutPlan(min_stage_s=60, traffic_grace_s=600,
                   thresholds=Thresholds(min_samples=20, min_samples_to_roll_back=20))


def evidence(baseline=900, candidate=100, percentage=10.0, elapsed=3600.0, **facts):
    return Evidence(percentage=percentage, window_started_at=0.0, evaluated_at=elapsed,
                    v1=VersionEvidence(requests=baseline), v2=VersionEvidence(requests=candidate), **facts)


CASES = [
    # name, evidence, gate, gate status, verdict outcome, words in the verdict's reason
    ("sample ratio mismatch pauses", evidence(9300, 700, users_seen=10000),
     "sample_ratio", GateStatus.FAILED, Outcome.PAUSE, "the split is not what the flag says"),
    ("no candidate traffic beside the baseline's is also a mismatch: pause", evidence(900, 0),
     "traffic", GateStatus.FAILED, Outcome.PAUSE, "the candidate got 0.00 % of 900 assignments"),
    ("no traffic at all after the grace period holds", evidence(0, 0),
     "traffic", GateStatus.FAILED, Outcome.HOLD, "no candidate and no baseline requests"),
    ("no traffic within the grace period is no finding", evidence(0, 0, elapsed=300.0),
     "traffic", GateStatus.PASSED, Outcome.HOLD, "errors: no candidate requests yet"),
    ("at 100 % the baseline is not expected", evidence(0, 500, percentage=100.0),
     "traffic", GateStatus.PASSED, Outcome.HOLD, "errors"),
    ("analytics off and no rows holds", evidence(0, 0, analytics_enabled=False),
     "analytics", GateStatus.FAILED, Outcome.HOLD, "query analytics is off (FF_ENABLE_QUERY_ANALYTICS)"),
    ("rows arriving prove analytics on, whatever this process reads", evidence(analytics_enabled=False),
     "analytics", GateStatus.PASSED, Outcome.HOLD, "errors"),
    ("users on both versions beyond the share warn", evidence(users_seen=1000, users_on_both=20),
     "crossover", GateStatus.WARNING, Outcome.HOLD, "warning: crossover: 20 of 1000 users (2.00 %)"),
    ("writers losing more than 1 % of the window's rows hold",
     evidence(rows_logged=9000, rows_lost=200, lost_detail="200 with the writer's queue full"),
     "lost_rows", GateStatus.FAILED, Outcome.HOLD, "lost 200 of 9,200 rows in this stage (2.17 %"),
    ("the reason names the causes", evidence(rows_logged=900, rows_lost=100, lost_detail="100 refused by the database"),
     "lost_rows", GateStatus.FAILED, Outcome.HOLD, "100 refused by the database"),
    ("all rows lost (nothing logged) holds", evidence(0, 0, elapsed=300.0, rows_lost=50),
     "lost_rows", GateStatus.FAILED, Outcome.HOLD, "lost 50 of 50 rows"),
    ("losses within the share pass", evidence(rows_logged=9990, rows_lost=10),
     "lost_rows", GateStatus.PASSED, Outcome.HOLD, "errors"),
    ("exactly the share passes", evidence(rows_logged=99, rows_lost=1),
     "lost_rows", GateStatus.PASSED, Outcome.HOLD, "errors"),
    ("no losses pass", evidence(rows_logged=1000), "lost_rows", GateStatus.PASSED, Outcome.HOLD, "errors"),
    ("with a holdback, no baseline traffic at 100 % fails the traffic check, and the split pauses",
     evidence(0, 500, percentage=100.0, holdback=5.0),
     "traffic", GateStatus.FAILED, Outcome.PAUSE, "V2 got 100.00 % of 500 assignments against 95.00 %"),
    ("with a holdback, the split at 100 % is the holdback's",
     evidence(50, 950, percentage=100.0, holdback=5.0, users_seen=1000),
     "sample_ratio", GateStatus.PASSED, Outcome.HOLD, "errors"),
    ("with a holdback, all users on the candidate at 100 % is a mismatch: pause",
     evidence(0, 5000, percentage=100.0, holdback=5.0, users_seen=5000, elapsed=300.0),
     "sample_ratio", GateStatus.FAILED, Outcome.PAUSE, "V2 got 100.00 % of 5000 assignments against 95.00 %"),
    ("users on both versions within the share pass", evidence(users_seen=1000, users_on_both=10),
     "crossover", GateStatus.PASSED, Outcome.HOLD, "errors"),
]


@pytest.mark.parametrize("name, given, gate, status, outcome, words", CASES, ids=[c[0] for c in CASES])
def test_health_checks_act(name, given, gate, status, outcome, words):
    verdict = judge(given, PLAN)
    assert verdict.gate(gate).status is status, verdict.gate(gate).reason
    assert verdict.outcome is outcome and words in verdict.reason, verdict.reason


def test_a_warning_does_not_stop_an_advance():
    from test_controller_verdict import PLAN as GOOD
    from test_controller_verdict import N, stage
    verdict = judge(stage(users_seen=2 * N, users_on_both=N // 10), GOOD)
    assert verdict.outcome is Outcome.ADVANCE and verdict.gate("crossover").status is GateStatus.WARNING
    assert "warning: crossover:" in verdict.reason
