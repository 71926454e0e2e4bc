"""`rollout controller`: the staged rollout's schedule, in a process of its own (never in a web worker)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import click

from rollout.cli import cli, settings_of
from rollout.cli.stage import decision_line
from rollout.configured import rollout_plan
from rollout.controller.metrics import ControllerMetrics, serve_metrics, stop_serving
from rollout.controller.planfile import read_plan
from rollout.controller.process import ControllerProcess
from rollout.runtime import command_runtime


@cli.command()
@click.option("--once", is_flag=True, help="One evaluation now, as the leader, then exit (cron, tests).")
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Judge by this plan file (stages, gates, metric sources; `rollout plan lint FILE` checks it) "
                   "instead of ROLLOUT_PLAN_FILE or the ROLLOUT_* settings alone.")
@click.option("--retention/--no-retention", default=True, show_default=True,
              help="Also run the query_log retention job (it runs once at a time wherever it is scheduled).")
@click.pass_context
def controller(ctx: click.Context, once: bool, plan_file: Path | None, retention: bool) -> None:
    """Judge the current stage every ROLLOUT_EVALUATION_INTERVAL_S and advance, hold, pause or roll back.

    Run it on one host or several: exactly one is active (a Redis lock with a TTL); the
    others wait and take over when it stops. SIGINT/SIGTERM stop it cleanly.
    """
    settings = settings_of(ctx)
    # a bad file stops here, before services
    plan = read_plan(plan_file, rollout_plan(settings)) if plan_file is not None else None
    logging.getLogger("rollout").setLevel(logging.INFO)  # a daemon's decisions belong in its log
    with command_runtime(settings, replicate=not once) as runtime:
        if plan is not None:
            runtime.follow_plan(plan)
            click.echo(f"controller: judging by {plan_file} ({len(plan.gates)} gates, "
                       f"{len(plan.metric_gates)} of them the plan's own)")
        metrics = ControllerMetrics()
        process = ControllerProcess(runtime, retention=retention and not once, metrics=metrics)
        if once:
            decisions = process.run_once()
            for decision in decisions:
                click.echo(decision_line(decision))
            if not decisions:
                state = runtime.stages.store.read().state
                click.echo(f"nothing to judge: the rollout is {state.status.value} at {state.percentage:g} %")
            return
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda signum, frame: stop.set())
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        server = None
        try:
            if settings.rollout_controller_metrics_port is not None:
                server = serve_metrics(metrics, settings.host, settings.rollout_controller_metrics_port)
                click.echo(f"controller metrics on http://{settings.host}:"
                           f"{settings.rollout_controller_metrics_port}/metrics")
            click.echo(f"controller {process.identity}: running (Ctrl-C stops it)")
            process.run(stop)
        finally:
            if server is not None:
                stop_serving(server)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        click.echo(f"controller {process.identity}: stopped")
