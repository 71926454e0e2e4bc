"""The relevance gate on constructed evidence: non-inferiority within δ, per source and per category."""

import math

import numpy as np
import pytest

from rollout.controller.gates.relevance import (
    Golden,
    Proportions,
    RelevanceEvidence,
    RelevancePolicy,
    Verdicts,
    alpha_shares,
    relevance_gate,
)
from rollout.controller.gates.result import GateStatus
from rollout.controller.outcome import Outcome
from rollout.controller.sequences import mixture_rho

POLICY = RelevancePolicy(margin=0.02)


def test_no_source_with_data_holds_and_says_so():
    result = relevance_gate(RelevanceEvidence(judge={"": Verdicts(3, 1, 0)}), POLICY)  # too few verdicts
    assert result.status is GateStatus.NOT_ENOUGH_DATA and result.outcome is Outcome.HOLD
    assert "no relevance evidence yet" in result.reason and result.values["decided_by"] == []


def test_a_candidate_the_judge_prefers_passes_naming_the_judge():
    result = relevance_gate(RelevanceEvidence(judge={"": Verdicts(wins=120, losses=60, ties=20)}), POLICY)
    assert result.status is GateStatus.PASSED and result.values["decided_by"] == ["judge"]
    assert result.values["judge"] == (120 + 10) / 200
    assert "judge: judge win rate" in result.reason


def test_a_candidate_the_judge_rejects_rolls_back():
    result = relevance_gate(RelevanceEvidence(judge={"": Verdicts(wins=40, losses=140, ties=20)}), POLICY)
    assert result.status is GateStatus.FAILED and result.outcome is Outcome.ROLLBACK
    assert result.values["decided_by"] == ["judge"]


def test_ties_only_are_within_the_margin():
    result = relevance_gate(RelevanceEvidence(judge={"": Verdicts(0, 0, 400)}), POLICY)
    assert result.status is GateStatus.PASSED  # a win rate of exactly 0.5


def test_worse_feedback_rolls_back_naming_feedback():
    evidence = RelevanceEvidence(judge={"": Verdicts(110, 90, 0)},
                                 feedback={"": Proportions(800, 1000, 650, 1000)})
    result = relevance_gate(evidence, POLICY)
    assert result.status is GateStatus.FAILED and result.values["decided_by"] == ["feedback"]
    assert abs(result.values["feedback"] + 0.15) < 1e-12 and "feedback positive rate difference -0.150" in result.reason


def test_a_regression_in_one_category_is_found_and_named():
    evidence = RelevanceEvidence(probes={"": Proportions(1890, 2000, 1770, 2000),
                                         "facilities": Proportions(960, 1000, 970, 1000),
                                         "pricing": Proportions(930, 1000, 800, 1000)})
    result = relevance_gate(evidence, POLICY)
    assert result.status is GateStatus.FAILED
    assert result.values["decided_by"] == ["probes_pricing"]
    assert "in pricing" in result.reason and "facilities" not in result.reason


def test_the_golden_set_decides_by_its_own_interval():
    worse = relevance_gate(RelevanceEvidence(golden=Golden(-0.10, -0.12, -0.08, 40)), POLICY)
    assert worse.status is GateStatus.FAILED and worse.values["decided_by"] == ["golden"]
    # se = 0.02 / 1.96 from the 95 % interval; the upper bound is the normal-mixture sequence's at the
    # golden source's quarter of alpha 0.001 (one-sided), tuned for 40 queries: wider than a fixed-sample
    # 99.975 % bound
    se = 0.02 / 1.959963984540054
    rho2 = mixture_rho(0.001 / 4, 40) ** 2
    level = math.log(math.sqrt(40 * rho2 + 1) / (2 * 0.001 / 4) + 1)
    radius = se * math.sqrt(2 * (40 * rho2 + 1) / (40 * rho2) * level)
    assert worse.values["golden_upper"] == pytest.approx(-0.10 + radius, abs=1e-12)
    assert radius > 3.4807 * se
    assert (worse.statistic, worse.bound, worse.limit) == (-0.10, worse.values["golden_upper"], -0.02)
    fine = relevance_gate(RelevanceEvidence(golden=Golden(0.01, -0.005, 0.025, 40)), POLICY)
    assert fine.status is GateStatus.PASSED
    not_sure_enough = relevance_gate(RelevanceEvidence(golden=Golden(-0.05, -0.09, -0.01, 40)), POLICY)
    assert not_sure_enough.status is GateStatus.NOT_ENOUGH_DATA  # 95 % says worse; 99.9 % does not yet
    unsure = relevance_gate(RelevanceEvidence(golden=Golden(0.0, -0.06, 0.06, 40)), POLICY)
    assert unsure.status is GateStatus.NOT_ENOUGH_DATA and unsure.values["decided_by"] == ["golden"]


