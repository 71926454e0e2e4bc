"""Confidence sequences and the gate registry: coverage under repeated looks, the shared alpha,
and a stored verdict that replays to the same decision and exports the same numbers.

Seeded simulations with a fixed number of runs and looks: deterministic, bounded.
"""

import json
import math
from dataclasses import fields

import numpy as np
import pytest
from scipy.stats import beta

from rollout.controller import Thresholds, Verdict
from rollout.controller.gates.registry import GATES, Role, gate_alpha
from rollout.controller.metrics import ControllerMetrics
from rollout.controller.sequences import (
    mean_bounds,
    normal_radius,
    quantile_bounds,
    rank_bounds,
    rate_bounds,
    share_difference_bounds,
)
from rollout.controller.verdict import combine

LOOKS = np.arange(50, 5001, 50)   # 100 looks at a growing sample


def misses(runs, draw, covered):
    """Share of runs in which the bound missed the truth at any of the looks."""
    rng = np.random.default_rng(21)
    return sum(any(not covered(sample[:n]) for n in LOOKS) for sample in (draw(rng) for _ in range(runs))) / runs


@pytest.mark.slow  # a simulation of many rollouts
def test_the_rate_sequence_covers_at_every_look_where_a_fixed_interval_does_not():
    alpha, p = 0.05, 0.01
    draw = lambda rng: rng.random(LOOKS[-1]) < p  # noqa: E731
    ours = misses(300, draw, lambda x: rate_bounds(int(x.sum()), len(x), alpha, centre=p)[0] <= p
                  <= rate_bounds(int(x.sum()), len(x), alpha, centre=p)[1])

    def clopper_pearson(x):
        k, n = int(x.sum()), len(x)
        low = beta.ppf(alpha / 2, k, n - k + 1) if k else 0.0
        high = beta.ppf(1 - alpha / 2, k + 1, n - k) if k < n else 1.0
        return low <= p <= high
    fixed = misses(300, draw, clopper_pearson)
    assert ours <= alpha < fixed


@pytest.mark.slow  # a simulation of many rollouts
def test_the_quantile_sequence_covers_the_p95_at_every_look():
    alpha, truth = 0.05, math.exp(1.6448536 * 0.5)
    draw = lambda rng: rng.lognormal(0, 0.5, LOOKS[-1])  # noqa: E731
    assert misses(300, draw, lambda x: quantile_bounds(x, 0.95, alpha)[0] <= truth
                  <= quantile_bounds(x, 0.95, alpha)[1]) <= alpha


@pytest.mark.slow  # a simulation of many rollouts
def test_the_mean_sequence_covers_at_every_look():
    alpha, truth = 0.05, 0.78
    draw = lambda rng: rng.beta(0.78 * 30, 0.22 * 30, LOOKS[-1])  # noqa: E731
    assert misses(300, draw, lambda x: mean_bounds(x, alpha)[1] <= truth <= mean_bounds(x, alpha)[2]) <= alpha


def test_the_one_sided_share_difference_sequence_covers_its_side_at_every_look():
    # two shares 0.85 and 0.80 (a candidate five points worse); the upper bound alone must stay above -0.05
    alpha, truth = 0.05, 0.80 - 0.85
    draw = lambda rng: np.column_stack([rng.random(LOOKS[-1]) < 0.80, rng.random(LOOKS[-1]) < 0.85])  # noqa: E731

    def upper(x, one_sided):
        return share_difference_bounds(int(x[:, 0].sum()), len(x), int(x[:, 1].sum()), len(x), alpha, 500,
                                       one_sided=one_sided)[2]
    assert misses(300, draw, lambda x: upper(x, True) >= truth) <= alpha
    fixed = misses(300, draw, lambda x: x[:, 0].mean() - x[:, 1].mean() + 1.6448536 * math.sqrt(
        (x[:, 0].var() + x[:, 1].var()) / len(x)) >= truth)
    assert fixed > alpha  # a fixed-sample bound read at every look misses more often than it says
    assert normal_radius(1000, 1.0, alpha, one_sided=True) < normal_radius(1000, 1.0, alpha)


@pytest.mark.parametrize("n", [1, 20, 100, 2000])
def test_rank_bounds_are_ranks_or_no_bound(n):
    low, high = rank_bounds(n, 0.95, 0.01)
    assert 0 <= low <= high <= n + 1
    assert rank_bounds(20, 0.95, 0.01)[1] == 21   # 20 samples cannot bound a p95 from above
    assert rate_bounds(0, 0, 0.01, centre=0.001) == (0.0, 1.0)


def test_the_registry_declares_each_gate_whole():
    names = [g.name for g in GATES]
    known = {f.name for f in fields(Thresholds)}
    assert len(names) == len(set(names))
    for gate in GATES:
        assert gate.role in Role and gate.source and gate.statistic and gate.no_data
        assert set(gate.thresholds) <= known, gate.name
        assert gate.alpha_shares == 0 or (gate.role is Role.GUARDRAIL and gate.statistical)
    assert sum(gate_alpha(g, 0.01) for g in GATES) == pytest.approx(0.01)
    assert {g.name: g.role.on_failure.value for g in GATES}["sample_ratio"] == "pause"


def stored_verdict():
    import sys
    sys.path.insert(0, "tests")
    from test_controller_verdict import PLAN, N, stage, traffic

    from rollout.controller import judge
    return judge(stage(v2=traffic(N, 2, scale=1.3)), PLAN)


def test_a_stored_verdict_replays_to_the_same_decision():
    verdict = stored_verdict()
    stored = json.loads(json.dumps(verdict.to_dict(), allow_nan=False))
    again = Verdict.from_dict(stored)
    replayed = combine(again.gates, again.percentage, again.window_started_at, again.evaluated_at)
    assert replayed == verdict and replayed.reason == stored["reason"]
    latency = next(g for g in stored["gates"] if g["name"] == "latency")
    assert latency["bound"] > latency["limit"] == pytest.approx(1.1) and latency["thresholds"]["alpha"] > 0


def test_each_evaluation_exports_every_gate():
    verdict = stored_verdict().to_dict()
    metrics = ControllerMetrics()
    metrics.ran("ok", [{"kind": "evaluation", "action": "rollback", "percentage_after": 0.0, "verdict": verdict}])
    value = metrics.registry.get_sample_value
    latency = next(g for g in verdict["gates"] if g["name"] == "latency")
    assert value("rollout_gate_bound", {"gate": "latency"}) == latency["bound"]
    assert value("rollout_gate_threshold", {"gate": "latency"}) == pytest.approx(1.1)
    assert value("rollout_gate_statistic", {"gate": "errors"}) == 0.0
    assert value("rollout_gate_status", {"gate": "latency", "status": "failed"}) == 1
    assert value("rollout_gate_status", {"gate": "latency", "status": "passed"}) == 0
    assert math.isnan(value("rollout_gate_bound", {"gate": "breaker"}))
