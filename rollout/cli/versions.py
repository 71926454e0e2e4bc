"""`rollout versions list|show|add|promote|retire|drop`: the registry of embedding versions."""

from __future__ import annotations

import json

import click

from rollout.cli import cli, settings_of
from rollout.embedders.registry import PROVIDERS, provider
from rollout.services import service_urls
from rollout.versions import EmbeddingVersion, VersionError, VersionRegistry

JSON = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _registry(ctx: click.Context):
    """The registry on the configured database (embedded services are started if unset)."""
    settings = settings_of(ctx)
    urls = ctx.with_resource(service_urls(settings))
    return VersionRegistry(urls.database_url)


def _line(version: EmbeddingVersion) -> str:
    return (f"{version.name:<12} {version.status:<10} {version.provider}/{version.model} "
            f"{version.vector_type}({version.dimensions}) {version.table_name}")


def _echo(version: EmbeddingVersion, as_json: bool, verb: str) -> None:
    click.echo(json.dumps(version.to_dict(), indent=2) if as_json else f"{verb} {_line(version)}")


@cli.group()
def versions() -> None:
    """Embedding versions: register one, promote the rollout's candidate, retire or drop an old one."""


@versions.command("list")
@JSON
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """Every version: the baseline first, then the candidate, the others by age."""
    found = _registry(ctx).versions()
    if as_json:
        click.echo(json.dumps([v.to_dict() for v in found], indent=2))
        return
    for version in found:
        click.echo(_line(version))


@versions.command()
@click.argument("name")
@JSON
@click.pass_context
def show(ctx: click.Context, name: str, as_json: bool) -> None:
    """One version in full."""
    version = _registry(ctx).get(name)
    if as_json:
        click.echo(json.dumps(version.to_dict(), indent=2))
        return
    for key, value in version.to_dict().items():
        click.echo(f"{key}: {'' if value is None else value}")


@versions.command()
@click.argument("name")
@click.option("--provider", "provider_name", required=True,
              help=f"Who embeds: {', '.join(PROVIDERS)} (credentials from the environment).")
@click.option("--model", default=None, help="Default: the provider's default model.")
@click.option("--dimensions", type=int, required=True, help="vector: 1-2000; halfvec: 1-4000.")
@click.option("--halfvec", is_flag=True, help="Store half-precision vectors (up to 4000 dimensions).")
@click.option("--notes", default="", help="Why this version exists.")
@JSON
@click.pass_context
def add(ctx: click.Context, name: str, provider_name: str, model: str | None, dimensions: int, halfvec: bool,
        notes: str, as_json: bool) -> None:
    """Register a version and create its table and HNSW index (then `rollout migrate run --version NAME`)."""
    settings = settings_of(ctx)
    version = _registry(ctx).add(name, provider_name, dimensions, model=model, halfvec=halfvec, notes=notes,
                                 check=lambda spec: provider(spec.embedder).build(spec, settings))
    _echo(version, as_json, "added")


@versions.command()
@click.argument("name")
@JSON
@click.pass_context
def promote(ctx: click.Context, name: str, as_json: bool) -> None:
    """Make a complete rollout's candidate the baseline; the old baseline stays, read-only."""
    _echo(_registry(ctx).promote(name), as_json, "promoted")


@versions.command()
@click.argument("name")
@JSON
@click.pass_context
def retire(ctx: click.Context, name: str, as_json: bool) -> None:
    """Stop writing and serving a version; its table stays until `drop`."""
    _echo(_registry(ctx).retire(name), as_json, "retired")


@versions.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Confirm: the version's embeddings are deleted.")
@click.option("--force", is_flag=True, help="Also the baseline, the candidate, or a version that served "
                                            "traffic in the last 24 h.")
@JSON
@click.pass_context
def drop(ctx: click.Context, name: str, yes: bool, force: bool, as_json: bool) -> None:
    """Delete a version's table and registration (its query log rows stay)."""
    if not yes:
        raise VersionError(f"dropping {name} deletes its embeddings; add --yes to confirm")
    _echo(_registry(ctx).drop(name, force=force), as_json, "dropped")
