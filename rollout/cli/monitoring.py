"""`rollout monitor`, `rollout compare`, `rollout baseline`: the baseline beside the candidate in the terminal
(or as JSON).

The figures come from `rollout.analytics` (the same code as the dashboard API);
this module only lays them out.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import click

from rollout import demo
from rollout.analytics.figures import RANGES, Baseline, Dashboard, VersionFigures
from rollout.analytics.queryset import QuerySetReport, compare_query_set, read_queries
from rollout.cli import cli, settings_of
from rollout.configured import judge_setup
from rollout.errors import RolloutError
from rollout.formatting import rate_percent
from rollout.relevance.judges import JUDGES, JudgeError, build_judge
from rollout.relevance.judging import judge_lists
from rollout.relevance.summary import render_relevance, runtime_relevance
from rollout.runtime import Runtime, command_runtime

STATUS = {"pass": ("PASS", "green"), "fail": ("FAIL", "red"), "insufficient_data": ("WAIT", "yellow"),
          "incomplete": ("INCOMPLETE", "yellow")}


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned first column, right-aligned others, two spaces apart."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=False))).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


pct = rate_percent  # the tables' short name


def num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def version_rows(figures: Sequence[VersionFigures]) -> list[list[str]]:
    def row(label, fn):
        return [label, *(fn(f) for f in figures)]

    return [
        row("requests", lambda f: str(f.requests)),
        row("share actual / target", lambda f: f"{pct(f.actual_share)} / {pct(f.target_share)}"),
        row("latency p50 (ms)", lambda f: ms(f.p50_ms)),
        row("latency p95 (ms)", lambda f: ms(f.p95_ms)),
        row("latency p99 (ms)", lambda f: ms(f.p99_ms)),
        row("error rate", lambda f: f"{pct(f.error_rate, 2)} ({f.errors})"),
        row("fallbacks to the baseline", lambda f: str(f.fallbacks)),
        row("mean top similarity (own scale)", lambda f: f"{num(f.mean_top_similarity)} ({f.similarity_samples})"),
        row("cache hit rate", lambda f: pct(f.cache_hit_rate)),
        row("shadow overlap / rbo", lambda f: f"{num(f.shadow.mean_overlap)} / {num(f.shadow.mean_rbo)} "
                                              f"({f.shadow.compared})"),
        row("shadow top-1 agreement", lambda f: pct(f.shadow.top1_agreement_rate)),
    ]


def styled(status: str) -> str:
    word, colour = STATUS[status]
    return click.style(word.ljust(4), fg=colour, bold=True)


def render_dashboard(d: Dashboard) -> str:
    baseline, candidate = d.pair
    head = (f"{baseline} vs {candidate}, last {d.range} (until {d.until:%Y-%m-%d %H:%M:%S} UTC): {d.queries} queries, "
            f"{d.merged_queries} merged, {d.failed_queries} unanswered, {d.critical_errors_24h} critical in 24 h")
    figures = [d.versions[baseline], d.versions[candidate]]
    lines = [head, "", table(["", baseline, candidate], version_rows(figures)), "",
             f"success criteria: {styled(d.verdict)}"]
    lines += [f"  {styled(c.status)}  {c.description}: {c.detail}" for c in d.criteria]
    return "\n".join(lines)


def _dashboard(runtime: Runtime, range_name: str) -> Dashboard:
    runtime.sync()  # the current flags, for the target share
    return runtime.figures.dashboard(range_name, runtime.flags.snapshot())


@cli.command()
@click.option("--range", "range_name", type=click.Choice(list(RANGES)), default="24h", show_default=True,
              help="The window of query_log to read.")
@click.option("--continuous", is_flag=True, help="Refresh until Ctrl-C (or --count refreshes).")
@click.option("--interval", type=click.FloatRange(min=1), default=300.0, show_default=True,
              help="Seconds between refreshes with --continuous.")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after this many refreshes.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document per refresh.")
@click.pass_context
def monitor(ctx: click.Context, range_name: str, continuous: bool, interval: float, count: int | None,
            as_json: bool) -> None:
    """The baseline beside the candidate from query_log, and the success criteria (the dashboard API's figures)."""
    refreshes = count if continuous else 1
    with command_runtime(settings_of(ctx)) as runtime:
        shown = 0
        try:
            while refreshes is None or shown < refreshes:
                d = _dashboard(runtime, range_name)
                relevance = runtime_relevance(runtime, d.since)
                if as_json:
                    click.echo(json.dumps({**d.as_json(), "relevance": relevance}, default=str))
                else:
                    if continuous and shown and sys.stdout.isatty():
                        click.clear()
                    click.echo(render_dashboard(d))
                    click.echo(render_relevance(relevance))
                shown += 1
                if refreshes is None or shown < refreshes:
                    if not as_json:
                        click.echo(f"\nnext refresh in {interval:g} s (Ctrl-C stops)\n")
                    time.sleep(interval)
        except KeyboardInterrupt:
            click.echo("\nstopped", err=True)


@cli.command(name="compare")
@click.option("--queries", "queries_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="One query per line (default: the demo query set).")
@click.option("--k", type=click.IntRange(1, 50), default=10, show_default=True, help="Results per query.")
@click.option("--category", default=None, help="Only this category.")
@click.option("--show", type=click.IntRange(min=0), default=5, show_default=True,
              help="How many of the most-disagreeing queries to list.")
@click.option("--judge", "judge_name", type=click.Choice(["none", *JUDGES]), default=None,
              help="Judge each listed disagreement (default RELEVANCE_JUDGE; lexical is offline and free).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output, every query included.")
@click.pass_context
def compare_command(ctx: click.Context, queries_file: Path | None, k: int, category: str | None, show: int,
                    judge_name: str | None, as_json: bool) -> None:
    """Run a query set against the baseline and the candidate directly (no routing) and compare their results."""
    queries = read_queries(queries_file or demo.queries_path())
    settings = settings_of(ctx)
    judge = build_judge(judge_setup(settings, judge_name))
    with command_runtime(settings) as runtime:
        roles = runtime.router.roles
        report = compare_query_set(runtime.backends, (roles.baseline, roles.candidate or roles.baseline), queries,
                                   k, category)
    verdicts = judge_disagreements(judge, report.disagreements(show), report.names) if judge is not None else {}
    if not any(run.result.hits for pair in report.pairs for run in pair.runs.values() if run.result):
        raise RolloutError("neither version returned any result: is the corpus loaded and embedded?")
    summary = report.summary()
    if as_json:
        click.echo(json.dumps({**summary, "disagreements": [{**p.as_json(), **verdicts.get(p.query, {})}
                                                            for p in report.disagreements(show)],
                               "queries_detail": [p.as_json() for p in report.pairs]}, indent=2))
        return
    click.echo(render_comparison(report, summary, show, verdicts))
    if summary["compared"] == 0:
        raise RolloutError("no query was answered by both versions: nothing to compare (see the errors above)")


def judge_disagreements(judge, pairs, names: tuple[str, str]) -> dict[str, dict]:
    """Per query, the judge's verdict on the baseline's and the candidate's lists (asked twice, swapped)."""
    baseline, candidate = names
    verdicts = {}
    for pair in pairs:
        try:
            winner, tokens = judge_lists(judge, pair.query, pair.runs[baseline].result.hits,
                                         pair.runs[candidate].result.hits)
            verdicts[pair.query] = {"judge": judge.name, "verdict": winner, "tokens": tokens}
        except JudgeError as exc:
            verdicts[pair.query] = {"judge": judge.name, "verdict": None, "error": str(exc)}
    return verdicts


def render_comparison(report: QuerySetReport, summary: dict, show: int, verdicts: dict | None = None) -> str:
    v1, v2 = (summary["versions"][name] for name in report.names)

    def dist(d: dict, key: str, fmt) -> str:
        return fmt(d.get(key)) if d.get("count") else "n/a"

    rows = [["errors", str(v1["errors"]), str(v2["errors"])]]
    for key in ("p50", "p95", "p99", "mean"):
        rows.append([f"latency {key} (ms)", dist(v1["latency_ms"], key, ms), dist(v2["latency_ms"], key, ms)])
    for key in ("mean", "p10", "p50", "p90"):
        rows.append([f"top similarity {key}", dist(v1["top_similarity"], key, num),
                     dist(v2["top_similarity"], key, num)])
    agreement = [["overlap@k (Jaccard)", *(dist(summary["overlap"], q, num) for q in ("mean", "p10", "p50", "min"))],
                 ["rank-biased overlap", *(dist(summary["rbo"], q, num) for q in ("mean", "p10", "p50", "min"))],
                 ["Kendall's tau (shared)", *(dist(summary["kendall_tau"], q, num)
                                              for q in ("mean", "p10", "p50", "min"))]]
    lines = [f"{summary['queries']} queries, k={summary['k']}, both versions searched directly "
             f"({summary['compared']} answered by both)", "",
             table(["", *report.names], rows), "",
             table(["agreement", "mean", "p10", "p50", "min"], agreement),
             f"top-1 agreement: {pct(summary['top1_agreement_rate'])}"]
    worst = report.disagreements(show)
    if worst:
        lines += ["", f"the {len(worst)} queries where {' and '.join(report.names)} disagree most:"]
        for pair in worst:
            c = pair.comparison
            lines += [f"  rbo {c.rbo:.3f}  overlap {c.overlap:.3f}  {pair.query}",
                      *(f"      {name}: {' | '.join(pair.top(name))}" for name in report.names)]
            verdict = (verdicts or {}).get(pair.query)
            if verdict is not None:
                said = verdict["verdict"] or f"no verdict ({verdict['error']})"
                lines.append(f"      judge ({verdict['judge']}, order swapped): {said}")
    return "\n".join(lines)


@cli.command()
@click.option("--range", "range_name", type=click.Choice(list(RANGES)), default="24h", show_default=True,
              help="The window of query_log the baseline covers.")
@click.option("--note", default=None, help="Why this baseline (kept with it).")
@click.option("--compare", "compare_", is_flag=True, help="Show the current figures against the stored baseline.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def baseline(ctx: click.Context, range_name: str, note: str | None, compare_: bool, as_json: bool) -> None:
    """Store the baseline version's current figures as the performance reference, or compare with it (--compare)."""
    with command_runtime(settings_of(ctx)) as runtime:
        d = _dashboard(runtime, range_name)
        if compare_:
            stored = runtime.figures.latest_baseline()
            if stored is None:
                raise RolloutError("no baseline is stored yet: run `rollout baseline` while the baseline version "
                                   "serves traffic")
        else:
            if d.versions[d.pair[0]].requests == 0:
                raise RolloutError(f"query_log holds no query of the baseline version over the last {range_name}: "
                                   "turn on FF_ENABLE_QUERY_ANALYTICS and let it serve traffic first (or widen "
                                   "--range)")
            stored = runtime.figures.store_baseline(d, note)
    if not compare_:
        if as_json:
            click.echo(json.dumps(stored.as_json(), default=str, indent=2))
        else:
            f = stored.figures
            click.echo(f"stored baseline #{stored.id} of {d.pair[0]} ({range_name}, {f.requests} queries): p50 "
                       f"{ms(f.p50_ms)} ms, p95 {ms(f.p95_ms)} ms, p99 {ms(f.p99_ms)} ms, error rate "
                       f"{pct(f.error_rate, 2)}, mean top similarity {num(f.mean_top_similarity)}")
        return
    if as_json:
        click.echo(json.dumps({"baseline": stored.as_json(), "current": {v: asdict(f) for v, f in d.versions.items()},
                               "range": range_name}, default=str, indent=2))
        return
    click.echo(render_baseline_comparison(stored, d))


def render_baseline_comparison(stored: Baseline, d: Dashboard) -> str:
    base, (v1, v2) = stored.figures, (d.versions[name] for name in d.pair)

    def ratio(now: float | None, then: float | None) -> str:
        return "n/a" if now is None or not then else f"{now / then:.2f}x"

    rows = [
        ["requests", str(base.requests), str(v1.requests), str(v2.requests), ""],
        ["latency p50 (ms)", ms(base.p50_ms), ms(v1.p50_ms), ms(v2.p50_ms), ratio(v2.p50_ms, base.p50_ms)],
        ["latency p95 (ms)", ms(base.p95_ms), ms(v1.p95_ms), ms(v2.p95_ms), ratio(v2.p95_ms, base.p95_ms)],
        ["latency p99 (ms)", ms(base.p99_ms), ms(v1.p99_ms), ms(v2.p99_ms), ratio(v2.p99_ms, base.p99_ms)],
        ["error rate", pct(base.error_rate, 2), pct(v1.error_rate, 2), pct(v2.error_rate, 2), ""],
        ["mean top similarity", num(base.mean_top_similarity), num(v1.mean_top_similarity),
         num(v2.mean_top_similarity), ""],
        ["cache hit rate", pct(base.cache_hit_rate), pct(v1.cache_hit_rate), pct(v2.cache_hit_rate), ""],
    ]
    when = stored.created_at.astimezone(UTC)
    title = (f"baseline #{stored.id} of {when:%Y-%m-%d %H:%M} UTC ({stored.range}"
             + (f", {stored.note}" if stored.note else "") + f") against the last {d.range} "
             f"(until {datetime.now(UTC):%H:%M} UTC)")
    base_name, cand_name = d.pair
    return "\n".join([title, "", table(["", "stored baseline", f"{base_name} now", f"{cand_name} now",
                                        f"{cand_name} / stored"], rows)])
