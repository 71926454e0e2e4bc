"""`rollout migrate setup|run|verify|status`: fill a version's embeddings table and prove it right."""

from __future__ import annotations

import json
import sys

import click
from tqdm import tqdm

from rollout import schema
from rollout.cli import cli, settings_of
from rollout.configured import backfill_options
from rollout.errors import RolloutError
from rollout.migration.backfill import INDEX_POLICIES, backfill_for
from rollout.migration.estimate import estimate
from rollout.migration.index import VectorIndex
from rollout.migration.status import MigrationStatus, category_counts
from rollout.migration.verify import Verifier
from rollout.runtime import command_runtime

INTERRUPTED_EXIT = 130


@cli.group()
def migrate() -> None:
    """Backfill a version's embeddings (the rollout's candidate by default), verify them, show progress."""


def _versions(runtime, version: str | None) -> list[str]:
    """The names `--version` means: all served versions, one by name, or (unset) the candidate."""
    if version == "all":
        return list(runtime.backends)
    return [runtime.version(version).version]


VERSION_OPTION = click.option("--version", "version", default=None, metavar="NAME|all",
                              help="Which version's embeddings (default: the rollout's candidate).")


@migrate.command()
@VERSION_OPTION
@click.pass_context
def setup(ctx: click.Context, version: str) -> None:
    """Apply the schema, create the progress rows, make sure the HNSW index exists.

    From then on, documents written through the API are embedded for this version too.
    """
    settings = settings_of(ctx)
    with command_runtime(settings) as runtime:
        applied = schema.upgrade(runtime.database_url, settings)
        if applied:
            click.echo(f"schema: applied {', '.join(applied)}")
        with runtime.pool.connection() as conn:
            for name in _versions(runtime, version):
                v = runtime.version(name)
                counts = MigrationStatus(v).start(conn)
                built = VectorIndex(v).ensure(conn, maintenance_work_mem=settings.migration_maintenance_work_mem,
                                              maintenance_workers=settings.migration_maintenance_workers)
                total, done = sum(c.total for c in counts), sum(c.done for c in counts)
                click.echo(f"{name}: {done} of {total} documents current in {v.table} ({v.model}), "
                           f"{len(counts)} categories"
                           + (f"; built the HNSW index in {built:.1f} s" if built is not None else ""))


@migrate.command()
@click.option("--version", "version", default=None, metavar="NAME",
              help="Which version (default: the rollout's candidate).")
@click.option("--category", help="Only this category.")
@click.option("--limit", type=click.IntRange(1), help="Embed at most this many documents.")
@click.option("--batch-size", type=click.IntRange(1, 20000), help="Documents per claim (MIGRATION_BATCH_SIZE).")
@click.option("--workers", type=click.IntRange(1, 64), help="Worker threads (MIGRATION_WORKERS).")
@click.option("--index", "index_policy", type=click.Choice(INDEX_POLICIES), default="auto", show_default=True,
              help="auto: drop and rebuild the HNSW index when the run loads a large share of the table.")
@click.option("--retry-failed", is_flag=True, help="Try again documents the provider refused before.")
@click.option("--dry-run", is_flag=True, help="Counts, tokens, cost and time; writes nothing.")
@click.option("--json", "as_json", is_flag=True, help="A JSON summary on stdout.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def run(ctx: click.Context, version: str, category: str | None, limit: int | None, batch_size: int | None,
        workers: int | None, index_policy: str, retry_failed: bool, dry_run: bool, as_json: bool,
        no_progress: bool) -> None:
    """Embed every document the version lacks or holds stale, in batches, resumably.

    Safe to kill at any moment and to run again, and to run on several hosts at once.
    """
    settings = settings_of(ctx)
    options = backfill_options(settings, category=category, limit=limit, batch_size=batch_size,
                               workers=workers, index=index_policy, retry_failed=retry_failed)
    with command_runtime(settings) as runtime:
        target = runtime.version(version)
        version = target.version
        if dry_run:
            with runtime.pool.connection() as conn:
                plan = estimate(conn, target, runtime.document_embedder(target), options,
                                prices=settings.embedding_prices, embedding_batch_size=settings.embedding_batch_size)
            _print_estimate(plan, as_json)
            return
        backfill = backfill_for(runtime, version, options)
        bar = None
        if not no_progress:
            pending = backfill.pending()
            bar = tqdm(total=min(pending, limit) if limit else pending, unit="doc", desc=f"embedding {version}",
                       file=sys.stderr, dynamic_ncols=True)
            backfill.progress = bar.update
        try:
            report = backfill.run()
        finally:
            if bar is not None:
                bar.close()
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        _print_report(report)
    if report.error:
        click.echo(f"error: {report.error}", err=True)
        sys.exit(INTERRUPTED_EXIT if report.error.startswith("interrupted") else 1)


def _print_estimate(plan, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(plan.as_json(), indent=2))
        return
    click.echo(f"dry run for {plan.version} ({plan.provider}, {plan.model}): nothing was written")
    width = max([len(c.category) for c in plan.categories] + [8])
    click.echo(f"  {'category':<{width}}  documents  missing  stale  refused  to embed     tokens")
    for c in plan.categories:
        click.echo(f"  {c.category:<{width}}  {c.documents:>9}  {c.missing:>7}  {c.stale:>5}  "
                   f"{c.failed_skipped:>7}  {c.to_embed:>8}  {c.tokens:>9}")
    click.echo(f"  to embed: {plan.to_embed} documents, about {plan.tokens} tokens")
    if plan.cost_usd is None:
        click.echo(f"  cost: unknown (no price for {plan.model}; set EMBEDDING_PRICES_PER_MTOK)")
    else:
        click.echo(f"  cost: ${plan.cost_usd:.4f} at ${plan.price_per_mtok:g} per 1M tokens")
    if plan.seconds is not None:
        click.echo(f"  time: about {plan.seconds:.0f} s at {plan.docs_per_s:g} documents/s ({plan.rate_basis})")
    click.echo(f"  index: {plan.index_plan}")