def test_a_source_still_unsure_is_reported_but_does_not_hold_what_another_proves():
    evidence = RelevanceEvidence(judge={"": Verdicts(130, 70, 0)}, feedback={"": Proportions(40, 60, 38, 60)})
    result = relevance_gate(evidence, POLICY)
    assert result.status is GateStatus.PASSED and result.values["decided_by"] == ["judge"]
    assert "(not yet conclusive) feedback" in result.reason
    alone = relevance_gate(RelevanceEvidence(feedback={"": Proportions(40, 60, 38, 60)}), POLICY)
    assert alone.status is GateStatus.NOT_ENOUGH_DATA and alone.values["decided_by"] == ["feedback"]


def test_equal_sources_pass_and_the_result_round_trips():
    evidence = RelevanceEvidence(feedback={"": Proportions(14000, 20000, 14020, 20000)},
                                 probes={"": Proportions(9500, 10000, 9520, 10000)})
    result = relevance_gate(evidence, POLICY)
    assert result.status is GateStatus.PASSED and result.values["decided_by"] == ["feedback", "probes"]
    from rollout.controller.gates.result import GateResult

    assert GateResult.from_dict(result.to_dict()) == result


def test_the_collector_reads_each_source_for_the_window(runtime):
    import time

    from rollout.relevance.evidence import RelevanceCollector
    from rollout.relevance.golden import EvalStore, evaluate, parse_qrels
    from rollout.relevance.versions import baseline_and_candidate

    baseline, candidate = baseline_and_candidate(runtime.router.roles)
    with runtime.pool.connection() as conn:
        for winner, n in (("candidate", 3), ("baseline", 2), ("tie", 1)):
            for i in range(n):
                conn.execute("INSERT INTO relevance_judgements (pair_hash, baseline, candidate, category, judge, "
                             "winner) VALUES (%s, %s, %s, 'pricing', 'lexical-overlap', %s)",
                             (f"{winner}{i}", baseline, candidate, winner))
        conn.execute("INSERT INTO relevance_judgements (judged_at, pair_hash, baseline, candidate, judge, winner) "
                     "VALUES (now() - interval '2 hours', 'old', %s, %s, 'j', 'baseline')", (baseline, candidate))
        for version, kind, value in ((baseline, "relevant", None), (baseline, "grade", 1), (candidate, "grade", 3),
                                     (candidate, "clicked", None)):
            conn.execute("INSERT INTO relevance_feedback (request_id, kind, value, version, category) "
                         "VALUES (%s, %s, %s, %s, 'events')", (f"r-{version}-{kind}", kind, value, version))
        for version, rank in ((baseline, 1), (baseline, None), (candidate, 2), (candidate, 3)):
            conn.execute("INSERT INTO relevance_probes (round_id, version, document_id, category, style, rank, k) "
                         "VALUES ('r', %s, 'd', 'food', 'title', %s, 10)", (version, rank))
    queries = parse_qrels('{"query": "q", "relevant": {"a": 3}}')
    EvalStore(runtime.pool).record(evaluate(queries, (baseline, lambda q, k: ["b", "a"]),
                                            (candidate, lambda q, k: ["a"]), draws=100), "sha")
    evidence = RelevanceCollector(runtime.pool, baseline, candidate).collect(time.time() - 3600)
    assert evidence.judge == {"": Verdicts(3, 2, 1), "pricing": Verdicts(3, 2, 1)}
    assert evidence.feedback == {"": Proportions(1, 2, 1, 1), "events": Proportions(1, 2, 1, 1)}  # clicks aside
    assert evidence.probes == {"": Proportions(1, 2, 2, 2), "food": Proportions(1, 2, 2, 2)}
    assert evidence.golden is not None and evidence.golden.queries == 1
    assert abs(evidence.golden.difference - (1 - 1 / 1.5849625007211563)) < 1e-6  # 1 - 1/log2(3)


