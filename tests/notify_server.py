"""A webhook receiver on 127.0.0.1 for notification tests: records each POST, answers as scripted."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class NotifyServer:
    """`statuses`: the answer to each request in turn (the last one repeats). `gate`: requests wait on it."""

    def __init__(self, statuses: tuple[int, ...] = (200,), gate: threading.Event | None = None):
        self.statuses = list(statuses)
        self.gate = gate
        self.requests: list[dict] = []
        self.arrived = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.requests.append({"body": json.loads(body), "headers": dict(self.headers)})
                server.arrived.set()
                if server.gate is not None:
                    server.gate.wait(10)
                status = server.statuses[min(len(server.requests), len(server.statuses)) - 1]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="notify-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/rollout?secret=s3cret"

    def __enter__(self) -> NotifyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.gate is not None:
            self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()
