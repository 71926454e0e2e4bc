"""`rollout stage status|start|advance|hold|resume|rollback|set|history`: the same service as the admin API."""

from __future__ import annotations

import json

import click

from rollout.cli import cli, settings_of
from rollout.cli.flags import cli_actor
from rollout.controller import Action, Command
from rollout.controller.plan import ROLLBACK_TARGETS
from rollout.runtime import Runtime, command_runtime

PERCENT = click.FloatRange(0, 100)


@cli.group()
def stage() -> None:
    """The staged rollout: where it is and why, and a person's commands (recorded with who gave them)."""


@stage.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Plan, stage, time in stage, next evaluation, the last decision and why; whether the baseline can be retired."""
    with command_runtime(settings_of(ctx)) as runtime:
        runtime.stages.reconcile()  # a rollback made elsewhere shows now, not at the next evaluation
        report = runtime.stages.status()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(report["summary"])
    click.echo(f"plan: {_stages(report)}  (evaluation every {report['plan']['evaluation_interval_s']:g} s, "
               f"rollback to {report['plan']['rollback_to']})")
    if report["reason"]:
        click.echo(f"why: {report['reason']}")
    if report["stage_started_at"]:
        click.echo(f"stage started: {report['stage_started_at']}")
    if report["next_evaluation_at"]:
        click.echo(f"next evaluation: {report['next_evaluation_at']}")
    last = report["last_decision"]
    if last:
        gates = last.get("gates") or []
        click.echo(f"last decision: {decision_line(last, reason=not gates)}")
        for gate in gates:
            if gate["status"] != "passed":
                click.echo(f"  {gate['name']}: {gate['status']}: {gate['reason']}")
    click.echo(f"controller: {report['controller']['detail']}")
    flags = report["flags"]
    click.echo(f"flags: FF_NEW_EMBEDDINGS_PERCENTAGE={flags['FF_NEW_EMBEDDINGS_PERCENTAGE']:g} "
               f"FF_ENABLE_GRADUAL_MIGRATION={str(flags['FF_ENABLE_GRADUAL_MIGRATION']).lower()}")
    for warning in report["warnings"]:
        click.echo(f"warning: {warning}", err=True)


@stage.command()
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="How many.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output, with verdicts and evidence.")
@click.pass_context
def history(ctx: click.Context, limit: int, as_json: bool) -> None:
    """The latest decisions, newest first: evaluations, commands and flag changes made elsewhere."""
    with command_runtime(settings_of(ctx)) as runtime:
        decisions = runtime.stages.decisions(limit, details=as_json)
    if as_json:
        click.echo(json.dumps(decisions, indent=2))
        return
    for decision in decisions:
        click.echo(decision_line(decision))


def _stages(report: dict) -> str:
    marked = [f"[{s:g}]" if s == report["percentage"] else f"{s:g}" for s in report["stages"]]
    return " -> ".join(marked) + " %"


def decision_line(d: dict, *, reason: bool = True) -> str:
    moved = (f"{d['percentage_before']:g} % -> {d['percentage_after']:g} %"
             if d["percentage_before"] != d["percentage_after"] else f"at {d['percentage_after']:g} %")
    line = f"#{d['id']} {d['decided_at']} {d['kind']} {d['action']} by {d['actor']}, {moved}, {d['status_after']}"
    if reason:
        line += f": {d['reason']}"
    if d.get("error"):
        line += f" (error: {d['error']})"
    return line


def _run(ctx: click.Context, command: Command, expected: float | None) -> None:
    with command_runtime(settings_of(ctx)) as runtime:
        decision = runtime.stages.command(command, expected_percentage=expected)
        click.echo(f"{command.action.value}: {decision_line(decision)}")
        for change in decision["flag_changes"]:
            click.echo(f"flag: {change}")
        _report_notification(runtime, decision)


def _report_notification(runtime: Runtime, decision: dict) -> None:
    """A rollback's notification: wait for its delivery (bounded) and say how it went."""
    if not (decision["notification"] or {}).get("status") == "pending":
        return
    runtime.stages.notifier.close()
    stored = runtime.stages.store.decision(decision["id"]) or {}
    result = stored.get("notification") or {}
    if result.get("status") == "sent":
        click.echo(f"notified {result['url']} ({result['attempts']} attempt(s))")
    else:
        click.echo(f"warning: notification to {result.get('url')} not delivered: "
                   f"{result.get('error', result.get('status'))}", err=True)


def _options(function):
    function = click.option("--reason", help="Why (kept with the decision and the flag audit).")(function)
    function = click.option("--expect", "expected", type=PERCENT, default=None,
                            help="Refuse unless the rollout is at this percentage now.")(function)
    return click.pass_context(function)


@stage.command()
@click.option("--baseline", required=True, help="The version users stay on (the registry's baseline).")
@click.option("--candidate", required=True, help="The version rolled out (registered with `rollout versions add`).")
@click.option("--reason", help="Why (kept with the decision and the flag audit).")
@click.pass_context
def start(ctx: click.Context, baseline: str, candidate: str, reason: str | None) -> None:
    """Start rolling CANDIDATE out against BASELINE at the first stage (refused while another is under way)."""
    with command_runtime(settings_of(ctx)) as runtime:
        decision = runtime.stages.start(baseline, candidate, actor=cli_actor(), reason=reason or "")
        click.echo(f"start: {decision_line(decision)}")
        for change in decision["flag_changes"]:
            click.echo(f"flag: {change}")


@stage.command()
@_options
def advance(ctx: click.Context, reason: str | None, expected: float | None) -> None:
    """To the next stage (from 0 %: the first; at 100 %: declare the rollout complete)."""
    _run(ctx, Command(Action.ADVANCE, actor=cli_actor(), reason=reason or ""), expected)


@stage.command()
@_options
def hold(ctx: click.Context, reason: str | None, expected: float | None) -> None:
    """Stop advancing here; the controller still rolls back on a clear failure."""
    _run(ctx, Command(Action.HOLD, actor=cli_actor(), reason=reason or ""), expected)


@stage.command()
@_options
def resume(ctx: click.Context, reason: str | None, expected: float | None) -> None:
    """Hand control back to the controller (after hold, pause or rollback; from 0 %: start)."""
    _run(ctx, Command(Action.RESUME, actor=cli_actor(), reason=reason or ""), expected)


@stage.command()
@click.option("--to", "rollback_to", type=click.Choice(ROLLBACK_TARGETS), default=None,
              help="0 % or the previous stage (default ROLLOUT_ROLLBACK_TO).")
@_options
def rollback(ctx: click.Context, rollback_to: str | None, reason: str | None, expected: float | None) -> None:
    """PLAN rollback: the staged rollout steps back (to 0 % or the previous stage) as a rollout decision.

    The candidate's breaker is untouched and ROLLOUT_NOTIFY_URL is notified; `rollout stage resume` (or
    `rollout recover`) hands it back to the controller. For an emergency, `rollout rollback`.
    """
    _run(ctx, Command(Action.ROLLBACK, actor=cli_actor(), reason=reason or "", rollback_to=rollback_to), expected)


@stage.command(name="set")
@click.argument("percentage", type=PERCENT)
@_options
def set_percentage(ctx: click.Context, percentage: float, reason: str | None, expected: float | None) -> None:
    """Move to PERCENTAGE (0-100): a running rollout goes on from there, otherwise it is held there."""
    _run(ctx, Command(Action.SET, actor=cli_actor(), reason=reason or "", percentage=percentage), expected)
