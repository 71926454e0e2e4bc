"""`rollout rollback`: percentage to 0 and V2's breaker open, in one step (re-armed by `rollout breaker rearm`)."""

from __future__ import annotations

import click

from rollout.cli import cli
from rollout.cli.breaker import run_action
from rollout.cli.flags import cli_actor


@cli.command()
@click.option("--reason", help="Why (kept in alert_events and flag_audit).")
@click.pass_context
def rollback(ctx: click.Context, reason: str | None) -> None:
    """Emergency rollback in one step: FF_NEW_EMBEDDINGS_PERCENTAGE to 0 and V2's breaker open.

    The old percentage is saved: `rollout breaker rearm` restores it.
    """
    run_action(ctx, lambda actions, _name: actions.rollback(actor=cli_actor(), reason=reason, source="cli"))
