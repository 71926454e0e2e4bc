"""A fake per-version statistics service on 127.0.0.1 (the HTTP JSON metric source's tests).

GET /stats/<version> answers that version's JSON; /slow/<version> answers after 3 s (or when the
server stops); /broken/<version> answers 500 with a plain-text body; an unknown version, 404. With
`authorization` set, a request without that exact Authorization header gets 401. Every request's
Authorization header is kept in `authorizations`.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler

from loopback_server import LoopbackServer


class StatsServer(LoopbackServer):
    name = "fake-stats"
    answers = {"v1": {"stats": {"errors": 2, "requests": 800}, "p95": [0.2, 0.3]},
               "v2": {"stats": {"errors": 40, "requests": 800}, "p95": [0.25, 0.7]}}

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []
        self.authorization: str | None = None
        self.authorizations: list[str | None] = []

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.paths.append(self.path)
                server.authorizations.append(self.headers.get("Authorization"))
                if server.authorization is not None and self.headers.get("Authorization") != server.authorization:
                    self.send_response(401)
                    self.end_headers()
                    self.wfile.write(b"Unauthorized")
                    return
                kind, _, version = self.path.strip("/").partition("/")
                version = version.split("?")[0]
                if kind == "slow":
                    server._closing.wait(3)
                if kind == "broken":
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"internal error")
                    return
                body = json.dumps(server.answers.get(version, {})).encode()
                self.send_response(200 if version in server.answers else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        return Handler
