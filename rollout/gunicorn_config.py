"""gunicorn settings for the gateway (`gunicorn -c python:rollout.gunicorn_config 'rollout.app:create_app()'`).

No preload: each worker builds its own pool, Redis client and replicator thread
after the fork. The master holds its Prometheus multiprocess folder for its life
(`MetricsFolder`: refused if another gateway holds it, wiped when claimed), and a
dead worker's live gauges are dropped when it exits.
"""

import contextlib
import os
import sys

from rollout.config import Settings
from rollout.metrics import FolderInUse, MetricsFolder

_settings = Settings.load()

bind = f"{_settings.host}:{_settings.port}"
workers = _settings.web_concurrency
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = _settings.gunicorn_timeout_s
graceful_timeout = 10
keepalive = 5
preload_app = False
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
proc_name = "rollout-gateway"


def on_starting(server):
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        held = MetricsFolder(folder)
        try:
            held.claim()
        except FolderInUse as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(3) from None
        server.metrics_folder = held  # kept referenced: the lock lives as long as the master


def post_worker_init(worker):
    """This worker has loaded the app: say so, so that GatewayProcess waits for every worker."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        from rollout.server import READY_PREFIX

        open(os.path.join(folder, f"{READY_PREFIX}{worker.pid}"), "w").close()


def child_exit(server, worker):
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        from prometheus_client import multiprocess

        from rollout.server import READY_PREFIX

        multiprocess.mark_process_dead(worker.pid)
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(folder, f"{READY_PREFIX}{worker.pid}"))


def worker_exit(server, worker):
    """A worker stopping gracefully closes its runtime: queued query_log rows are written, pools closed."""
    app = getattr(worker, "wsgi", None)
    runtime = getattr(app, "extensions", {}).get("rollout") if app is not None else None
    if runtime is not None:
        runtime.close()
