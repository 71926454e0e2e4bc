"""`rollout stage ...` and `rollout controller --once`: output and exit codes."""

from __future__ import annotations

import json
import re

import pytest
from notify_server import NotifyServer

from rollout.controller.leader import LeaderLock

PLAN = {"ROLLOUT_STAGES": "50,100", "ROLLOUT_MIN_STAGE_S": "3600", "ROLLOUT_MIN_SAMPLES": "50",
        "ROLLOUT_MIN_SAMPLES_TO_ROLL_BACK": "20"}


@pytest.fixture
def run(run):
    """The shared `run`, on this module's plan."""
    return lambda *args, **extra_env: run(*args, **{**PLAN, **extra_env})


def test_status_advance_conflicts_and_history(run):
    idle = run("stage", "status")
    assert idle.exit_code == 0
    assert idle.output.startswith("idle at 0 %: `rollout stage advance` starts the first stage (50 %)\n")
    assert "plan: 50 -> 100 %" in idle.output and "controller: no controller is running" in idle.output

    advanced = run("stage", "advance", "--reason", "first stage")
    assert advanced.exit_code == 0, advanced.output
    assert re.match(r"advance: #1 \S+ command advance by cli:\S+, 0 % -> 50 %, running: advanced to 50 % by "
                    r"cli:\S+: first stage\n", advanced.output)
    assert "flag: FF_NEW_EMBEDDINGS_PERCENTAGE 0 -> 50\nflag: FF_ENABLE_GRADUAL_MIGRATION false -> true" \
        in advanced.output

    status = run("stage", "status")
    assert status.output.startswith("running at 50 % (stage 1 of 2), ")
    assert "plan: [50] -> 100 %" in status.output and "last decision: #1 " in status.output
    assert "warning: no controller is running" in status.output
    report = json.loads(run("stage", "status", "--json").output)
    assert report["status"] == "running" and report["last_decision"]["kind"] == "command"

    for args, code, message in [
        (("stage", "resume"), 1, "error: nothing to resume: the rollout is running"),
        (("stage", "advance", "--expect", "25"), 1, "error: the rollout is at 50 %, not 25 %: nothing changed"),
        (("stage", "set", "12.345"), 1, "error: FF_NEW_EMBEDDINGS_PERCENTAGE"),
        (("stage", "set", "150"), 2, "150.0 is not in the range 0<=x<=100"),
        (("stage", "rollback", "--to", "halfway"), 2, "'halfway' is not one of"),
    ]:
        result = run(*args)
        assert result.exit_code == code and message in result.output, (args, result.output)
        assert "Traceback" not in result.output

    held = run("stage", "hold")
    assert held.exit_code == 0 and ", at 50 %, held: held at 50 % by cli:" in held.output
    history = run("stage", "history").output.splitlines()
    assert [line.split()[3] for line in history] == ["hold", "advance"]
    assert json.loads(run("stage", "history", "--json", "--limit", "1").output)[0]["plan"]["stages"] == [50.0, 100.0]


def test_a_rollback_from_the_cli_reports_its_notification(run):
    assert run("stage", "set", "50").exit_code == 0
    with NotifyServer() as hook:
        result = run("stage", "rollback", "--reason", "bad answers", ROLLOUT_NOTIFY_URL=hook.url)
    assert result.exit_code == 0, result.output
    assert ", 50 % -> 0 %, rolled_back: rolled back to 0 % by cli:" in result.output
    assert f"notified {hook.url.split('?')[0]} (1 attempt(s))" in result.output
    assert hook.requests[0]["body"]["event"] == "rollback" and hook.requests[0]["body"]["actor"].startswith("cli:")

    assert run("stage", "set", "50").exit_code == 0
    failed = run("stage", "rollback", ROLLOUT_NOTIFY_URL="http://127.0.0.1:9/hook", ROLLOUT_NOTIFY_ATTEMPTS="1",
                 ROLLOUT_NOTIFY_TIMEOUT_S="1")
    assert failed.exit_code == 0  # the rollback stands; the failed notification is a warning, recorded
    assert "warning: notification to http://127.0.0.1:9/hook not delivered" in failed.output


def test_controller_once(run, runtime):
    assert run("controller", "--once").output == "nothing to judge: the rollout is idle at 0 %\n"
    assert run("stage", "advance").exit_code == 0
    judged = run("controller", "--once")
    assert judged.exit_code == 0
    assert re.match(r"#2 \S+ evaluation hold by controller, at 50 %, running: hold: stage_time: ", judged.output)

    other = LeaderLock(runtime.redis, runtime.stages.leader_key, 30, identity="host-b:42:abcdef")
    assert other.refresh()
    try:
        busy = run("controller", "--once")
        assert busy.exit_code == 1
        assert busy.output == "error: another controller is active (host-b:42:abcdef); nothing was evaluated\n"
    finally:
        other.release()
