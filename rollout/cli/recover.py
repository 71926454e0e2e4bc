"""`rollout recover`: the one recovery path after an alert or a rollback, and what is still in the way.

Recovery is three steps in a fixed order, each possible only after the one before:
1. the alerts that tripped the candidate's breaker resolve (where they fire: Alertmanager or Grafana
   resolve by themselves once the condition clears; a simple-form alert is resolved by sending
   it again with `"status": "resolved"`), since nothing may serve the candidate while they fire;
2. the candidate's breaker is re-armed (half-open: its next query is its probe), and the percentage the
   rollback saved is restored (ALERT_RESTORE_PERCENTAGE) unless a staged rollout sets it;
3. the staged rollout, paused or rolled back, is resumed (from 0 %: its first stage), so the
   controller judges again.
This command does every step that can be done now and names what is still in the way.
"""

from __future__ import annotations

import sys

import click

from flags import V2_PERCENTAGE
from rollout.cli import cli, settings_of
from rollout.cli.flags import cli_actor
from rollout.controller import Action, Command, Status
from rollout.errors import RolloutError
from rollout.runtime import Runtime, command_runtime


@cli.command()
@click.option("--check", is_flag=True, help="Only say what is in the way; change nothing.")
@click.option("--reason", help="Why (kept in alert_events and the rollout's decisions).")
@click.pass_context
def recover(ctx: click.Context, check: bool, reason: str | None) -> None:
    """After an alert or a rollback: re-arm the candidate and resume the rollout, or say what is still in the way.

    Exit code 0 when nothing is in the way any more, 1 when something still is.
    """
    settings = settings_of(ctx)
    with command_runtime(settings) as runtime:
        if not runtime.replicator.healthy:
            raise RolloutError(f"Redis is unreachable ({runtime.replicator.last_error}); nothing was changed")
        blocked = _recover(runtime, check=check, reason=reason or "recover", restore=settings.alert_restore_percentage)
    sys.exit(1 if blocked else 0)


def _recover(runtime: Runtime, *, check: bool, reason: str, restore: bool) -> bool:
    """Do (or with `check` only report) each step; True while something is still in the way."""
    actor = cli_actor()
    report = runtime.breakers.describe()
    candidate = runtime.router.roles.candidate
    v2 = (report["versions"].get(candidate) if candidate else None) or {"state": "closed"}
    alerts = report["firing_alerts"]
    if alerts:
        for alert in alerts:
            click.echo(f"in the way: alert {alert['alertname']} [{alert['severity']}] from {alert['source']} still "
                       f"fires (fingerprint {alert['fingerprint']}): resolve it where it fires")
        click.echo("then: `rollout recover` again (it re-arms the candidate and resumes the rollout)")
        return True
    blocked = False
    runtime.stages.reconcile()  # a flag change made by the alert or the rollback becomes the rollout's state
    state = runtime.stages.store.read().state
    staged = state.status not in (Status.IDLE, Status.COMPLETE)  # then the plan, not the saved value, sets the share
    if v2["state"] == "open" and v2["awaiting_rearm"]:
        if check:
            click.echo(f"in the way: the breaker of the candidate {candidate} is open ({v2['cause']}) and awaits "
                       "a re-arm")
            blocked = True
        else:
            result = runtime.rollback.rearm(candidate, actor=actor, reason=reason, source="cli",
                                            restore=restore and not staged)
            click.echo(f"done: {'; '.join(result.actions) or result.outcome}")
            for warning in result.warnings:
                click.echo(f"warning: {warning}", err=True)
    elif v2["state"] == "open":
        click.echo(f"in the way: the breaker of the candidate {candidate} opened on failures; it probes by itself "
                   f"after {v2['next_probe_at']}")
        blocked = True
    if state.status in (Status.PAUSED, Status.ROLLED_BACK):
        if check:
            click.echo(f"in the way: the staged rollout is {state.status.value} at {state.percentage:g} %")
            blocked = True
        else:
            decision = runtime.stages.command(Command(Action.RESUME, actor=actor, reason=reason))
            click.echo(f"done: staged rollout resumed ({decision['status_after']} at "
                       f"{decision['percentage_after']:g} %): the controller judges it again")
    elif state.status is Status.HELD:
        click.echo(f"note: the staged rollout is held by a person at {state.percentage:g} %; "
                   "`rollout stage resume` when ready")
    if not blocked:
        click.echo(f"nothing in the way: the candidate serves {runtime.flags.snapshot().values[V2_PERCENTAGE]:g} % "
                   f"of users; the staged rollout is {runtime.stages.store.read().state.status.value}")
    return blocked
