"""`rollout demo` and `rollout serve`: the gateway under gunicorn, with services when needed."""

from __future__ import annotations

import secrets
import signal
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext

import click
import psycopg

from rollout import demo as demo_steps
from rollout import schema
from rollout.cli import cli, settings_of
from rollout.cli.stage import decision_line
from rollout.config import Settings
from rollout.controller.metrics import ControllerMetrics, serve_metrics, stop_serving
from rollout.controller.process import ControllerProcess
from rollout.maintenance import Maintenance
from rollout.runtime import Runtime
from rollout.server import GatewayProcess
from rollout.services import ServiceUrls, service_urls


@contextmanager
def _terminate_as_interrupt():
    """SIGTERM ends the command like Ctrl-C does, so services are stopped on the way out."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _secrets(settings: Settings) -> tuple[Settings, list[str]]:
    """Admin token and webhook secret from the environment, else generated for this run."""
    generated = []
    changes = {}
    if not settings.admin_token:
        changes["admin_token"] = secrets.token_urlsafe(24)
        generated.append("ROLLOUT_ADMIN_TOKEN")
    if not settings.alert_webhook_secret:
        changes["alert_webhook_secret"] = secrets.token_urlsafe(24)
        generated.append("ALERT_WEBHOOK_SECRET")
    return settings.with_overrides(**changes), generated


def _gateway_env(settings: Settings, urls: ServiceUrls) -> dict[str, str]:
    env = {"DATABASE_URL": urls.database_url, "REDIS_URL": urls.redis_url}
    if settings.admin_token:
        env["ROLLOUT_ADMIN_TOKEN"] = settings.admin_token
    if settings.alert_webhook_secret:
        env["ALERT_WEBHOOK_SECRET"] = settings.alert_webhook_secret
    return env


def _run_gateway(settings: Settings, urls: ServiceUrls, port: int, workers: int, banner, *, hosted=None) -> None:
    """Serve until Ctrl-C; `hosted(url)`, a context manager, runs beside the gateway once it is ready."""
    metrics_dir = settings.metrics_dir or (settings.data_dir.resolve() / f"metrics-{port}")  # one per gateway
    gateway = GatewayProcess(_gateway_env(settings, urls), host=settings.host, port=port, workers=workers,
                             metrics_dir=metrics_dir)
    maintenance = Maintenance(settings, urls.database_url)  # scheduled jobs: here, never in a web worker
    with _terminate_as_interrupt(), maintenance:
        try:
            gateway.start()
            with hosted(gateway.url) if hosted else nullcontext():
                banner(gateway.url)
                code = gateway.wait()
            if code != 0:
                click.echo(f"error: the gateway exited with code {code}", err=True)
                raise SystemExit(code)
        except KeyboardInterrupt:
            click.echo("\nstopping the gateway...")
        finally:
            gateway.stop()


@contextmanager
def background_controller(settings: Settings, database_url: str, redis_url: str) -> Iterator[ControllerProcess]:
    """A controller beside something else in this process (`rollout demo`): its own runtime, stopped on exit.

    Like `rollout controller`, it serves its metrics on ROLLOUT_CONTROLLER_METRICS_PORT when set,
    so a demo can be scraped whole.
    """
    runtime = Runtime(settings, database_url, redis_url, pool_size=2).start()
    server = None
    try:
        metrics = ControllerMetrics()
        if settings.rollout_controller_metrics_port is not None:
            server = serve_metrics(metrics, settings.host, settings.rollout_controller_metrics_port)
        process = ControllerProcess(runtime, retention=False, metrics=metrics).start()
        try:
            yield process
        finally:
            process.shutdown()
    finally:
        if server is not None:
            stop_serving(server)
        runtime.close()


def _demo_companions(settings: Settings, urls: ServiceUrls, fast: bool):
    """The demo's controller, the feed printing its decisions, and with --fast the demo's own traffic."""
    @contextmanager
    def hosted(url: str):
        with ExitStack() as stack:
            process = stack.enter_context(background_controller(settings, urls.database_url, urls.redis_url))
            if settings.rollout_controller_metrics_port is not None:
                click.echo(f"controller metrics on http://{settings.host}:"
                           f"{settings.rollout_controller_metrics_port}/metrics")
            feed = demo_steps.DecisionFeed(process.service.store,
                                           lambda d: click.echo(f"rollout: {decision_line(d)}")).start()
            stack.callback(feed.stop)
            if fast:
                stack.callback(demo_steps.DemoTraffic(url).start().stop)
            yield
    return hosted


@cli.command()
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="HTTP port (default ROLLOUT_PORT, 8000).")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="gunicorn workers (default WEB_CONCURRENCY).")
@click.option("--fast", is_flag=True, help="A short plan (10 -> 100 % in a few minutes) with the demo's own traffic.")
@click.pass_context
def demo(ctx: click.Context, port: int | None, workers: int | None, fast: bool) -> None:
    """Everything in one command: services, schema, demo corpus embedded for every version, gateway, controller.

    Each decision of the rollout (the controller's, a person's, an alert's) is printed as one line.
    """
    settings, generated = _secrets(settings_of(ctx))
    settings, choices = demo_steps.demo_settings(settings, fast=fast)
    port = port or settings.port
    with service_urls(settings) as urls:
        if urls.embedded:
            click.echo(f"services: embedded {' and '.join(urls.embedded)} under {settings.data_dir}")
        applied = schema.upgrade(urls.database_url, settings)
        with psycopg.connect(urls.database_url, connect_timeout=5) as conn:
            schema.check(conn, settings)
        click.echo(f"schema: {'applied ' + ', '.join(applied) if applied else 'up to date'}")
        for line in choices:
            click.echo(line)
        demo_steps.write_webhook_secret(settings)
        runtime = Runtime(settings, urls.database_url, urls.redis_url, pool_size=4)
        try:
            runtime.sync()
            counts = demo_steps.load_corpus(runtime)
            click.echo(f"corpus: {counts.inserted} new, {counts.updated} changed, {counts.unchanged} unchanged")
            for report in demo_steps.embed_corpus(runtime):
                click.echo(f"embedded {report.version}: {report.embedded} documents "
                           f"({runtime.backends[report.version].embedder.model})")
            started = demo_steps.start_first_stage(runtime)
            if started:
                click.echo(f"flags: {', '.join(started)}")
            roles = runtime.router.roles
        finally:
            runtime.close()

        def banner(url: str) -> None:
            _print_demo_banner(url, settings, generated, roles.candidate or roles.baseline)

        _run_gateway(settings, urls, port, workers or settings.web_concurrency, banner,
                     hosted=_demo_companions(settings, urls, fast))


def _print_demo_banner(url: str, settings: Settings, generated: list[str], candidate: str) -> None:
    click.echo(f"\ngateway ready on {url}  (Ctrl-C stops it and the services it started)")
    if settings.console:
        click.echo(f"console: {url}/console  (read-only; log in there with ROLLOUT_ADMIN_TOKEN to act)")
    click.echo()
    for name in generated:
        value = settings.admin_token if name == "ROLLOUT_ADMIN_TOKEN" else settings.alert_webhook_secret
        click.echo(f"generated for this run: export {name}={value}")
    click.echo(f"""
Try:
  curl -s {url}/api/rag/query -H 'Content-Type: application/json' \\
       -d '{{"query": "When does the pool open on weekends?", "user_id": "alice"}}'
  curl -s {url}/api/flags
  curl -s -X POST {url}/api/rollout/stage -H "Authorization: Bearer {settings.admin_token}" \\
       -H 'Content-Type: application/json' -d '{{"action": "advance", "reason": "looks good"}}'
  curl -s {url}/api/rag/versions/{candidate}/health
  rollout versions list             # the registry: baseline, candidate, others (then versions add, stage start)
  curl -s -X POST {url}/api/alerts/webhook -H "Authorization: Bearer {settings.alert_webhook_secret}" \\
       -H 'Content-Type: application/json' -d '{{"type": "error_rate", "severity": "critical", "value": 0.5}}'
       # resolve it: the same with "status": "resolved" (Alertmanager and Grafana resolve by themselves)
  curl -s {url}/api/monitoring/circuit-breaker        # the candidate held off while the alert fires
  rollout recover                   # the recovery path: says what is in the way (here: the alert),
                                    # re-arms the candidate once it resolved, resumes the rollout
  curl -s {url}/metrics | grep '^rag_requests_total'
  curl -s '{url}/api/monitoring/dashboard?range=1h'
  curl -s {url}/api/rollout/status   # the staged rollout: stage, last decision and why
  rollout stage status              # the same in this folder; rollout stage advance|hold|resume|rollback|set
  rollout monitor --range 1h        # baseline beside candidate and the success criteria, here
  rollout compare --k 5             # the demo queries against both versions directly
""")


@cli.command()
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="HTTP port (default ROLLOUT_PORT, 8000).")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="gunicorn workers (default WEB_CONCURRENCY).")
@click.pass_context
def serve(ctx: click.Context, port: int | None, workers: int | None) -> None:
    """Run the gateway under gunicorn (checks the schema first; `rollout db upgrade` applies it)."""
    settings = settings_of(ctx)
    with service_urls(settings) as urls:
        with psycopg.connect(urls.database_url, connect_timeout=5) as conn:
            schema.check(conn, settings)

        def banner(url: str) -> None:
            click.echo(f"gateway ready on {url}")

        _run_gateway(settings, urls, port or settings.port, workers or settings.web_concurrency, banner)
