"""A stdlib-only stand-in for the OpenAI and Gemini chat APIs on 127.0.0.1, for the pairwise judge.

It answers OpenAI `POST /v1/chat/completions` and Gemini
`POST /{v1|v1beta}/models/{model}:generateContent` the way the SDKs expect. Its verdict
is scripted: `content` prefers the list holding `marker` (whatever its position),
`position` always answers A (a judge biased by order). Each call reports `tokens_per_call`
tokens. Failures can be scripted; every request is recorded. It always stops when the
`with` block ends.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler

from loopback_server import LoopbackServer

GEMINI_PATH = re.compile(r"^/(v1|v1beta)/models/([^/:]+):generateContent$")
OPENAI_PATHS = ("/v1/chat/completions", "/chat/completions")


class FakeChatServer(LoopbackServer):
    name = "fake-chat-server"

    def __init__(self, marker: str = "GOOD", tokens_per_call: int = 100):
        super().__init__()
        self.marker = marker
        self.tokens_per_call = tokens_per_call
        self.mode = "content"
        self.prompts: list[str] = []
        self._failures: deque[int] = deque()
        self._lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _handler_for(self)

    def fail_next(self, status: int, times: int = 1) -> None:
        with self._lock:
            self._failures.extend([status] * times)

    def verdict(self, prompt: str) -> str:
        if self.mode == "position":
            return "A"
        first, _, second = prompt.partition("List B:")
        in_first, in_second = self.marker in first.partition("List A:")[2], self.marker in second
        return "T" if in_first == in_second else ("A" if in_first else "B")

    def answer(self, path: str, body: dict) -> tuple[int, dict]:
        route = path.split("?")[0]
        gemini = GEMINI_PATH.match(route)
        if route not in OPENAI_PATHS and not gemini:
            return 404, {"error": {"message": f"no route {route}", "code": 404}}
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
        if failure is not None:
            if gemini:
                return failure, {"error": {"code": failure, "message": "fake failure", "status": "UNAVAILABLE"}}
            return failure, {"error": {"message": "fake failure", "type": "server_error", "param": None,
                                       "code": None}}
        if gemini:
            prompt = "".join(part.get("text", "") for c in body["contents"] for part in c["parts"])
        else:
            prompt = body["messages"][-1]["content"]
        with self._lock:
            self.prompts.append(prompt)
        letter = self.verdict(prompt)
        n = self.tokens_per_call
        if gemini:
            return 200, {"candidates": [{"content": {"parts": [{"text": letter}], "role": "model"},
                                         "finishReason": "STOP", "index": 0}],
                         "usageMetadata": {"promptTokenCount": n - 1, "candidatesTokenCount": 1,
                                           "totalTokenCount": n}}
        return 200, {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": body["model"],
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": letter},
                                  "finish_reason": "stop", "logprobs": None}],
                     "usage": {"prompt_tokens": n - 1, "completion_tokens": 1, "total_tokens": n}}


def _handler_for(server: FakeChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, answer = server.answer(self.path, json.loads(raw or b"{}"))
            payload = json.dumps(answer).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, format: str, *args) -> None:
            pass

    return Handler
