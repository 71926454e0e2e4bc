"""A stdlib-only stand-in for the OpenAI and Gemini embedding APIs on 127.0.0.1.

It answers the two requests the SDKs really send:

- OpenAI `POST {base}/embeddings` (`/v1/embeddings` with the default-style base URL),
- Gemini `POST /{v1|v1beta}/models/{model}:batchEmbedContents`,

with deterministic vectors seeded by the text (`vector_for`), OpenAI's unit
length, Gemini's deliberately not. Every request is recorded; failures, wrong
dimensions and slow answers can be scripted. Use it as a context manager: it
always stops, and a slow answer is cut short when it does.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from loopback_server import LoopbackServer

GEMINI_PATH = re.compile(r"^/(v1|v1beta)/models/([^/:]+):batchEmbedContents$")
OPENAI_PATHS = ("/v1/embeddings", "/embeddings")

OPENAI_ERRORS = {
    400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"), 429: ("requests", "rate_limit_exceeded"),
}
GEMINI_STATUS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: dict

    @property
    def api(self) -> str:
        return "openai" if self.path.split("?")[0] in OPENAI_PATHS else "gemini"

    @property
    def texts(self) -> list[str]:
        if self.api == "openai":
            return list(self.body["input"])
        return [part["text"] for request in self.body["requests"] for part in request["content"]["parts"]]


@dataclass
class ScriptedFailure:
    status: int
    retry_after: str | None = None
    reason: str | None = None  # Gemini ErrorInfo reason, e.g. API_KEY_INVALID


def token_count(text: str) -> int:
    """The fake's token count for a text (a word and its punctuation is one token)."""
    return max(1, len(text.split()))


def vector_for(text: str, dimensions: int, api: str) -> list[float]:
    """The vector the fake answers for `text`: unit length for OpenAI, scaled by 0.5-3.5 for Gemini."""
    rng = random.Random(hashlib.sha256(f"{api}:{text}".encode()).digest())
    values = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    scale = 1.0 if api == "openai" else 0.5 + (len(text) % 7) / 2
    return [v / norm * scale for v in values]


class FakeEmbeddingServer(LoopbackServer):
    name = "fake-embedding-server"

    """`with FakeEmbeddingServer() as server:` serves both APIs until the block ends."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[RecordedRequest] = []
        self.dimension_override: int | None = None
        self.delay_s = 0.0
        self.reverse_order = False  # answer OpenAI's `data` back to front (clients must sort by index)
        self.reject_marker: str | None = None  # a request with a text holding it gets 400, as too-long input does
        self._failures: deque[ScriptedFailure] = deque()
        self._lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _handler_for(self)

    def fail_next(self, status: int, times: int = 1, *, retry_after: str | None = None,
                  reason: str | None = None) -> None:
        """Answer the next `times` requests with `status`, in the API's own error format."""
        with self._lock:
            self._failures.extend(ScriptedFailure(status, retry_after, reason) for _ in range(times))

    def _next_failure(self) -> ScriptedFailure | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def answer(self, path: str, body: dict, key: str) -> tuple[int, dict, dict[str, str]]:
        """(status, JSON body, extra headers) for one request made with API key `key`."""
        if self.delay_s:
            self._closing.wait(self.delay_s)
        route = path.split("?")[0]
        gemini = GEMINI_PATH.match(route)
        if route not in OPENAI_PATHS and not gemini:
            return 404, {"error": {"message": f"no route {route}", "code": 404}}, {}
        api = "gemini" if gemini else "openai"
        failure = self._next_failure()
        if failure is None and self.reject_marker and any(self.reject_marker in text for text in
                                                           RecordedRequest(path, {}, body).texts):
            failure = ScriptedFailure(400)
        if failure:
            headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
            return failure.status, _error_body(api, failure, body, key), headers
        if api == "openai":
            return 200, self._openai_answer(body), {}
        return 200, self._gemini_answer(body), {}

    def _openai_answer(self, body: dict) -> dict:
        texts = body["input"]
        dimensions = self.dimension_override or body.get("dimensions", 1536)
        data = [{"object": "embedding", "index": i, "embedding": vector_for(text, dimensions, "openai")}
                for i, text in enumerate(texts)]
        tokens = sum(token_count(text) for text in texts)
        return {"object": "list", "data": data[::-1] if self.reverse_order else data,
                "model": body["model"], "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    def _gemini_answer(self, body: dict) -> dict:
        embeddings = []
        for request in body["requests"]:
            text = "".join(part.get("text", "") for part in request["content"]["parts"])
            dimensions = self.dimension_override or request.get("outputDimensionality", 3072)
            embeddings.append({"values": vector_for(text, dimensions, "gemini")})
        return {"embeddings": embeddings}


def _error_body(api: str, failure: ScriptedFailure, body: dict, key: str) -> dict:
    """The providers' error shapes; the 4xx messages echo the key, as careless servers might."""
    if api == "openai":
        kind, code = OPENAI_ERRORS.get(failure.status, ("server_error", None))
        message = f"fake {failure.status} for input of {len(body.get('input', []))}"
        if failure.status in (400, 401):
            message += f" (key {key})"
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}
    status = GEMINI_STATUS.get(failure.status, "UNKNOWN")
    error = {"code": failure.status, "message": f"fake {status} (key {key})", "status": status}
    if failure.reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": failure.reason,
                             "domain": "googleapis.com"}]
    return {"error": error}


def _handler_for(server: FakeEmbeddingServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart (delayed ACK)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.loads(raw or b"{}")
            headers = {name.lower(): value for name, value in self.headers.items()}
            server._record(RecordedRequest(self.path, headers, body))
            key = headers.get("x-goog-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
            status, answer, extra = server.answer(self.path, body, key)
            payload = json.dumps(answer).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def log_message(self, format: str, *args) -> None:
            pass

    return Handler
