"""`rollout replay` and `rollout aa`: the gates judging past traffic again, on the controller's looks or on
random splits of one version's users."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import click

from rollout.cli import cli, settings_of
from rollout.configured import rollout_plan
from rollout.controller.aa import gates_for, read_rows, run_aa
from rollout.controller.planfile import read_plan
from rollout.controller.replay import REPLAYED_GATES, rejudge, replayable, stored_looks
from rollout.errors import RolloutError
from rollout.runtime import command_runtime

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration(ctx: click.Context, param: click.Parameter, value: str) -> timedelta:
    """A span back from now: 90s, 30m, 12h, 7d, 2w."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", value)
    if not match or float(match.group(1)) <= 0:
        raise click.BadParameter(f"{value!r} is not a duration such as 30m, 12h or 7d", ctx, param)
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


class NothingToJudge(RolloutError):
    """The window holds nothing the command can judge."""


@cli.command()
@click.option("--since", "span", default="7d", callback=duration, show_default=True,
              help="How far back: the controller's evaluations from then to now.")
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False), default=None,
              help="Judge by this plan file's stages, thresholds and gates instead of each look's stored plan "
                   "(a custom gate reads the metrics stored with the look, or has no data).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per look, with the full verdict.")
@click.pass_context
def replay(ctx: click.Context, span: timedelta, plan_file: str | None, as_json: bool) -> None:
    """Judge the controller's past looks again from query_log, with today's gates and each look's stored plan.

    One line per look: when, the percentage, what was decided then and what the gates decide now.
    """
    settings = settings_of(ctx)
    plan = read_plan(plan_file, rollout_plan(settings)) if plan_file is not None else None
    gates = replayable(plan.gates) if plan is not None else REPLAYED_GATES
    until = datetime.now(UTC)
    with command_runtime(settings) as runtime:
        looks = stored_looks(runtime.pool, runtime.stages.collector, until - span, until)
        count = 0
        for judged in rejudge(looks, gates, plan=plan):
            count += 1
            click.echo(json.dumps(judged.to_dict()) if as_json else judged.line())
    if not count:
        raise NothingToJudge(f"no controller evaluation since {(until - span).isoformat(timespec='seconds')}: "
                             "nothing to replay (`rollout aa` judges traffic without a rollout)")


@cli.command()
@click.option("--since", "span", default="7d", callback=duration, show_default=True, help="How far back.")
@click.option("--version", "version", default=None, help="The version whose users are split (default: the baseline).")
@click.option("--splits", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Random splits, each seeded.")
@click.option("--looks", type=click.IntRange(1, 10_000), default=100, show_default=True,
              help="Looks per split, evenly spread over the window.")
@click.option("--seed", type=int, default=0, show_default=True, help="The first split's seed (the n-th: seed + n).")
@click.option("--max-rows", type=click.IntRange(100), default=200_000, show_default=True,
              help="More rows than this in the window: a uniform random sample of this many.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def aa(ctx: click.Context, span: timedelta, version: str | None, splits: int, looks: int, seed: int, max_rows: int,
       as_json: bool) -> None:
    """A/A test: split one version's real users at random into two arms and judge them as a rollout.

    Both arms are the same version, so a rollback or a pause is a false decision; prints the share of
    splits with one (the controller's budget is ROLLOUT_ROLLBACK_ALPHA a stage).
    """
    settings = settings_of(ctx)
    until = datetime.now(UTC)
    with command_runtime(settings) as runtime:
        name = version or runtime.router.roles.baseline
        plan = runtime.stages.plan
        rows = read_rows(runtime.pool, name, until - span, until, max_rows=max_rows,
                         statement_timeout_ms=settings.monitoring_query_timeout_ms)
    if rows.users < 2:
        raise NothingToJudge(f"{len(rows.at)} routed query_log rows of {name} from {rows.users} users since "
                             f"{(until - span).isoformat(timespec='seconds')}: too few to split")
    report = run_aa(rows, name, plan, splits=splits, looks=looks, seed=seed,
                    gates=gates_for(settings.rollout_quality_gate))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    false_splits = sum(s.false_decision for s in report.splits)
    click.echo(f"A/A on {name}: {report.rows:,} rows from {report.users:,} users since "
               f"{(until - span).isoformat(timespec='seconds')} (sampled {report.sampled_share:.0%}), "
               f"{splits} splits x {looks} looks")
    click.echo(f"false decisions: {false_splits} of {splits} splits ({report.false_decision_rate:.1%}), "
               f"{sum(s.false_looks for s in report.splits)} of {sum(s.looks for s in report.splits)} looks "
               f"({report.false_look_rate:.2%}); budget {plan.thresholds.rollback_alpha:.0%} a stage")
    for outcome in report.splits:
        if outcome.first_false is not None:
            verdict = outcome.first_false.verdict
            click.echo(f"split seed {outcome.seed}: {verdict.outcome.value} at {outcome.first_false.look.label}: "
                       f"{verdict.reason}")
