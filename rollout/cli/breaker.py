"""`rollout breaker status|open|close|rearm`: the same breakers, actions and records as the API."""

from __future__ import annotations

import json

import click

from rollout.alerts import ActionResult
from rollout.breaker import BreakerConflict, BreakerUnavailable
from rollout.cli import cli, settings_of
from rollout.cli.flags import cli_actor
from rollout.errors import RolloutError
from rollout.runtime import command_runtime


@cli.group()
def breaker() -> None:
    """Circuit breakers per version (shared by every worker through Redis)."""


@breaker.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """State of each version's breaker, why it is open, and the alerts holding the candidate."""
    with command_runtime(settings_of(ctx)) as runtime:
        report = runtime.breakers.describe()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for version, record in report["versions"].items():
        line = f"{version}  {record['state']:<9}  failures {record['failures']}/{record['fail_max']}"
        if record["state"] != "closed":
            line += f"  cause {record['cause']}"
            if record["detail"]:
                line += f" ({record['detail']})"
            if record["opened_at"]:
                line += f"  since {record['opened_at']}"
            if record["awaiting_rearm"]:
                line += "  awaiting re-arm"
            if record["next_probe_at"]:
                line += f"  probe after {record['next_probe_at']}"
        click.echo(line)
    for alert in report["firing_alerts"]:
        click.echo(f"firing: {alert['alertname']} [{alert['severity']}] fingerprint {alert['fingerprint']} "
                   f"({alert['source']})")
    if report["saved_percentage"] is not None:
        click.echo(f"saved percentage for the restore: {report['saved_percentage']:g}")
    if report["redis"] != "ok":
        click.echo("warning: Redis is unreachable; showing no shared state", err=True)


def run_action(ctx: click.Context, action, version: str | None = None) -> None:
    """Run one RollbackActions call with Redis reachable (on VERSION, default: the rollout's candidate);
    print its outcome and actions."""
    with command_runtime(settings_of(ctx)) as runtime:
        if not runtime.replicator.healthy:
            raise RolloutError(f"Redis is unreachable ({runtime.replicator.last_error}); nothing was changed")
        name = runtime.version(version).version
        try:
            result: ActionResult = action(runtime.rollback, name)
        except (BreakerConflict, BreakerUnavailable) as exc:
            raise RolloutError(str(exc)) from None
    click.echo(f"{result.outcome}: {'; '.join(result.actions) or 'nothing to change'}")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)


@breaker.command(name="open")
@click.argument("version", required=False)
@click.option("--reason", help="Why (kept in alert_events).")
@click.pass_context
def open_breaker(ctx: click.Context, version: str, reason: str | None) -> None:
    """Hold VERSION (default: the candidate) off on every worker until it is closed or re-armed."""
    run_action(ctx, lambda actions, name: actions.open(name, actor=cli_actor(), reason=reason, source="cli"),
               version)


@breaker.command(name="close")
@click.argument("version", required=False)
@click.option("--reason", help="Why (kept in alert_events).")
@click.option("--force", is_flag=True, help="Even though a tripping alert still fires.")
@click.option("--restore", is_flag=True, help="Also restore the percentage saved by the rollback.")
@click.pass_context
def close_breaker(ctx: click.Context, version: str, reason: str | None, force: bool, restore: bool) -> None:
    """Serve VERSION again now (failure count reset)."""
    run_action(ctx, lambda actions, name: actions.close(name, actor=cli_actor(), reason=reason, source="cli",
                                                        force=force, restore=restore), version)


@breaker.command()
@click.argument("version", required=False)
@click.option("--reason", help="Why (kept in alert_events).")
@click.option("--force", is_flag=True, help="Even though a tripping alert still fires.")
@click.option("--restore/--no-restore", default=None,
              help="Restore the percentage saved by the rollback (default: ALERT_RESTORE_PERCENTAGE).")
@click.pass_context
def rearm(ctx: click.Context, version: str, reason: str | None, force: bool, restore: bool | None) -> None:
    """Half-open VERSION after its alerts resolved: one probe request decides."""
    settings = settings_of(ctx)
    restore = settings.alert_restore_percentage if restore is None else restore
    run_action(ctx, lambda actions, name: actions.rearm(name, actor=cli_actor(), reason=reason, source="cli",
                                                        force=force, restore=restore), version)
