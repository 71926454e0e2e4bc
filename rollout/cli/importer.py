"""`rollout import PATH --format jsonl|chroma|faiss|vespa|weaviate`: bring a corpus in from another vector store."""

from __future__ import annotations

import json
from pathlib import Path

import click

from rollout.cli import cli, settings_of
from rollout.migration.importers import (
    FORMATS,
    apply_import,
    default_namespace,
    plan_import,
    preview,
    read_source,
)
from rollout.runtime import command_runtime


@cli.command(name="import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="What PATH holds.")
@click.option("--namespace", help="First part of every id (default: PATH's name); letters, digits, '.', '-'.")
@click.option("--collection", help="chroma: only this collection; weaviate: only this class.")
@click.option("--content-property", help="weaviate: the property holding the text (default: content, text, body, ...).")
@click.option("--keep-vectors", is_flag=True,
              help="Store the store's vectors for the version of their dimension (they must be that version's model).")
@click.option("--vectors-version", metavar="NAME", help="With --keep-vectors: which version (by name).")
@click.option("--dry-run", is_flag=True, help="Show what was found and what would change; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def import_corpus(ctx: click.Context, path: Path, fmt: str, namespace: str | None, collection: str | None,
                  content_property: str | None, keep_vectors: bool, vectors_version: str | None, dry_run: bool,
                  as_json: bool) -> None:
    """Import the documents of PATH (one transaction: a bad file writes nothing).

    A record's own id is its document's id ({namespace}_{id}); without one, its source and
    chunk metadata or its text. Never its line, so importing an edited file again updates in
    place, and an id that holds another document refuses the import.
    Embed the new documents afterwards with `rollout migrate run` (for each version).
    """
    settings = settings_of(ctx)
    scan = read_source(path, fmt, vectors=keep_vectors or dry_run, collection=collection,
                       content_property=content_property)
    with command_runtime(settings) as runtime:
        plan = plan_import(scan, namespace or default_namespace(path), keep_vectors=keep_vectors,
                           vectors_version=vectors_version,
                           versions={name: backend.settings for name, backend in runtime.backends.items()})
        if dry_run:
            summary = {**plan.as_json(), "would": preview(runtime.pool, plan)}
        else:
            summary = {**plan.as_json(), "result": apply_import(runtime.pool, plan).as_json()}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    _print(summary, dry_run)


def _print_superseded(ids: list[str]) -> None:
    if ids:
        shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
        click.echo(f"note: {len(ids)} documents of an earlier import hold these records under their old ids "
                   f"({shown}); delete them (DELETE /api/documents/<id>) so each record is in the corpus once")


def _print(summary: dict, dry_run: bool) -> None:
    sizes = ", ".join(f"{name} ({size:,} bytes)" for name, size in summary["files"].items())
    click.echo(f"{summary['format']} store {summary['path']}: {sizes}")
    click.echo(f"  {summary['records']} records -> {summary['documents']} documents "
               f"(namespace {summary['namespace']}; {summary['duplicates']} duplicate texts, "
               f"{summary['empty']} without text)")
    categories = ", ".join(f"{name} {count}" for name, count in summary["categories"].items())
    click.echo(f"  categories: {categories or 'none'}")
    if summary["vector_dimensions"]:
        dims = ", ".join(f"{count} of dimension {size}" for size, count in summary["vector_dimensions"].items())
        click.echo(f"  vectors: {dims}")
    for note in summary["notes"]:
        click.echo(f"  {note}")
    if dry_run:
        would = summary["would"]
        click.echo(f"dry run, nothing written: would insert {would['new']}, update {would['changed']}, "
                   f"leave {would['unchanged']} unchanged; {would['already_present']} texts already in the corpus "
                   "under another id")
        _print_superseded(would["superseded"])
        return
    result = summary["result"]
    kept = ", ".join(f"{n} for {v}" for v, n in result["vectors_stored"].items())
    click.echo(f"imported: {result['inserted']} new, {result['updated']} updated, {result['unchanged']} unchanged, "
               f"{result['already_present']} skipped (text already in the corpus)"
               + (f"; vectors stored: {kept}" if kept else ""))
    _print_superseded(result["superseded"])
    click.echo("next: `rollout migrate run --version v1` and `--version v2` embed what has no vector yet")
