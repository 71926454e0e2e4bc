"""`rollout flags show|set|reset`: the same store, validation and audit as the API."""

from __future__ import annotations

import getpass
import json
import socket

import click

from flags import FlagError, FlagNotAudited, Source, definition
from rollout.cli import cli, settings_of
from rollout.errors import RolloutError
from rollout.runtime import command_runtime


def cli_actor() -> str:
    """Who is acting, for audit rows: the login and host of the terminal."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


@cli.group(name="flags")
def flags_group() -> None:
    """Feature flags (FF_*): values, overrides, changes."""


@flags_group.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def show(ctx: click.Context, as_json: bool) -> None:
    """Every flag, its value and where the value comes from."""
    with command_runtime(settings_of(ctx)) as runtime:
        rows = runtime.flags.describe()
        reachable = runtime.replicator.healthy
    if as_json:
        click.echo(json.dumps({"flags": rows, "redis": "ok" if reachable else "unreachable"}, indent=2))
        return
    width = max(len(r["name"]) for r in rows)
    for row in rows:
        click.echo(f"{row['name']:<{width}}  {_shown(row['value']):>7}  ({row['source']})")
    if not reachable:
        click.echo("warning: Redis is unreachable; showing environment values and defaults", err=True)


def _shown(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}"


@flags_group.command(name="set")
@click.argument("name")
@click.argument("value")
@click.option("--reason", help="Why (kept in flag_audit).")
@click.pass_context
def set_flag(ctx: click.Context, name: str, value: str, reason: str | None) -> None:
    """Override flag NAME with VALUE (true/false, or 0-100 for the percentage)."""
    with command_runtime(settings_of(ctx)) as runtime:
        try:
            flag = definition(name.upper())
            parsed = flag.parse(value)
            snapshot = runtime.flags.snapshot()
            if snapshot.sources[flag.name] is Source.REDIS and snapshot.values[flag.name] == parsed:
                click.echo(f"{flag.name}: already {_shown(parsed)}; nothing changed, nothing recorded")
                return
            change = runtime.flags.set(flag.name, value, actor=cli_actor(), reason=reason)
        except (FlagError, FlagNotAudited) as exc:
            raise RolloutError(str(exc)) from None
    click.echo(f"{change.flag}: {_shown(change.old)} -> {_shown(change.new)} (version {change.version})")


@flags_group.command()
@click.argument("name")
@click.option("--reason", help="Why (kept in flag_audit).")
@click.pass_context
def reset(ctx: click.Context, name: str, reason: str | None) -> None:
    """Drop the override of NAME: back to its environment value or default."""
    with command_runtime(settings_of(ctx)) as runtime:
        try:
            change = runtime.flags.reset(name.upper(), actor=cli_actor(), reason=reason)
        except (FlagError, FlagNotAudited) as exc:
            raise RolloutError(str(exc)) from None
    click.echo(f"{change.flag}: {_shown(change.old)} -> {_shown(change.new)} (override dropped)")
