"""The gateway as a gunicorn process: started by `rollout serve` / `rollout demo`, tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from rollout.errors import ServiceError
from rollout.metrics import MetricsFolder
from rollout.services.ports import port_is_free

APP = "rollout.app:create_app()"
CONFIG = "python:rollout.gunicorn_config"
READY_PREFIX = "ready_"  # + a worker's pid, in the multiprocess folder (not *.db: the metrics ignore it)


def ready_markers(metrics_dir: Path) -> list[Path]:
    """The workers that have loaded the app (gunicorn's post_worker_init writes one file each)."""
    return list(Path(metrics_dir).glob(f"{READY_PREFIX}*"))


class GatewayProcess:
    """A gunicorn master with its workers, in its own process group so it can be stopped whole."""

    def __init__(self, env: Mapping[str, str], *, host: str = "127.0.0.1", port: int = 8000, workers: int = 2,
                 metrics_dir: Path | None = None, log_file: Path | None = None, app: str = APP,
                 chdir: Path | None = None):
        self.app = app
        self.chdir = chdir
        self.host = host
        self.port = port
        self.env = {**os.environ, **env, "ROLLOUT_HOST": host, "ROLLOUT_PORT": str(port),
                    "WEB_CONCURRENCY": str(workers)}
        self.workers = workers
        self.metrics_dir = metrics_dir
        if metrics_dir is not None:
            self.env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        self.metrics_dir = metrics_dir
        self.log_file = log_file
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, ready_timeout_s: float = 60.0) -> GatewayProcess:
        if not port_is_free(self.port, self.host):
            raise ServiceError(f"port {self.port} on {self.host} is in use: pass --port or set ROLLOUT_PORT")
        if self.metrics_dir is not None:
            folder = MetricsFolder(self.metrics_dir)
            holder = folder.holder()
            if holder is not None:
                raise ServiceError(folder.in_use_message(holder))
        output = open(self.log_file, "ab") if self.log_file else None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", CONFIG,
             *(["--chdir", str(self.chdir)] if self.chdir else []), self.app],
            env=self.env, stdout=output, stderr=subprocess.STDOUT if output else None, start_new_session=True)
        self.wait_ready(ready_timeout_s)
        return self

    def wait_ready(self, timeout_s: float) -> None:
        """Until /healthz answers and, with a multiprocess folder, every worker has loaded the app (the first
        worker answering says nothing of the others: load sent at once would all go to it)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(f"the gateway exited with code {self.process.returncode} while starting"
                                   + (f"; see {self.log_file}" if self.log_file else ""))
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200 and self._all_workers_loaded():
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise ServiceError(f"the gateway did not become ready on {self.url} within {timeout_s:.0f} s")

    def _all_workers_loaded(self) -> bool:
        return self.metrics_dir is None or len(ready_markers(self.metrics_dir)) >= self.workers

    def wait(self) -> int:
        return self.process.wait()

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (graceful), then SIGKILL to the whole group if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        except ProcessLookupError:
            pass

    def __enter__(self) -> GatewayProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
