"""`rollout recover`: the one recovery path after an alert or a rollback, saying what is still in the way."""

import json

from alert_payloads import simple
from click.testing import CliRunner
from helpers import WEBHOOK_SECRET

from flags import V2_PERCENTAGE
from rollout.cli import command_group
from rollout.controller import Action, Command, Status

cli = command_group()

ALERT = {"Authorization": f"Bearer {WEBHOOK_SECRET}", "Content-Type": "application/json"}


def run(runtime, *args):
    result = CliRunner().invoke(cli, list(args), obj=runtime.settings)
    return result.exit_code, result.output


def test_after_an_alert_recover_names_the_alert_then_rearms_and_resumes(client, runtime):
    runtime.stages.command(Command(Action.ADVANCE, actor="alice", reason="first stage"))
    assert runtime.flags.get(V2_PERCENTAGE) == 10
    assert client.post("/api/alerts/webhook", data=json.dumps(simple()), headers=ALERT).status_code == 200

    code, output = run(runtime, "recover")
    assert code == 1 and output.startswith("in the way: alert ") and "still fires" in output
    assert "resolve it where it fires" in output and runtime.breakers.describe()["versions"]["v2"]["state"] == "open"

    assert client.post("/api/alerts/webhook", data=json.dumps(simple(status="resolved")),
                       headers=ALERT).status_code == 200
    code, output = run(runtime, "recover", "--check")
    assert code == 1
    assert "in the way: the breaker of the candidate v2 is open (alert) and awaits a re-arm" in output
    assert "in the way: the staged rollout is rolled_back at 0 %" in output

    code, output = run(runtime, "recover")
    assert code == 0, output
    assert "done: breaker v2 half-open (one probe decides)" in output
    assert "done: staged rollout resumed" in output and "nothing in the way" in output
    assert runtime.breakers.describe()["versions"]["v2"]["state"] == "half-open"
    assert runtime.stages.store.read().state.status is Status.RUNNING

    code, output = run(runtime, "recover", "--check")
    assert code == 0 and output.startswith("nothing in the way")


def test_after_the_emergency_rollback_recover_restores_the_saved_percentage(runtime):
    runtime.stages.command(Command(Action.ADVANCE, actor="alice", reason="first stage"))
    code, output = run(runtime, "rollback", "--reason", "drill")
    runtime.replicator.sync_now()  # the command ran on its own runtime: read what it wrote, not wait for pub/sub
    assert code == 0 and runtime.flags.get(V2_PERCENTAGE) == 0
    code, output = run(runtime, "recover")
    assert code == 0, output
    runtime.replicator.sync_now()
    assert runtime.flags.get(V2_PERCENTAGE) == 10


def test_the_two_rollbacks_say_which_is_which():
    emergency = " ".join(CliRunner().invoke(cli, ["rollback", "--help"]).output.split())
    plan = " ".join(CliRunner().invoke(cli, ["stage", "rollback", "--help"]).output.split())
    assert "EMERGENCY rollback" in emergency and "rollout stage rollback" in emergency
    assert "PLAN rollback" in plan and "For an emergency, `rollout rollback`" in plan


def test_stage_status_right_after_the_emergency_rollback_shows_it(runtime):
    runtime.stages.command(Command(Action.ADVANCE, actor="alice", reason="first stage"))
    assert run(runtime, "rollback", "--reason", "drill")[0] == 0
    code, output = run(runtime, "stage", "status")
    assert code == 0 and not output.startswith("running at 10 %"), output
    assert output.startswith("rolled_back") or output.startswith("rolled back"), output
