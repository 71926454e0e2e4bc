"""Custom metric gates on their readings (pure): the rate sequence both ways, plain values, alpha shares."""

from __future__ import annotations

import pytest

from rollout.controller.gates.metric import MetricGate, judge_metric, metric_gate
from rollout.controller.gates.registry import GATES, gate_alpha
from rollout.controller.gates.result import GateStatus
from rollout.controller.outcome import Outcome
from rollout.controller.sources import Measurement, NoData, Reading
from rollout.controller.sources.source import seconds
from rollout.controller.thresholds import Thresholds

VERSIONS = {"baseline": "v1", "candidate": "v2"}


def counted(events: int, trials: int) -> Reading:
    return Reading("src", VERSIONS, {"candidate": Measurement(events=events, trials=trials)})


def spec(**fields) -> MetricGate:
    return MetricGate(**{"name": "g", "role": "guardrail", "source": "src", "query": "q", "comparison": "below",
                         "threshold": 0.01, **fields})


@pytest.mark.parametrize("comparison, threshold, events, trials, status", [
    ("below", 0.01, 0, 5000, GateStatus.PASSED),           # shown below 1 %
    ("below", 0.01, 1, 50, GateStatus.NOT_ENOUGH_DATA),    # too few to tell
    ("below", 0.01, 60, 1000, GateStatus.FAILED),          # 6 %: clearly above
    ("above", 0.9, 990, 1000, GateStatus.PASSED),          # a success rate shown above 90 %
    ("above", 0.9, 800, 1000, GateStatus.FAILED),          # clearly below it
    ("above", 0.9, 9, 10, GateStatus.NOT_ENOUGH_DATA),
])
def test_counts_are_judged_by_the_rate_sequence_both_ways(comparison, threshold, events, trials, status):
    result = judge_metric(spec(comparison=comparison, threshold=threshold), counted(events, trials), Thresholds(),
                          0.002)
    assert result.status is status, result.reason
    assert result.statistic == pytest.approx(events / trials) and result.limit == threshold
    assert f"({events} of {trials})" in result.reason and result.thresholds["alpha"] == 0.002


def test_a_value_is_a_plain_comparison_and_zero_trials_is_no_data():
    value = Reading("src", VERSIONS, {"candidate": Measurement(value=3.0)})
    above = judge_metric(spec(comparison="above", threshold=2.5, query="score"), value, Thresholds(), 0.01)
    assert above.status is GateStatus.PASSED and "candidate score = 3, above 2.5 (a plain threshold" in above.reason
    empty = judge_metric(spec(), counted(0, 0), Thresholds(), 0.01)
    assert empty.status is GateStatus.NOT_ENOUGH_DATA and "no trials in the window" in empty.reason
    assert judge_metric(spec(), None, Thresholds(), 0.01).reason == "no data from src: nothing was read"


def test_a_signal_only_holds_and_a_guardrail_takes_a_share_of_the_rollback_alpha():
    signal = metric_gate(spec(role="signal", name="s"))
    guardrail = metric_gate(spec(name="c"))
    assert signal.role.on_failure is Outcome.HOLD and signal.alpha_shares == 0 and not signal.statistical
    assert metric_gate(spec(source="query_log")).statistical  # skipped, like the registry's, on impossible evidence
    assert guardrail.role.on_failure is Outcome.ROLLBACK and guardrail.alpha_shares == 1
    gates = (*GATES, signal, guardrail)
    shares = sum(g.alpha_shares for g in gates)
    assert gate_alpha(guardrail, 0.01, gates) == pytest.approx(0.01 / shares)
    assert sum(gate_alpha(g, 0.01, gates) for g in gates) == pytest.approx(0.01)
    assert gate_alpha(signal, 0.01, gates) == 0
    failed = judge_metric(spec(role="signal"), counted(60, 1000), Thresholds(), 0.0)  # a signal judges at the
    assert failed.status is GateStatus.FAILED and failed.thresholds["alpha"] == 0.01   # rollback alpha itself


def test_readings_and_measurements_keep_what_they_were_given():
    reading = Reading("prom", VERSIONS, {"candidate": Measurement(events=3, trials=9),
                                         "baseline": Measurement(value=0.5)}, None)
    assert Reading.from_dict(reading.to_dict()) == reading
    missing = Reading("prom", VERSIONS, missing="down")
    assert Reading.from_dict(missing.to_dict()) == missing and missing.candidate is None
    with pytest.raises(ValueError):
        Measurement(value=1.0, events=1, trials=2)
    with pytest.raises(ValueError):
        Measurement(events=3, trials=2)
    with pytest.raises(NoData, match="more events"):
        Measurement.counts(3.4, 2.2)
    assert Measurement.counts(299.6, 6300.2).to_dict() == {"events": 300, "trials": 6300}


@pytest.mark.parametrize("raw, expected", [("90s", 90.0), ("5m", 300.0), ("72h", 259200.0), ("3d", 259200.0),
                                           ("250ms", 0.25), (42, 42)])
def test_durations(raw, expected):
    assert seconds(raw) == expected


def test_a_bad_duration_says_what_a_duration_is():
    with pytest.raises(ValueError, match="not a duration"):
        seconds("3 weeks")
