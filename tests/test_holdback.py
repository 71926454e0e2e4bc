"""The baseline holdback: a share of users kept on the baseline until the rollout completes, so the gates
compare the candidate with live baseline traffic also at "100 %"."""

import fakeredis
import pytest
from test_controller_verdict import PLAN, traffic

from flags import GRADUAL_MIGRATION, V2_PERCENTAGE, FlagStore, ReplicatedHash, bucket
from rollout.controller import Evidence, GateStatus, Outcome, judge
from rollout.routing import Reason, Roles, Router

USERS = [f"user-{n}" for n in range(20_000)]
GROUP = "rollout"


ROLES = Roles("v1", "v2")


def router(percentage, holdback, roles=ROLES):
    store = FlagStore(ReplicatedHash(fakeredis.FakeRedis(decode_responses=True), "t:flags"),
                      {GRADUAL_MIGRATION: "true", V2_PERCENTAGE: str(percentage)})
    return Router(store, GROUP, roles, holdback=holdback)


def test_at_100_percent_the_holdback_users_stay_on_the_baseline_sticky_by_bucket():
    decisions = {user: router(100, 5).decide(user) for user in USERS}
    held = {user for user, d in decisions.items() if d.version == "v1"}
    assert all(decisions[u].reason is Reason.HOLDBACK for u in held)
    assert held == {user for user in USERS if bucket(GROUP, user) >= 9500}
    assert 0.04 < len(held) / len(USERS) < 0.06
    assert all(d.version == "v2" and d.reason is Reason.PERCENTAGE for u, d in decisions.items() if u not in held)


@pytest.mark.parametrize("percentage", [10, 50, 94.99])
def test_below_the_holdback_nothing_changes(percentage):
    with_holdback, without = router(percentage, 5), router(percentage, 0)
    assert all(with_holdback.decide(u) == without.decide(u) for u in USERS[:5000])


def test_raising_the_percentage_never_moves_a_candidate_user_back():
    on_candidate = set()
    for percentage in (10, 25, 50, 75, 95, 100):
        r = router(percentage, 5)
        now = {u for u in USERS if r.decide(u).version == "v2"}
        assert on_candidate <= now
        on_candidate = now
    assert on_candidate == {u for u in USERS if bucket(GROUP, u) < 9500}


def test_without_a_holdback_everyone_is_on_the_candidate_at_100_percent():
    assert all(router(100, 0).decide(u).version == "v2" for u in USERS[:5000])


def test_promotion_ends_the_holdback():
    """After the candidate is promoted there is no candidate left: everyone gets the (new) baseline."""
    r = router(100, 5, Roles("v2", None))
    assert {r.decide(u).reason for u in USERS[:5000]} == {Reason.NO_CANDIDATE}


def test_a_forced_candidate_ignores_the_holdback():
    r = router(100, 5)
    held = next(u for u in USERS if bucket(GROUP, u) >= 9500)
    assert r.decide(held, forced="v2").version == "v2"


def at_last_stage(candidate, holdback=5.0, baseline=None):
    n = 60_000
    return Evidence(percentage=100.0, window_started_at=0.0, evaluated_at=PLAN.complete_after_s + 1,
                    v1=baseline if baseline is not None else traffic(n * 5 // 100, 1), v2=candidate,
                    holdback=holdback)


def test_the_last_stage_still_compares_with_the_holdback():
    verdict = judge(at_last_stage(traffic(57_000, 2)), PLAN)
    latency = verdict.gate("latency")
    assert latency.values["samples_baseline"] == 3000 and "p95_ratio" in latency.values, latency.values
    assert verdict.gate("sample_ratio").status is GateStatus.PASSED
    assert verdict.outcome is Outcome.ADVANCE, verdict.reason


def test_the_last_stage_rolls_back_a_candidate_slower_than_the_holdback():
    verdict = judge(at_last_stage(traffic(57_000, 2, scale=1.3)), PLAN)
    assert verdict.outcome is Outcome.ROLLBACK and "latency" in verdict.reason, verdict.reason


def test_without_a_holdback_the_last_stage_judges_only_the_ceiling():
    from rollout.controller import VersionEvidence
    verdict = judge(at_last_stage(traffic(60_000, 2, scale=1.3), holdback=0.0, baseline=VersionEvidence()), PLAN)
    assert "p95_ratio" not in verdict.gate("latency").values
    assert verdict.outcome is not Outcome.ROLLBACK, verdict.reason