def test_the_controller_judges_quality_by_relevance(runtime):
    import time

    from rollout.controller.state import Action, Command
    from rollout.relevance.versions import baseline_and_candidate

    runtime.stages.command(Command(Action.ADVANCE, actor="test"))
    baseline, candidate = baseline_and_candidate(runtime.router.roles)
    with runtime.pool.connection() as conn:
        for n in range(60):  # the candidate loses every probe the baseline wins: clearly worse
            for version, rank in ((baseline, 1), (candidate, None)):
                conn.execute("INSERT INTO relevance_probes (round_id, version, document_id, category, style, rank, "
                             "k) VALUES ('r', %s, %s, 'food', 'title', %s, 10)", (version, f"d{n}", rank))
    runtime.stages.evaluate(now=time.time() + 1)
    [decision] = runtime.stages.decisions(1, details=True)
    gates = {g["name"]: g for g in decision["verdict"]["gates"]}
    assert "quality" not in gates
    assert gates["relevance"]["status"] == "failed" and gates["relevance"]["values"]["decided_by"] == ["probes"]
    stored = gates["relevance"]  # the headline is kept with the decision: candidate minus baseline, bound, -δ
    assert stored["statistic"] == -1.0 and stored["bound"] < stored["limit"] == -runtime.settings.relevance_margin
    assert decision["action"] == "rollback"


def test_every_result_sets_its_statistic_bound_and_limit():
    cases = {"no data": RelevanceEvidence(),
             "too few": RelevanceEvidence(judge={"": Verdicts(3, 1, 0)}),
             "unsure": RelevanceEvidence(feedback={"": Proportions(40, 60, 38, 60)}),
             "passed": RelevanceEvidence(judge={"": Verdicts(130, 70, 0)}),
             "failed": RelevanceEvidence(judge={"": Verdicts(40, 140, 20)}),
             "golden": RelevanceEvidence(golden=Golden(-0.10, -0.12, -0.08, 40))}
    for name, evidence in cases.items():
        result = relevance_gate(evidence, POLICY)
        headline = (result.statistic, result.bound, result.limit)
        assert all(isinstance(x, float) and math.isfinite(x) for x in headline), (name, headline)
        assert result.limit == -POLICY.margin  # one axis for every source: candidate minus the bar's centre
        if result.status is GateStatus.FAILED:
            assert result.bound < result.limit
        stored = result.to_dict()
        assert None not in (stored["statistic"], stored["bound"], stored["limit"])
    judged = relevance_gate(cases["failed"], POLICY)
    assert judged.statistic == pytest.approx((40 + 10) / 200 - 0.5)  # the win rate, less 0.5
    assert judged.bound == pytest.approx(judged.values["judge_upper"] - 0.5)


def test_the_registry_gives_the_gate_its_alpha_share_and_the_metrics_read_its_headline():
    from prometheus_client import CollectorRegistry

    from rollout.controller.evidence import Evidence, VersionEvidence
    from rollout.controller.gates.registry import GATES, gate_alpha, run
    from rollout.controller.metrics import ControllerMetrics
    from rollout.controller.plan import RolloutPlan

    evidence = Evidence(percentage=10, window_started_at=0, evaluated_at=1, v1=VersionEvidence(), v2=VersionEvidence(),
                        relevance=RelevanceEvidence(judge={"": Verdicts(40, 140, 20)}))
    plan = RolloutPlan()
    applying = tuple(g for g in GATES if g.applies(evidence))
    [gate] = [g for g in applying if g.name == "relevance"]
    result = run(gate, evidence, plan, applying)
    share = gate_alpha(gate, plan.thresholds.rollback_alpha, applying)
    assert 0 < share < plan.thresholds.rollback_alpha
    assert result.thresholds["rollback_alpha"] == pytest.approx(share)
    metrics = ControllerMetrics(CollectorRegistry())
    metrics.judged([result.to_dict()])
    for name in ("rollout_gate_statistic", "rollout_gate_bound", "rollout_gate_threshold"):
        value = metrics.registry.get_sample_value(name, {"gate": "relevance"})
        assert value is not None and math.isfinite(value), name


@pytest.mark.parametrize("sources", [("judge", "feedback", "probes", "golden"), ("judge", "feedback")])
def test_reading_the_gate_at_every_look_keeps_false_rollbacks_within_alpha(sources):
    # a candidate exactly at the margin (win rate 0.5 - δ): any rollback is a false one. Read 40 times a
    # stage as the verdicts grow, a fixed-sample bound at the judge's alpha fails far more often than that
    # alpha; the confidence sequence may not.
    from scipy.stats import norm

    rng = np.random.default_rng(3)
    policy = RelevancePolicy(margin=0.05, rollback_alpha=0.05, sources=sources)
    alpha = policy.rollback_alpha / len(sources) * 0.75  # the judge's part, three quarters of it for the whole
    assert alpha_shares(RelevanceEvidence(), policy)["judge"] == pytest.approx(alpha)
    z = float(norm.ppf(1 - alpha))
    stages, looks, per_look = 300, 40, 25
    false = {"sequence": 0, "fixed-sample": 0}
    for _ in range(stages):
        scores = rng.choice([1.0, 0.5, 0.0], size=looks * per_look, p=[0.35, 0.2, 0.45])  # mean 0.45
        failed = {"sequence": False, "fixed-sample": False}
        for look in range(1, looks + 1):
            seen = scores[:look * per_look]
            counts = Verdicts(int((seen == 1).sum()), int((seen == 0).sum()), int((seen == 0.5).sum()))
            result = relevance_gate(RelevanceEvidence(judge={"": counts}), policy)
            failed["sequence"] |= result.status is GateStatus.FAILED
            failed["fixed-sample"] |= seen.mean() + z * seen.std(ddof=1) / math.sqrt(len(seen)) < 0.45
        for name, hit in failed.items():
            false[name] += hit
    allowed = stages * alpha + 3 * math.sqrt(stages * alpha)  # alpha, with three binomial deviations of room
    assert false["sequence"] <= allowed < false["fixed-sample"], false


