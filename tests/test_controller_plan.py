"""The plan's settings and validation, and the pure state transitions (verdicts and a person's commands)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from rollout.config import Settings
from rollout.configured import rollout_plan
from rollout.controller import (
    Action,
    Command,
    Evidence,
    GateResult,
    GateStatus,
    Outcome,
    RolloutPlan,
    RolloutState,
    Status,
    Thresholds,
    TransitionError,
    Verdict,
    VersionEvidence,
    apply_command,
    apply_verdict,
    judge,
)
from rollout.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
PLAN = RolloutPlan(min_stage_s=60, complete_after_s=120)
PREVIOUS = RolloutPlan(min_stage_s=60, complete_after_s=120, rollback_to="previous")


# -- settings and validation ------------------------------------------------------------------

def test_settings_defaults_are_the_plans_defaults():
    assert rollout_plan(Settings.from_environ({})) == RolloutPlan()


def test_every_setting_reaches_the_plan():
    settings = Settings.from_environ({
        "ROLLOUT_STAGES": " 5, 20 ,100", "ROLLOUT_MIN_STAGE_S": "2", "ROLLOUT_MIN_SAMPLES": "300",
        "ROLLOUT_MIN_SAMPLES_TO_ROLL_BACK": "50", "ROLLOUT_EVALUATION_INTERVAL_S": "0.5",
        "ROLLOUT_ROLLBACK_TO": "previous", "ROLLOUT_COMPLETE_AFTER_S": "3", "ROLLOUT_LATENCY_MARGIN": "0.2",
        "ROLLOUT_MAX_P95_MS": "500", "ROLLOUT_MIN_SIMILARITY": "0.6", "ROLLOUT_MIN_SHADOW_OVERLAP": "0.4",
        "ROLLOUT_MIN_SHADOW_SAMPLES": "30", "ROLLOUT_MAX_ERROR_RATE": "0.01", "ROLLOUT_MAX_CRITICAL_ERRORS": "2",
        "ROLLOUT_CRITICAL_WINDOW_S": "600", "ROLLOUT_ROLLBACK_ALPHA": "0.005", "ROLLOUT_ADVANCE_CONFIDENCE": "0.9",
        "ROLLOUT_SRM_ALPHA": "0.0005"})
    plan = rollout_plan(settings)
    assert plan == RolloutPlan(
        stages=(5.0, 20.0, 100.0), min_stage_s=2, evaluation_interval_s=0.5, rollback_to="previous",
        complete_after_s=3, critical_window_s=600,
        thresholds=Thresholds(min_samples=300, min_samples_to_roll_back=50, latency_margin=0.2, max_p95_s=0.5,
                              min_similarity=0.6, min_shadow_overlap=0.4, min_shadow_samples=30,
                              max_error_rate=0.01, max_critical_errors=2, rollback_alpha=0.005,
                              advance_confidence=0.9, srm_alpha=0.0005))


@pytest.mark.parametrize("stages, words", [
    ("10,25,50", "last stage must be 100"),
    ("10,5,100", "increase strictly: 5 comes after 10"),
    ("50,50,100", "increase strictly"),
    ("0,50,100", "above 0"),
    ("10,abc,100", "'abc' is not a percentage"),
    ("10,12.345,100", "not a percentage from 0 to 100 in 0.01 steps"),
    ("10,150", "'150' is not a percentage"),
    ("", "at least one stage"),
    ("10,,100", "'' is not a percentage"),
])
def test_bad_stages_are_a_config_error_naming_the_variable(stages, words):
    with pytest.raises(ConfigError, match="ROLLOUT_STAGES") as caught:
        Settings.from_environ({"ROLLOUT_STAGES": stages})
    assert words in str(caught.value)


@pytest.mark.parametrize("variable, value", [
    ("ROLLOUT_ROLLBACK_TO", "sideways"), ("ROLLOUT_MIN_STAGE_S", "-1"), ("ROLLOUT_EVALUATION_INTERVAL_S", "0"),
    ("ROLLOUT_MIN_SAMPLES", "5"), ("ROLLOUT_LATENCY_MARGIN", "2"), ("ROLLOUT_MAX_ERROR_RATE", "0"),
    ("ROLLOUT_ROLLBACK_ALPHA", "0.5"), ("ROLLOUT_ADVANCE_CONFIDENCE", "1"), ("ROLLOUT_MIN_SIMILARITY", "1.5"),
])
def test_bad_values_are_a_config_error_naming_the_variable(variable, value):
    with pytest.raises(ConfigError, match=variable):
        Settings.from_environ({variable: value})


def test_rollback_samples_cannot_exceed_the_minimum():
    with pytest.raises(ConfigError, match="ROLLOUT_MIN_SAMPLES_TO_ROLL_BACK must not exceed ROLLOUT_MIN_SAMPLES"):
        Settings.from_environ({"ROLLOUT_MIN_SAMPLES": "200"})


def test_a_plan_built_in_code_is_validated_too():
    with pytest.raises(ConfigError, match="increase strictly"):
        RolloutPlan(stages=(10.0, 5.0, 100.0))
    with pytest.raises(ConfigError, match="zero or previous"):
        RolloutPlan(rollback_to="sideways")
    with pytest.raises(ConfigError, match="evaluation_interval_s"):
        RolloutPlan(evaluation_interval_s=0)
    with pytest.raises(ConfigError, match="rollback_alpha"):
        Thresholds(rollback_alpha=0.7)


def test_every_rollout_variable_is_in_env_example():
    documented = (ROOT / ".env.example").read_text()
    names = [f.alias for f in Settings.model_fields.values() if f.alias and f.alias.startswith("ROLLOUT_")]
    assert [name for name in names if f"# {name}=" not in documented] == []


def test_the_plans_steps():
    assert [PLAN.next_stage(p) for p in (0, 10, 12.5, 75, 100)] == [10, 25, 25, 100, None]
    assert [PLAN.previous_stage(p) for p in (10, 25, 30, 100)] == [0, 10, 25, 75]
    assert PLAN.rollback_target(50) == 0 and PREVIOUS.rollback_target(50) == 25
    assert PLAN.rollback_target(50, "previous") == 25 and PREVIOUS.rollback_target(50, "zero") == 0
    assert [PLAN.stage_number(p) for p in (10, 100, 30, 0)] == [1, 5, None, None]
    assert PLAN.required_time_s(50) == 60 and PLAN.required_time_s(100) == 120
    json.dumps(PLAN.to_dict(), allow_nan=False)


# -- transitions on verdicts ------------------------------------------------------------------

def state(percentage=25.0, status=Status.RUNNING, started=100.0):
    return RolloutState(percentage=percentage, status=status, stage_started_at=started)


def verdict(outcome, percentage=25.0, started=100.0, at=500.0):
    return Verdict(outcome, f"{outcome.value}: because", percentage, started, at,
                   (GateResult("x", GateStatus.PASSED, Outcome.HOLD, "fine"),))


def test_advance_moves_to_the_next_stage_with_a_new_window():
    step = apply_verdict(PLAN, state(), verdict(Outcome.ADVANCE))
    assert step.after == RolloutState(50.0, Status.RUNNING, 500.0, step.reason)
    assert step.percentage_changed and not step.rolled_back and step.cause == "verdict"


def test_advance_at_100_completes():
    step = apply_verdict(PLAN, state(100.0), verdict(Outcome.ADVANCE, 100.0))
    assert step.after.status is Status.COMPLETE and step.after.percentage == 100 and not step.percentage_changed
    assert "the baseline may be retired" in step.reason


@pytest.mark.parametrize("plan, expected", [(PLAN, 0.0), (PREVIOUS, 10.0)])
def test_rollback_goes_to_zero_or_the_previous_stage(plan, expected):
    step = apply_verdict(plan, state(), verdict(Outcome.ROLLBACK))
    assert step.after == RolloutState(expected, Status.ROLLED_BACK, 500.0, "rollback: because")
    assert step.rolled_back


def test_a_failure_that_persists_after_a_rollback_rolls_further_back():
    rolled = apply_verdict(PREVIOUS, state(25.0), verdict(Outcome.ROLLBACK)).after
    again = apply_verdict(PREVIOUS, rolled, verdict(Outcome.ROLLBACK, 10.0, 500.0, 900.0)).after
    assert (again.percentage, again.status) == (0.0, Status.ROLLED_BACK)


def test_pause_stops_advancing_but_not_rolling_back():
    paused = apply_verdict(PLAN, state(), verdict(Outcome.PAUSE)).after
    assert paused.status is Status.PAUSED and paused.percentage == 25 and paused.stage_started_at == 100
    assert apply_verdict(PLAN, paused, verdict(Outcome.ADVANCE)).after == paused
    assert apply_verdict(PLAN, paused, verdict(Outcome.ROLLBACK)).after.status is Status.ROLLED_BACK


def test_a_held_rollout_is_never_advanced_by_a_verdict():
    held = state(status=Status.HELD)
    assert apply_verdict(PLAN, held, verdict(Outcome.ADVANCE)).after == held
    assert apply_verdict(PLAN, held, verdict(Outcome.PAUSE)).after == held
    assert apply_verdict(PLAN, held, verdict(Outcome.ROLLBACK)).after.percentage == 0


def test_hold_changes_nothing():
    step = apply_verdict(PLAN, state(), verdict(Outcome.HOLD))
    assert step.after == state() and step.reason == "hold: because"


@pytest.mark.parametrize("stale", [verdict(Outcome.ROLLBACK, percentage=50.0), verdict(Outcome.ROLLBACK, started=99.0)])
def test_a_stale_verdict_is_ignored(stale):
    step = apply_verdict(PLAN, state(), stale)
    assert step.after == state() and "stage changed" in step.reason


@pytest.mark.parametrize("status", [Status.IDLE, Status.COMPLETE])
def test_verdicts_do_not_move_an_idle_or_complete_rollout(status):
    quiet = state(100.0 if status is Status.COMPLETE else 0.0, status)
    assert apply_verdict(PLAN, quiet, verdict(Outcome.ROLLBACK, quiet.percentage)).after == quiet


# -- transitions on commands ------------------------------------------------------------------

def command(action, **more):
    return Command(action, actor="cli:alice@host", **more)


def test_advance_starts_an_idle_rollout_and_keeps_a_hold():
    started = apply_command(PLAN, RolloutState(), command(Action.ADVANCE), 700.0)
    assert started.after == RolloutState(10.0, Status.RUNNING, 700.0, "advanced to 10 % by cli:alice@host")
    held = apply_command(PLAN, state(status=Status.HELD), command(Action.ADVANCE, reason="looks fine"), 700.0)
    assert (held.after.percentage, held.after.status) == (50.0, Status.HELD)
    assert held.after.reason == "advanced to 50 % by cli:alice@host: looks fine"
    done = apply_command(PLAN, state(100.0), command(Action.ADVANCE), 700.0)
    assert done.after.status is Status.COMPLETE
    with pytest.raises(TransitionError, match="complete"):
        apply_command(PLAN, done.after, command(Action.ADVANCE), 800.0)


def test_hold_and_resume():
    held = apply_command(PLAN, state(), command(Action.HOLD), 700.0).after
    assert (held.status, held.stage_started_at) == (Status.HELD, 100.0)
    with pytest.raises(TransitionError, match="nothing to hold: the rollout is held"):
        apply_command(PLAN, held, command(Action.HOLD), 700.0)
    with pytest.raises(TransitionError, match="idle"):
        apply_command(PLAN, RolloutState(), command(Action.HOLD), 700.0)
    resumed = apply_command(PLAN, held, command(Action.RESUME), 800.0).after
    assert (resumed.status, resumed.stage_started_at) == (Status.RUNNING, 100.0)   # a hold keeps the window
    with pytest.raises(TransitionError, match="running"):
        apply_command(PLAN, resumed, command(Action.RESUME), 900.0)


def test_resume_after_a_pause_or_rollback_starts_a_new_window():
    paused = apply_command(PLAN, state(status=Status.PAUSED), command(Action.RESUME), 800.0).after
    assert (paused.status, paused.percentage, paused.stage_started_at) == (Status.RUNNING, 25.0, 800.0)
    at_zero = apply_command(PLAN, state(0.0, Status.ROLLED_BACK), command(Action.RESUME), 800.0).after
    assert (at_zero.status, at_zero.percentage) == (Status.RUNNING, 10.0)


def test_manual_rollback():
    step = apply_command(PLAN, state(50.0), command(Action.ROLLBACK, rollback_to="previous"), 700.0)
    assert (step.after.percentage, step.after.status) == (25.0, Status.ROLLED_BACK) and step.rolled_back
    assert apply_command(PLAN, state(50.0), command(Action.ROLLBACK), 700.0).after.percentage == 0
    with pytest.raises(TransitionError, match="already gets 0 %"):
        apply_command(PLAN, RolloutState(), command(Action.ROLLBACK), 700.0)


def test_set_percentage():
    running = apply_command(PLAN, state(), command(Action.SET, percentage=30), 700.0).after
    assert running == RolloutState(30.0, Status.RUNNING, 700.0, "set to 30 % by cli:alice@host")
    assert apply_command(PLAN, running, command(Action.ADVANCE), 800.0).after.percentage == 50
    from_pause = apply_command(PLAN, state(status=Status.PAUSED), command(Action.SET, percentage="40"), 700.0)
    assert (from_pause.after.status, from_pause.after.percentage) == (Status.HELD, 40.0)
    stopped = apply_command(PLAN, state(), command(Action.SET, percentage=0), 700.0).after
    assert (stopped.status, stopped.percentage) == (Status.IDLE, 0.0)
    same = apply_command(PLAN, state(), command(Action.SET, percentage=25), 700.0)
    assert not same.percentage_changed and same.after.stage_started_at == 100.0 and "already at 25 %" in same.reason


@pytest.mark.parametrize("value", [150, -1, 12.345, "abc", None, float("nan")])
def test_set_refuses_what_the_flag_refuses(value):
    with pytest.raises(TransitionError, match="FF_NEW_EMBEDDINGS_PERCENTAGE"):
        apply_command(PLAN, state(), command(Action.SET, percentage=value), 700.0)


def test_state_and_transition_are_json():
    step = apply_command(PLAN, state(), command(Action.HOLD), 700.0)
    text = json.dumps(step.to_dict(), allow_nan=False)
    assert RolloutState.from_dict(json.loads(text)["after"]) == step.after


# -- a whole rollout, gates and transitions together --------------------------------------------

def healthy_window(percentage, started, now, n=10000):
    rng = np.random.default_rng(int(percentage))
    share = percentage / 100

    def traffic(count):
        return VersionEvidence(requests=count, latencies_s=rng.lognormal(math.log(0.12), 0.5, count),
                               top_similarities=rng.beta(23.4, 6.6, count))
    v2 = traffic(n)
    v1 = traffic(round(n * (1 - share) / share)) if share < 1 else VersionEvidence()
    return Evidence(percentage=percentage, window_started_at=started, evaluated_at=now, v1=v1, v2=v2)


def test_a_healthy_v2_climbs_every_stage_and_completes():
    plan = RolloutPlan(stages=(10, 50, 100), min_stage_s=60, complete_after_s=120,
                       thresholds=Thresholds(min_samples=1000, min_samples_to_roll_back=100))
    current = apply_command(plan, RolloutState(), command(Action.ADVANCE), 0.0).after
    path, now = [current.percentage], 0.0
    for _ in range(20):   # bounded: the whole climb takes 8 evaluations
        if current.status is not Status.RUNNING:
            break
        now += 30.0
        window = healthy_window(current.percentage, current.stage_started_at, now)
        current = apply_verdict(plan, current, judge(window, plan)).after
        path.append(current.percentage)
    assert current.status is Status.COMPLETE
    assert sorted(set(path)) == [10, 50, 100] and now == 30.0 * (2 + 2 + 4)
