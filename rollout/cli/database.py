"""`rollout db upgrade`: apply the numbered schema files."""

from __future__ import annotations

import click

from rollout import schema
from rollout.cli import cli, settings_of
from rollout.services import service_urls


@cli.group()
def db() -> None:
    """The database schema."""


@db.command()
@click.pass_context
def upgrade(ctx: click.Context) -> None:
    """Apply the schema files of rollout/sql/ that this database lacks (safe to run again)."""
    settings = settings_of(ctx)
    with service_urls(settings) as urls:
        applied = schema.upgrade(urls.database_url, settings)
    if applied:
        for name in applied:
            click.echo(f"applied {name}")
    else:
        click.echo("schema is up to date")
