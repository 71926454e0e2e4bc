"""Loopback ports for the embedded services: keep the one used last time when it is free."""

from __future__ import annotations

import json
import socket
from pathlib import Path


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class PortBook:
    """Remembers each service's port in `services.json` under the data folder."""

    def __init__(self, folder: Path):
        self.path = folder / "services.json"

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def choose(self, service: str) -> int:
        remembered = self._read().get(service)
        if isinstance(remembered, int) and port_is_free(remembered):
            return remembered
        port = free_port()
        book = self._read()
        book[service] = port
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(book, indent=2))
        return port
