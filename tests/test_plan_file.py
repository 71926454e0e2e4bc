"""Plan files: `rollout plan lint` (one line per problem, its line and field), and a controller judging by a plan."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from analytics_rows import insert, record
from click.testing import CliRunner
from stats_server import StatsServer

import rollout.cli.controller  # noqa: F401  (registers the commands)
import rollout.cli.plan  # noqa: F401
from rollout.cli import cli
from rollout.config import Settings
from rollout.configured import rollout_plan
from rollout.controller import Action, Command
from rollout.controller.gates.registry import GATES
from rollout.controller.planfile import read_plan
from rollout.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "rollout" / "data" / "plans" / "example.yaml"

GOOD = """\
stages: [50, 100]
min_stage: 1h
evaluation_interval: 30s
sources:
  stats:
    type: http_json
    url: {url}/stats/{{version}}
    timeout: 2s
gates:
  thresholds:
    max_error_rate: 0.1
  custom:
    - name: upstream_errors
      role: guardrail
      source: stats
      query: stats.errors
      total: stats.requests
      comparison: below
      threshold: 0.01
"""


@pytest.fixture
def lint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .env of the checkout's

    def run(text: str, *options: str):
        file = tmp_path / "plan.yaml"
        file.write_text(text)
        return CliRunner().invoke(cli, ["plan", "lint", *options, str(file)], env={}, catch_exceptions=False)
    return run


def test_the_shipped_example_is_valid(lint):
    result = lint(EXAMPLE.read_text())
    assert result.exit_code == 0, result.stderr
    assert "ok: stages 5, 25, 50, 100" in result.stdout and "4 custom gates" in result.stdout
    plan = read_plan(EXAMPLE, rollout_plan(Settings.from_environ({})))
    assert [g.name for g in plan.gates] == [g.name for g in GATES] + [
        "gateway_errors", "p95_latency", "fallback_share", "empty_answers"]
    assert plan.min_stage_s == 86400 and plan.evaluation_interval_s == 300 and plan.thresholds.max_error_rate == 0.002


@pytest.mark.parametrize("text, line", [
    ("gates:\n  custom:\n    - name: x\n      role: signal\n      source: graphite\n      query: up\n"
     "      comparison: below\n      threshold: 1\n",
     "plan.yaml:5: gates.custom[0].source: unknown source 'graphite'; declared: query_log"),
    ("sources:\n  prom:\n    type: graphite\n",
     "plan.yaml:3: sources.prom.type: unknown source type 'graphite'; known: query_log, prometheus, sql, http_json"),
    ("gates:\n  custom:\n    - name: x\n      role: signal\n      source: query_log\n      query: errors\n"
     "      comparison: below\n      threshold: lots\n",
     "plan.yaml:8: gates.custom[0].threshold: Input should be a valid number, unable to parse string as a number"),
    ("gates:\n  custom:\n    - name: x\n      role: signal\n      source: query_log\n      query: errors\n"
     "      comparison: below\n      threshold: 5\n",
     "plan.yaml:8: gates.custom[0].threshold: the source counts events of trials, so the threshold is a rate in "
     "(0, 1), not 5"),
    ("sources:\n  log:\n    type: query_log\n",
     "plan.yaml:3: sources.log.type: query_log is built in: a gate names it as its source, with no block here"),
    ("gates:\n  thresholds:\n    max_error_rate: 1.5\n",
     "plan.yaml:2: gates.thresholds: max_error_rate must be in (0, 1)"),
    ("gates:\n  registry: [errors, latency, speed]\n",
     "plan.yaml:2: gates.registry[2]: unknown gate 'speed'; known: " + ", ".join(g.name for g in GATES)),
    ("stages: [10, 50\nmin_stage: 1h\n",
     "plan.yaml:2: not valid YAML: expected ',' or ']', but got ':'"),
    ("stages: [10, 50, 100]\nstage: 3\n", "plan.yaml:2: stage: unknown field"),
    ("min_stage: soon\n",
     "plan.yaml:1: min_stage: 'soon' is not a duration (a number of seconds, or e.g. 30s, 5m, 72h, 3d)"),
    ("- just\n- a list\n", "plan.yaml:1: a plan is a mapping of fields (stages, gates, sources, ...); this file "
                           "holds list"),
])
def test_a_bad_plan_is_one_line_naming_line_and_field(lint, text, line):
    result = lint(text)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [line.replace("plan.yaml", str(Path.cwd() / "plan.yaml"))]


def test_every_problem_is_listed_and_json_too(lint):
    text = ("stages: [10, 60]\nsources:\n  prom: {type: prometheus, url: 'not a url'}\ngates:\n  custom:\n"
            "    - {name: a, role: boss, source: prom, query: up, comparison: below, threshold: 0.1}\n"
            "    - {name: b, role: signal, source: prom, query: up, comparison: below, threshold: 0.1}\n"
            "    - {name: b, role: signal, source: nope, query: up, comparison: below, threshold: 0.1}\n")
    result = lint(text)
    assert result.exit_code == 1
    lines = [line.split("plan.yaml:", 1)[1] for line in result.stderr.splitlines()]
    assert lines == [
        "1: stages: the last stage must be 100 (all traffic on the candidate), not 60",
        "3: sources.prom.url: String should match pattern '^https?://[^\\s/]+'",
        "6: gates.custom[0].role: Input should be 'guardrail' or 'signal'",
        "7: gates.custom[1].source: unknown source 'prom'; declared: query_log",
        "8: gates.custom[2].name: b is already a gate's name",
        "8: gates.custom[2].source: unknown source 'nope'; declared: query_log",
    ]
    as_json = json.loads(lint(text, "--json").stdout)
    assert as_json["ok"] is False and len(as_json["problems"]) == 6
    assert as_json["problems"][0] == {"line": 1, "field": "stages",
                                      "message": "the last stage must be 100 (all traffic on the candidate), not 60"}
    good = json.loads(lint(GOOD.format(url="http://127.0.0.1:1"), "--json").stdout)
    assert good == {"file": str(Path.cwd() / "plan.yaml"), "ok": True, "problems": []}


def test_a_bad_plan_stops_the_controller_before_it_connects(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plan.yaml").write_text("stages: [10, 60]\ngates:\n  registry: [speed]\n")
    result = CliRunner().invoke(cli, ["controller", "--once", "--plan", "plan.yaml"],
                                env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert result.exit_code == 2
    assert result.stderr == ("error: invalid plan: plan.yaml:1: stages: the last stage must be 100 (all traffic on "
                             "the candidate), not 60 (and 1 more: `rollout plan lint plan.yaml` lists them)\n")
    with pytest.raises(ConfigError, match="cannot read the plan"):
        read_plan(tmp_path / "missing.yaml", rollout_plan(Settings.from_environ({})))


# -- a controller judging by a plan ----------------------------------------------------------------

PLAN_ENV = dict(ROLLOUT_STAGES="10,100", ROLLOUT_MIN_STAGE_S="5", ROLLOUT_MIN_SAMPLES="50",
                ROLLOUT_MIN_SAMPLES_TO_ROLL_BACK="20", ROLLOUT_QUALITY_GATE="similarity")


def test_a_failing_custom_guardrail_rolls_back_and_its_reading_is_kept(make_runtime, tmp_path):
    runtime = make_runtime(**PLAN_ENV)
    with StatsServer() as server:
        (tmp_path / "plan.yaml").write_text(GOOD.format(url=server.url))
        plan = read_plan(tmp_path / "plan.yaml", rollout_plan(runtime.settings))
        runtime.follow_plan(plan)
        t0 = time.time() - 600
        started = runtime.stages.command(Command(Action.ADVANCE, actor="alice"), now=t0)
        assert started["percentage_after"] == 50.0  # the plan's first stage, not ROLLOUT_STAGES'
        [decision] = runtime.stages.evaluate(now=t0 + 30)
    assert decision["action"] == "rollback" and decision["percentage_after"] == 0.0, decision["reason"]
    assert "upstream_errors: candidate rate 0.05 (40 of 800) is above 0.01" in decision["reason"]
    stored = runtime.stages.store.decision(decision["id"])
    assert stored["evidence"]["metrics"]["upstream_errors"]["measurements"] == {
        "candidate": {"events": 40, "trials": 800}, "baseline": {"events": 2, "trials": 800}}
    gate = next(g for g in stored["verdict"]["gates"] if g["name"] == "upstream_errors")
    assert gate["status"] == "failed" and gate["on_failure"] == "rollback" and gate["limit"] == 0.01
    assert stored["plan"]["file"].endswith("plan.yaml") and stored["plan"]["stages"] == [50.0, 100.0]
    assert stored["plan"]["metric_gates"][0]["name"] == "upstream_errors"
    assert stored["plan"]["thresholds"]["max_error_rate"] == 0.1


def test_a_source_that_is_down_holds_with_its_reason(make_runtime, tmp_path):
    runtime = make_runtime(**PLAN_ENV)
    (tmp_path / "plan.yaml").write_text(GOOD.format(url="http://127.0.0.1:9"))
    runtime.follow_plan(read_plan(tmp_path / "plan.yaml", rollout_plan(runtime.settings)))
    t0 = time.time() - 600
    runtime.stages.command(Command(Action.ADVANCE, actor="alice"), now=t0)
    rows = [record(logged_at=_at(t0 + 1 + i * 0.01), routed_version=v, served_version=v, user_hash=f"{v}-{i}")
            for v in ("v1", "v2") for i in range(400)]
    insert(runtime.pool, rows)
    [decision] = runtime.stages.evaluate(now=t0 + 30)
    assert decision["action"] == "hold", decision["reason"]
    assert "upstream_errors: no data from stats: http://127.0.0.1:9 is unreachable" in decision["reason"]


def test_every_process_judges_by_rollout_plan_file(make_runtime, tmp_path):
    (tmp_path / "plan.yaml").write_text(GOOD.format(url="http://127.0.0.1:9"))
    runtime = make_runtime(**PLAN_ENV, ROLLOUT_PLAN_FILE=str(tmp_path / "plan.yaml"))
    status = runtime.stages.status()
    assert status["stages"] == [50.0, 100.0] and status["plan"]["file"] == str(tmp_path / "plan.yaml")
    assert [g.name for g in runtime.stages.gates][-1] == "upstream_errors"
    (tmp_path / "bad.yaml").write_text("stages: [5]\n")
    with pytest.raises(ConfigError, match=r"invalid plan: .*bad.yaml:1: stages: the last stage must be 100"):
        make_runtime(**PLAN_ENV, ROLLOUT_PLAN_FILE=str(tmp_path / "bad.yaml"))


def _at(epoch: float):
    from datetime import UTC, datetime
    return datetime.fromtimestamp(epoch, UTC)


def test_controller_once_with_a_plan(settings, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "REDIS_KEY_PREFIX": settings.redis_key_prefix, **PLAN_ENV}

    def run(*args: str):
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    with StatsServer() as server:
        (tmp_path / "plan.yaml").write_text(GOOD.format(url=server.url))
        assert run("stage", "advance").exit_code == 0
        judged = run("controller", "--once", "--plan", "plan.yaml")
    assert judged.exit_code == 0, judged.stderr
    first, decision = judged.stdout.splitlines()
    assert first == f"controller: judging by plan.yaml ({len(GATES) + 1} gates, 1 of them the plan's own)"
    assert " evaluation rollback by controller" in decision and "upstream_errors: candidate rate 0.05" in decision
