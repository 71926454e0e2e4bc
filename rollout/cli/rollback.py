"""`rollout rollback`: the emergency rollback, the candidate's breaker open and its percentage 0 at once (undone by
`rollout recover`). Not to be confused with `rollout stage rollback`, a step back of the staged plan."""

from __future__ import annotations

import click

from rollout.cli import cli
from rollout.cli.breaker import run_action
from rollout.cli.flags import cli_actor


@cli.command()
@click.option("--reason", help="Why (kept in alert_events and flag_audit).")
@click.pass_context
def rollback(ctx: click.Context, reason: str | None) -> None:
    """EMERGENCY rollback: the candidate's breaker open and its percentage 0, on every worker at once.

    Recorded in alert_events and flag_audit. The old percentage is saved; `rollout recover`
    re-arms the candidate and restores it. (`rollout stage rollback` is the staged plan's step back instead:
    recorded as a rollout decision, breaker untouched.)
    """
    run_action(ctx, lambda actions, _name: actions.rollback(actor=cli_actor(), reason=reason, source="cli"))
