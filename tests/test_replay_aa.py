"""`rollout replay` and `rollout aa` on the embedded services: the controller's looks judged again from
query_log, and random splits of one version's users judged as a rollout (A/A)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from analytics_rows import insert, record
from click.testing import CliRunner
from test_controller_verdict import PLAN as GOOD
from test_controller_verdict import stage

import rollout.cli.controller  # noqa: F401  (registers the commands)
import rollout.cli.replay  # noqa: F401
from rollout.cli import cli
from rollout.controller import Outcome, Thresholds
from rollout.controller.aa import rows_of, run_aa
from rollout.controller.replay import Look, rejudge

PLAN = {"ROLLOUT_STAGES": "50,100", "ROLLOUT_MIN_STAGE_S": "3600", "ROLLOUT_MIN_SAMPLES": "50",
        "ROLLOUT_MIN_SAMPLES_TO_ROLL_BACK": "20"}


@pytest.fixture
def run(settings, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "REDIS_KEY_PREFIX": settings.redis_key_prefix, **PLAN}

    def invoke(*args, **extra_env):
        return CliRunner().invoke(cli, list(args), env={**env, **extra_env}, catch_exceptions=False)
    return invoke


def traffic(at: datetime, n: int, *, failing_v2: bool = False, prefix: str = "r"):
    rng = np.random.default_rng(3)
    rows = []
    for i in range(n):
        version = "v2" if i % 2 else "v1"
        failed = failing_v2 and version == "v2"
        rows.append(record(request_id=f"{prefix}{i}", logged_at=at, routed_version=version,
                           served_version="v1" if failed else version, fallback=failed,
                           latency_ms=float(rng.lognormal(np.log(20), 0.3)), user_hash=f"u{i}",
                           bucket=4999 if version == "v2" else 5001))
    return rows


def test_replay_prints_one_line_per_look_and_what_changed(run, runtime):
    assert run("stage", "advance").exit_code == 0
    insert(runtime.pool, traffic(datetime.now(UTC), 200))
    evaluated = run("controller", "--once")
    assert evaluated.exit_code == 0 and "evaluation" in evaluated.output, evaluated.output

    lines = run("replay", "--since", "1h").output.splitlines()
    assert len(lines) == 1 and "50 %  decided hold, replayed hold:" in lines[0], lines
    assert "(changed)" not in lines[0]

    verdict = runtime.stages.store.decisions(1, kinds=["evaluation"], details=True)[0]["verdict"]
    middle = (verdict["window_started_at"] + verdict["evaluated_at"]) / 2
    late = datetime.fromtimestamp(middle, UTC)  # rows of that window written since (a writer catching up)
    insert(runtime.pool, traffic(late, 400, failing_v2=True, prefix="late"))
    [look] = [json.loads(line) for line in run("replay", "--since", "1h", "--json").output.splitlines()]
    assert look["decided"] == "hold" and look["replayed"] == "rollback", look["verdict"]["reason"]
    assert look["changed"] is True
    assert any(g["name"] == "errors" and g["status"] == "failed" for g in look["verdict"]["gates"])


def test_replay_judges_by_a_plan_file_when_given_one(run, runtime, tmp_path):
    """The same looks under a plan whose error ceiling the failing rows stay under: no rollback."""
    assert run("stage", "advance").exit_code == 0
    insert(runtime.pool, traffic(datetime.now(UTC), 200))
    assert run("controller", "--once").exit_code == 0
    verdict = runtime.stages.store.decisions(1, kinds=["evaluation"], details=True)[0]["verdict"]
    late = datetime.fromtimestamp((verdict["window_started_at"] + verdict["evaluated_at"]) / 2, UTC)
    insert(runtime.pool, traffic(late, 400, failing_v2=True, prefix="late"))
    plan = tmp_path / "lenient.yaml"
    plan.write_text("stages: [50, 100]\ngates:\n  registry: [errors]\n  thresholds:\n    max_error_rate: 0.99\n")
    [look] = [json.loads(line) for line in run("replay", "--since", "1h", "--json", "--plan", str(plan)).output
              .splitlines()]
    assert look["replayed"] != "rollback", look["verdict"]["reason"]
    assert [g["name"] for g in look["verdict"]["gates"]] == ["errors"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [50, 60]\n")
    refused = run("replay", "--plan", str(bad))
    assert refused.exit_code != 0 and "invalid plan" in refused.output


def test_replay_without_evaluations_says_so(run):
    result = run("replay", "--since", "2d")
    assert result.exit_code == 1 and "nothing to replay" in result.output


@pytest.mark.parametrize("since", ["7x", "0d", "-1h", "week"])
def test_a_bad_span_is_a_usage_error(run, since):
    result = run("aa", "--since", since)
    assert result.exit_code == 2 and "is not a duration such as 30m, 12h or 7d" in result.output


def v1_rows(users: int, per_user: int, at: datetime, heavy_user_slow: bool = False):
    rng = np.random.default_rng(11)
    rows = []
    for u in range(users):
        for k in range(per_user):
            slow = heavy_user_slow and u == 0
            latency = rng.lognormal(np.log(200 if slow else 20), 0.3)
            rows.append(record(request_id=f"{u}-{k}", logged_at=at - timedelta(minutes=rng.uniform(1, 50)),
                               latency_ms=float(latency), user_hash=f"user{u}", bucket=9000))
    return rows


def test_aa_on_equal_arms_makes_no_false_decision(run, runtime):
    insert(runtime.pool, v1_rows(300, 4, datetime.now(UTC)))
    result = run("aa", "--since", "1h", "--splits", "5", "--looks", "10", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["version"] == "v1" and report["rows"] == 1200 and report["users"] == 300
    assert report["splits"] == 5 and report["false_decision_rate"] == 0.0
    assert all(s["looks"] == 10 for s in report["per_split"])
    text = run("aa", "--since", "1h", "--splits", "5", "--looks", "10").output
    assert "false decisions: 0 of 5 splits (0.0 %)" in text.replace("0.0%", "0.0 %"), text


def test_aa_finds_the_false_decisions_of_a_user_heavier_than_the_rest(run, runtime):
    """One user sends a third of the requests, all slow: whichever arm gets that user looks slower, so
    per-request statistics decide falsely; A/A shows it."""
    rows = v1_rows(200, 3, datetime.now(UTC))
    rows += v1_rows(1, 300, datetime.now(UTC), heavy_user_slow=True)
    insert(runtime.pool, [replace(r, request_id=f"{r.request_id}-{n}") for n, r in enumerate(rows)])
    report = json.loads(run("aa", "--since", "1h", "--splits", "6", "--looks", "5", "--json").output)
    assert report["false_decision_rate"] > 0.3
    first = next(s["first_false"] for s in report["per_split"] if s["first_false"])
    assert first["replayed"] == "rollback" and "latency" in first["verdict"]["reason"]


def test_aa_without_rows_says_so(run):
    result = run("aa", "--since", "1h")
    assert result.exit_code == 1 and "too few to split" in result.output


def test_rejudge_takes_a_plan_in_place_of_each_looks_own():
    looks = [Look("a", stage(), GOOD)]
    [own] = list(rejudge(looks))
    strict = replace(GOOD, thresholds=replace(GOOD.thresholds, max_error_rate=1e-9))
    [given] = list(rejudge(looks, plan=strict))
    assert own.verdict.outcome is Outcome.ADVANCE and given.verdict.outcome is not Outcome.ADVANCE


def test_aa_core_on_rows_in_memory_is_seeded():
    rng = np.random.default_rng(5)
    n = 4000
    fetched = [(1000.0 + i, f"u{rng.integers(800)}", float(rng.lognormal(3, 0.4)), False, True, 0.8, None)
               for i in range(n)]
    rows = rows_of(fetched, 1000.0, 1000.0 + n)
    plan = replace(GOOD, thresholds=Thresholds(min_samples=500, min_samples_to_roll_back=100))
    first = run_aa(rows, "v1", plan, splits=3, looks=4, seed=9)
    again = run_aa(rows, "v1", plan, splits=3, looks=4, seed=9)
    assert first.to_dict() == again.to_dict() and first.users == len({r[1] for r in fetched}) and first.rows == n
    assert first.false_decision_rate == 0.0
