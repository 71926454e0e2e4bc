"""A real Prometheus on 127.0.0.1 for a test: data backfilled with promtool, a temporary store, a bounded life.

`with PrometheusServer(folder, openmetrics) as prom:` writes the OpenMetrics text into blocks
(`promtool tsdb create-blocks-from openmetrics`), starts `prometheus` on a free port over
them with no scrape targets, waits until it is ready, and stops it (SIGTERM, then SIGKILL)
when the block ends.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

from tools import need_tool

from rollout.services.ports import free_port


class PrometheusServer:
    def __init__(self, folder: Path, openmetrics: str, *, ready_within_s: float = 60.0) -> None:
        self.prometheus = need_tool("prometheus", "prometheus")
        self.promtool = need_tool("promtool", "prometheus")
        self.folder = folder
        self.openmetrics = openmetrics
        self.ready_within_s = ready_within_s
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> PrometheusServer:
        data, storage = self.folder / "data.om", self.folder / "tsdb"
        data.write_text(self.openmetrics)
        subprocess.run([self.promtool, "tsdb", "create-blocks-from", "openmetrics", str(data), str(storage)],
                       check=True, capture_output=True, timeout=120)
        config = self.folder / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1m\n")
        self.port = free_port()
        log = (self.folder / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [self.prometheus, f"--config.file={config}", f"--storage.tsdb.path={storage}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=30d",
             "--query.lookback-delta=5m"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.ready_within_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"prometheus did not become ready: {(self.folder / 'prometheus.log').read_text()[-2000:]}")

    def __exit__(self, *exc_info: object) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None