def _everywhere() -> RelevanceEvidence:
    """Evidence from every source, in three categories each."""
    cells = ("", "facilities", "pricing", "events")
    return RelevanceEvidence(judge={c: Verdicts(300, 300, 100) for c in cells},
                             feedback={c: Proportions(300, 400, 300, 400) for c in cells},
                             probes={c: Proportions(90, 100, 90, 100) for c in cells},
                             golden=Golden(0.0, -0.02, 0.02, 40))


@pytest.mark.parametrize("sources", [("judge", "feedback", "probes", "golden"), ("judge", "feedback"),
                                     ("feedback",), ("probes", "golden")])
def test_the_shares_of_the_configured_sources_add_up_to_at_most_the_gates_alpha(sources):
    policy = RelevancePolicy(rollback_alpha=0.0025, sources=sources)
    shares = alpha_shares(_everywhere(), policy)
    assert 0 < sum(shares.values()) <= policy.rollback_alpha * (1 + 1e-12)
    assert {key.split("_")[0] for key in shares} == set(sources)
    for source in sources:  # each configured source gets an equal part, three quarters of it for the whole
        part = sum(v for k, v in shares.items() if k.split("_")[0] == source)
        assert part == pytest.approx(policy.rollback_alpha / len(sources))
        if source != "golden":
            assert shares[source] == pytest.approx(0.75 * part)
    # a source without data yet still keeps its part: one arriving mid-stage takes nothing from the others
    assert alpha_shares(RelevanceEvidence(), policy)[sources[0]] == pytest.approx(shares[sources[0]])


def test_a_source_not_configured_gets_no_alpha_and_is_not_read():
    worse_judge = RelevanceEvidence(judge={"": Verdicts(100, 300, 0)}, feedback={"": Proportions(300, 400, 300, 400)})
    without = RelevancePolicy(rollback_alpha=0.0025, sources=("feedback", "probes"))
    assert set(alpha_shares(worse_judge, without)) == {"feedback", "probes"}
    result = relevance_gate(worse_judge, without)
    assert result.status is not GateStatus.FAILED and "judge" not in result.values["decided_by"]
    assert not any(key.startswith("judge") for key in result.values) and result.values["sources"] == [
        "feedback", "probes"]
    # configured, the same judge evidence decides, at a bigger share than an even split over four would give
    both = RelevancePolicy(rollback_alpha=0.0025, sources=("judge", "feedback"))
    assert relevance_gate(worse_judge, both).values["decided_by"] == ["judge"]
    assert alpha_shares(worse_judge, both)["judge"] > alpha_shares(worse_judge, RelevancePolicy(0.05, 0.0025))["judge"]
    with pytest.raises(ValueError, match="unknown relevance sources"):
        RelevancePolicy(sources=("judge", "clicks"))


def test_the_configured_sources_come_from_the_settings():
    from rollout.config import Settings
    from rollout.configured import relevance_sources, rollout_thresholds

    assert relevance_sources(Settings.from_environ({})) == ("feedback", "probes")
    every = Settings.from_environ({"RELEVANCE_JUDGE": "lexical", "ROLLOUT_REQUIRE_EVAL": "true"})
    assert relevance_sources(every) == ("judge", "feedback", "probes", "golden")
    quiet = Settings.from_environ({"RELEVANCE_JUDGE": "lexical", "RELEVANCE_JUDGE_SAMPLE_RATE": "0",
                                   "RELEVANCE_PROBE_INTERVAL_S": "0"})
    assert relevance_sources(quiet) == ("feedback",)
    assert rollout_thresholds(every).relevance_sources == ("judge", "feedback", "probes", "golden")
