"""Per-model calibration: thresholds mapped between score scales by quantiles; abstain rates compared."""

import numpy as np
import pytest
from analytics_rows import insert, record

from rollout.relevance.calibration import Calibration, ScoreScale, map_score


def test_a_threshold_maps_to_the_same_quantile():
    base = ScoreScale.learn("base", np.linspace(0.6, 1.0, 401), "traffic")   # uniform on 0.6-1.0
    cand = ScoreScale.learn("cand", np.linspace(0.2, 0.5, 301), "traffic")   # uniform on 0.2-0.5
    assert base.rank(0.7) == pytest.approx(0.25, abs=1e-9)
    assert map_score(0.7, base, cand) == pytest.approx(0.275, abs=1e-9)      # the 25th percentile of 0.2-0.5
    assert map_score(0.9, base, cand) == pytest.approx(0.425, abs=1e-9)
    assert map_score(0.5, base, cand) == pytest.approx(0.2)                  # below every baseline score
    assert map_score(1.2, base, cand) == pytest.approx(0.5)
    assert map_score(0.7, base, base) == 0.7


def test_a_calibrated_candidate_abstains_as_often_as_the_baseline():
    rng = np.random.default_rng(1)
    base_scores, cand_scores = rng.normal(0.8, 0.05, 5000), rng.normal(0.35, 0.08, 5000)
    calibration = Calibration(None, "base", min_samples=100)
    calibration.learn({"base": (base_scores[:2500], "shadow_pairs"), "cand": (cand_scores[:2500], "shadow_pairs")})
    held_out = {"base": base_scores[2500:], "cand": cand_scores[2500:]}
    for threshold in (0.72, 0.8, 0.86):
        rates = calibration.abstain_rates(threshold, held_out)
        assert abs(rates["cand"] - rates["base"]) <= 0.02  # within 2 points on data it did not learn from
    raw = float(np.mean(held_out["cand"] < 0.72))  # the same raw threshold: the candidate almost always abstains
    assert raw > 0.99


def test_without_enough_scores_a_threshold_passes_unchanged():
    calibration = Calibration(None, "base", min_samples=100)
    calibration.learn({"base": ([0.8] * 500, "traffic"), "cand": ([0.3] * 50, "traffic")})
    assert calibration.threshold_for("cand", 0.7) == 0.7
    assert calibration.threshold_for("base", 0.7) == 0.7
    assert calibration.threshold_for("cand", None) is None


def test_scales_are_learned_from_shadow_pairs_first(runtime):
    rows = [record(request_id=f"s{n}", served_version="v1", top_similarity=0.7 + n / 1000, other_version="v2",
                   other_top_similarity=0.3 + n / 1000) for n in range(200)]
    rows += [record(request_id=f"t{n}", routed_version="v2", served_version="v2", top_similarity=0.9)
             for n in range(50)]
    insert(runtime.pool, rows)
    calibration = Calibration(runtime.pool, "v1", min_samples=150, refresh_s=0)
    samples = calibration.read_samples()
    assert samples["v1"][1] == "shadow_pairs" and len(samples["v1"][0]) == 200
    assert samples["v2"][1] == "shadow_pairs" and sorted(samples["v2"][0])[-1] == pytest.approx(0.499, abs=1e-6)
    assert calibration.threshold_for("v2", 0.75) == 0.75  # nothing learned yet
    calibration.refresh_if_due()
    assert calibration.threshold_for("v2", 0.75) == pytest.approx(0.35, abs=0.005)
    assert calibration.describe()["v2"]["source"] == "shadow_pairs"


def test_the_gateway_reads_min_similarity_on_the_baseline_scale(runtime):
    from helpers import load_and_embed

    from rollout.gateway import RagQuery
    from rollout.relevance.versions import baseline_and_candidate

    load_and_embed(runtime)
    baseline, candidate = baseline_and_candidate(runtime.router.roles)
    query = RagQuery(text="pool opening hours", k=5, min_similarity=0.99, user_key="u", forced=candidate)
    raw = runtime.gateway.answer(query).result.hits
    assert raw == []  # no candidate score reaches 0.99 raw
    runtime.calibration.learn({baseline: (np.linspace(0.98, 1.0, 300), "shadow_pairs"),
                               candidate: (np.linspace(-1.0, -0.9, 300), "shadow_pairs")})
    assert runtime.calibration.threshold_for(candidate, 0.99) == pytest.approx(-0.95)
    calibrated = runtime.gateway.answer(query).result.hits
    assert len(calibrated) == 5  # mapped to -0.95 on the candidate's scale: every result clears it
    assert runtime.gateway.answer(RagQuery(text="pool opening hours", k=5, min_similarity=0.99, user_key="u",
                                           forced=baseline)).result.hits == []  # the baseline's own scale


def test_the_baseline_scale_follows_the_registry_roles(runtime):
    """The runtime's calibration reads the baseline the registry names now (not the pair the process
    started with), and a new baseline makes the next tick learn again without waiting for refresh_s."""
    from helpers import wait_until

    from rollout.controller import Action, Command
    from rollout.versions import VersionRegistry

    calibration = runtime.calibration
    n = calibration.min_samples + 100
    insert(runtime.pool, [record(request_id=f"a{i}", served_version="v1", top_similarity=0.7 + 0.2 * i / n,
                                 other_version="v2", other_top_similarity=0.2 + 0.2 * i / n) for i in range(n)])
    calibration.refresh_s = 0

    def learned() -> bool:  # a background tick's refresh may hold the lock, with what it read before the insert
        calibration.refresh_if_due()
        return abs(calibration.threshold_for("v2", 0.8) - 0.3) <= 0.01
    assert wait_until(learned, timeout_s=30)
    assert calibration.baseline == "v1"
    assert calibration.threshold_for("v1", 0.8) == 0.8

    calibration.refresh_s = 3600  # from here on, only a change of baseline makes a refresh due
    insert(runtime.pool, [record(request_id=f"b{i}", served_version="v2", top_similarity=0.5, other_version="v1",
                                 other_top_similarity=0.8) for i in range(2 * n)])
    calibration.refresh_if_due()
    assert calibration.scales["v2"].score_at(0.5) == pytest.approx(0.3, abs=0.01)  # not due: the old scales

    runtime.stages.command(Command(Action.SET, actor="test", percentage=100))
    runtime.stages.command(Command(Action.ADVANCE, actor="test"))
    VersionRegistry(runtime.settings.database_url).promote("v2")
    runtime.coverage.refresh()  # the registry's snapshot, as the coverage thread takes it
    assert calibration.baseline == "v2"

    def relearned() -> bool:
        calibration.refresh_if_due()  # what the replicator's tick does
        return calibration.scales["v2"].score_at(0.5) == pytest.approx(0.5)
    assert wait_until(relearned, timeout_s=10)
    assert calibration.threshold_for("v2", 0.45) == 0.45  # the baseline's own scale
    mapped = calibration.threshold_for("v1", 0.45)
    assert mapped == map_score(0.45, calibration.scales["v2"], calibration.scales["v1"]) and mapped != 0.45
