"""`rollout plan lint FILE`: check a plan file before a controller runs it (one line per problem)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from rollout.cli import cli, settings_of
from rollout.configured import rollout_plan
from rollout.controller.planfile import Problem, lint_text


@cli.group()
def plan() -> None:
    """Rollout plan files: stages, gates and metric sources in YAML (see the README)."""


@plan.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print {file, ok, problems: [{line, field, message}]}.")
@click.pass_context
def lint(ctx: click.Context, file: Path, as_json: bool) -> None:
    """Check FILE: its YAML, every field, the gates' sources and queries. Exit 1 when anything is wrong.

    Nothing connects: a source's URL is checked for its form, not reached.
    """
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        found, summary = [Problem(None, "", f"cannot read it: {getattr(exc, 'strerror', None) or exc}")], None
    else:
        built, found = lint_text(text, rollout_plan(settings_of(ctx)), str(file))
        summary = None if built is None else (
            f"{file}: ok: stages {', '.join(f'{s:g}' for s in built.stages)}; {len(built.registry_gates)} registry "
            f"gates; {len(built.metric_gates)} custom gates"
            + (f" ({', '.join(g.name for g in built.metric_gates)})" if built.metric_gates else "")
            + (f"; sources {', '.join(name for name, _ in built.sources)}" if built.sources else ""))
    if as_json:
        click.echo(json.dumps({"file": str(file), "ok": not found, "problems": [p.to_dict() for p in found]}))
    else:
        for problem in found:
            click.echo(problem.render(str(file)), err=True)
        if summary:
            click.echo(summary)
    if found:
        sys.exit(1)