def _print_report(report) -> None:
    click.echo(f"{report.version}: embedded {report.embedded} documents in {report.seconds:.1f} s "
               f"({report.docs_per_s:.0f}/s; loading alone {report.load_docs_per_s:.0f}/s)")
    if report.index_dropped:
        built = (f"built again in {report.index_build_seconds:.1f} s" if report.index_build_seconds is not None
                 else "left for the last worker still loading")
        click.echo(f"  HNSW index {', '.join(report.index_dropped)} dropped for the load, {built}")
    if report.skipped:
        click.echo(f"  skipped {report.skipped} already current or deleted meanwhile")
    if report.failed:
        click.echo(f"  {len(report.failed)} documents refused (recorded; skipped until their text changes):")
        for failure in report.failed[:10]:
            click.echo(f"    {failure.id}: {failure.reason}")
    if report.remaining:
        click.echo(f"  {report.remaining} documents still queued (limit, other workers, or an error)")


@migrate.command()
@click.option("--sample", type=click.IntRange(0, 10000), default=50, show_default=True,
              help="Random documents whose titles are asked as queries.")
@click.option("-k", "k", type=click.IntRange(1, 50), default=10, show_default=True,
              help="Results per self-retrieval query (a document counts as found within its top k).")
@click.option("--min-self-retrieval", type=click.FloatRange(0, 1), default=0.8, show_default=True,
              help="Share of titles that must find their document in the top k.")
@click.option("--version", "version", default=None, metavar="NAME|all",
              help="Which version (default: the rollout's baseline and candidate).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def verify(ctx: click.Context, sample: int, k: int, min_self_retrieval: float, version: str | None,
           as_json: bool) -> None:
    """Check versions against `documents`; exit 1 with the reasons when anything is wrong."""
    settings = settings_of(ctx)
    with command_runtime(settings) as runtime:
        names = _versions(runtime, version) if version else None
        report = Verifier(runtime, sample=sample, k=k, min_self_retrieval=min_self_retrieval, versions=names).run()
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        for check in report.checks:
            where = f"{check.version} " if check.version else ""
            click.echo(f"{'ok  ' if check.ok else 'FAIL'}  {where}{check.name}: {check.detail}")
    if not report.ok:
        reasons = "; ".join(f"{c.version + ' ' if c.version else ''}{c.name}: {c.detail}" for c in report.failures)
        raise RolloutError(f"verification failed: {reasons}")
    if not as_json:
        click.echo(f"verified: {', '.join(sorted({c.version for c in report.checks if c.version}))} complete and sound")


@migrate.command()
@VERSION_OPTION
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, version: str, as_json: bool) -> None:
    """Progress per version and category: live counts, and the latest run's rate and errors."""
    settings = settings_of(ctx)
    rows = []
    with command_runtime(settings) as runtime:
        with runtime.pool.connection() as conn:
            for name in _versions(runtime, version):
                v = runtime.version(name)
                runs = MigrationStatus(v).runs(conn)
                queued = dict(conn.execute("SELECT d.category, count(*) FROM embedding_queue q JOIN documents d "
                                           "ON d.id = q.document_id WHERE q.version = %s GROUP BY 1",
                                           (name,)).fetchall())
                for c in category_counts(conn, v):
                    info = runs.get(c.category)
                    rows.append({"version": name, "category": c.category, "total": c.total, "done": c.done,
                                 "failed": c.failed, "pending": c.pending, "queued": queued.get(c.category, 0),
                                 "coverage": round(c.embedded / c.total, 6) if c.total else None,
                                 **(info.as_json() if info else {})})
    if as_json:
        click.echo(json.dumps({"status": rows}, indent=2))
        return
    if not rows:
        click.echo("no documents")
        return
    click.echo(f"{'version':<8}{'category':<18}{'embedded':>9}{'total':>8}{'failed':>8}{'pending':>9}  "
               f"{'state':<9}last run")
    for name in dict.fromkeys(row["version"] for row in rows):
        mine = [row for row in rows if row["version"] == name]
        for row in mine:
            click.echo(_status_line(row))
        click.echo(_status_line({"version": name, "category": "(all)",
                                 **{k: sum(r[k] for r in mine) for k in ("done", "total", "failed", "pending")}}))


def _status_line(row: dict) -> str:
    """One category: `complete` only when nothing is pending or failed."""
    state = "pending" if row["pending"] else "failed" if row["failed"] else "complete"
    line = (f"{row['version']:<8}{row['category'][:17]:<18}{row['done']:>9}{row['total']:>8}{row['failed']:>8}"
            f"{row['pending']:>9}  {state:<9}")
    if row.get("rate"):
        line += f"{row['rate']:.0f} docs/s"
    if row.get("started_at"):
        line += f", started {row['started_at'][:19]}"
        line += f", finished {row['finished_at'][:19]}" if row.get("finished_at") else ", running"
    if row.get("last_error"):
        line += f"; last error: {row['last_error']}"
    return line.rstrip()
