"""`rollout eval` and `rollout probe`: relevance of the baseline and the candidate, side by side.

`rollout eval` exits 0 when the candidate is non-inferior on nDCG@10 (within
RELEVANCE_MARGIN) and 1 when it is not, so a script or CI job can stop a rollout before
its first stage. `rollout probe` runs one round of known-item probes now.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from rollout.cli import cli, settings_of
from rollout.cli.monitoring import num, pct, table
from rollout.errors import RolloutError
from rollout.relevance.golden import (
    NDCG_DEPTH,
    EvalReport,
    EvalStore,
    demo_qrels_path,
    evaluate,
    read_qrels,
)
from rollout.relevance.probes import KnownItemProbes, probe_summary
from rollout.relevance.versions import baseline_and_candidate
from rollout.runtime import command_runtime


@cli.command(name="eval")
@click.option("--qrels", "qrels_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help='JSON Lines: {"query": ..., "relevant": {"doc_id": grade 0-3}, "category": ...} '
                   "(default: the demo's labelled set).")
@click.option("--k", type=click.IntRange(1, 50), default=10, show_default=True, help="Depth of recall@k.")
@click.option("--draws", type=click.IntRange(100, 100_000), default=2000, show_default=True,
              help="Bootstrap resamples of the queries.")
@click.option("--record/--no-record", default=True, show_default=True,
              help="Keep the result in relevance_evals (what ROLLOUT_REQUIRE_EVAL reads).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output, every query included.")
@click.pass_context
def eval_command(ctx: click.Context, qrels_file: Path | None, k: int, draws: int, record: bool,
                 as_json: bool) -> None:
    """recall@k, nDCG@10 and MRR of the baseline and the candidate on a labelled query set."""
    settings = settings_of(ctx)
    queries, digest = read_qrels(qrels_file or demo_qrels_path())  # a bad file stops before any service starts
    with command_runtime(settings) as runtime:
        baseline, candidate = baseline_and_candidate(runtime.router.roles)
        searchers = {v: (lambda text, depth, b=runtime.backends[v]: b.search(text, depth).ids)
                     for v in (baseline, candidate)}
        report = evaluate(queries, (baseline, searchers[baseline]), (candidate, searchers[candidate]),
                          k=k, margin=settings.relevance_margin, draws=draws)
        recorded = EvalStore(runtime.pool).record(report, digest) if record else None
    if as_json:
        click.echo(json.dumps({**report.as_json(), "recorded_id": recorded}, indent=2))
    else:
        click.echo(render(report, recorded))
    if not report.passed:
        sys.exit(1)


def interval(measure) -> str:
    return f"{num(measure.mean)} [{num(measure.low)}, {num(measure.high)}]"


def render(report: EvalReport, recorded: int | None) -> str:
    b, c = report.baseline, report.candidate
    rows = [[m, interval(report.versions[b][m]), interval(report.versions[c][m]), interval(report.difference[m])]
            for m in report.measure_names]
    ndcg = f"ndcg@{NDCG_DEPTH}"
    diff = report.difference[ndcg]
    verdict = (f"PASS: {c} is non-inferior on {ndcg} (lower bound {diff.low:+.3f} >= -{report.margin:g})"
               if report.passed else
               f"FAIL: {c} may be worse on {ndcg} (lower bound {diff.low:+.3f} < -{report.margin:g})")
    lines = [(f"{report.queries} labelled queries, baseline {b}, candidate {c}; means with 95 % bootstrap "
             "intervals (paired for the difference)"), "",
             table(["", f"{b} (baseline)", f"{c} (candidate)", "difference"], rows)]
    if report.categories:
        lines += ["", table(["category", f"{ndcg} {b}", f"{ndcg} {c}"],
                            [[cat, num(v[b]), num(v[c])] for cat, v in report.categories.items()])]
    lines += ["", verdict]
    if recorded is not None:
        lines.append(f"recorded as eval #{recorded}")
    return "\n".join(lines)


@cli.command(name="probe")
@click.option("--per-category", type=click.IntRange(1, 1000), default=None,
              help="Documents drawn per category (default RELEVANCE_PROBES_PER_CATEGORY).")
@click.option("--seed", type=int, default=None, help="Draw the same documents every time.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def probe_command(ctx: click.Context, per_category: int | None, seed: int | None, as_json: bool) -> None:
    """One round of known-item probes: does each version find the document a probe was made from?"""
    settings = settings_of(ctx)
    with command_runtime(settings) as runtime:
        probes = KnownItemProbes(runtime.pool, runtime.backends, k=settings.relevance_probe_k,
                                 per_category=per_category or settings.relevance_probes_per_category, seed=seed)
        results = probes.run()
        if not results:
            raise RolloutError("the corpus is empty: there is no document to probe with")
        summary = probe_summary(runtime.pool, since_s=3600)
    rounds = {}
    for r in results:
        cell = rounds.setdefault(r.version, {"probes": 0, "hits": 0, "rr": 0.0, "errors": 0})
        cell["errors" if r.error else "probes"] += 1
        cell["hits"] += r.rank is not None
        cell["rr"] += 1 / r.rank if r.rank else 0.0
    this_round = {v: {"probes": c["probes"], "hits": c["hits"], "errors": c["errors"],
                      "hit_rate": c["hits"] / c["probes"] if c["probes"] else None,
                      "mrr": c["rr"] / c["probes"] if c["probes"] else None} for v, c in rounds.items()}
    if as_json:
        click.echo(json.dumps({"k": settings.relevance_probe_k, "round": this_round, "last_hour": summary}, indent=2))
        return
    versions = list(this_round)
    rows = [["probes", *(str(this_round[v]["probes"]) for v in versions)],
            [f"hit@{settings.relevance_probe_k}", *(pct(this_round[v]["hit_rate"]) for v in versions)],
            ["reciprocal rank", *(num(this_round[v]["mrr"]) for v in versions)],
            ["errors", *(str(this_round[v]["errors"]) for v in versions)]]
    click.echo(table(["known-item probes", *versions], rows))
