"""Notifications: a rollback (or a pause that needs a person) POSTed as JSON to ROLLOUT_NOTIFY_URL.

Delivery never holds up the controller or a request: `send` hands the POST to one
background thread and returns. Each attempt is bounded by ROLLOUT_NOTIFY_TIMEOUT_S; a
network error, a timeout, 408, 429 or a 5xx answer is retried (tenacity, exponential
backoff) up to ROLLOUT_NOTIFY_ATTEMPTS times; another 4xx fails at once. How it went
(sent or failed, attempts, HTTP status, error) is logged and handed to `on_result`,
which the service stores on the decision's row. The body carries a `text` line too,
so a Slack or Mattermost incoming webhook shows it as it is.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

log = logging.getLogger(__name__)

RETRIED_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
Record = dict[str, object]   # how delivery went, as stored on the decision's row
ResultSink = Callable[[int, Record], None]


class _Retryable(Exception):
    """A failure worth another attempt (network, timeout, 408/429/5xx)."""


class _Refused(Exception):
    """The receiver refused the notification (a 4xx other than 408/429): retrying would not help."""


def redacted(url: str) -> str:
    """The URL without credentials or query string (webhook URLs often carry their secret there)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


class Notifier:
    def __init__(self, url: str | None, *, token: str | None = None, timeout_s: float = 5.0, attempts: int = 3,
                 backoff_s: float = 0.5, on_result: ResultSink | None = None):
        self.url = url
        self.token = token
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.on_result = on_result
        self._executor: ThreadPoolExecutor | None = None
        self._pending: dict[int, Future[Record]] = {}  # by decision id: queued or being delivered by this process
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return bool(self.url)

    @property
    def delivery_deadline_s(self) -> float:
        """Longer than any delivery can take here (every attempt timing out, every backoff at its cap):
        a notification still `pending` after this was left behind by a process that stopped."""
        return self.attempts * (self.timeout_s + 10.0) + 30.0

    def in_flight(self, decision_id: int) -> bool:
        with self._lock:
            return decision_id in self._pending

    def initial_record(self) -> Record:
        """What the decision's row says before delivery ends."""
        if not self.url:
            return {"status": "not_configured"}
        return {"status": "pending", "url": redacted(self.url)}

    def send(self, decision_id: int, payload: Mapping[str, object]) -> Future[Record] | None:
        """Queue the POST and return at once (None when no URL is configured)."""
        if not self.url:
            return None
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rollout-notify")
            future = self._executor.submit(self._deliver, self.url, decision_id, payload)
            self._pending[decision_id] = future
        future.add_done_callback(lambda done: self._finished(done, decision_id))
        return future

    def _finished(self, future: Future[Record], decision_id: int) -> None:
        with self._lock:
            if self._pending.get(decision_id) is future:
                del self._pending[decision_id]

    def close(self, timeout_s: float = 30.0) -> None:
        """Let queued notifications finish (within `timeout_s`), then stop the thread."""
        with self._lock:
            executor, pending = self._executor, list(self._pending.values())
            self._executor = None
        if executor is None:
            return
        _, left = wait(pending, timeout=timeout_s)
        if left:
            log.error("rollout notification: %d not delivered before shutdown", len(left))
        executor.shutdown(wait=not left, cancel_futures=True)

    # -- the notification thread -------------------------------------------------------------
    def _deliver(self, url: str, decision_id: int, payload: Mapping[str, object]) -> Record:
        attempts = 0
        result: Record = {"url": redacted(url)}

        def post() -> int:
            nonlocal attempts
            attempts += 1
            return self._post(url, payload)

        try:
            status = Retrying(stop=stop_after_attempt(self.attempts),
                              wait=wait_exponential(multiplier=self.backoff_s, max=10),
                              retry=retry_if_exception_type(_Retryable), reraise=True)(post)
            result.update(status="sent", http_status=status)
            log.info("rollout notification for decision %d sent (%d attempts)", decision_id, attempts)
        except (_Retryable, _Refused) as exc:
            result.update(status="failed", error=str(exc))
            log.error("rollout notification for decision %d failed after %d attempts: %s", decision_id, attempts,
                      exc)
        result.update(attempts=attempts, at=datetime.now(UTC).isoformat())
        if self.on_result is not None:
            try:
                self.on_result(decision_id, result)
            except Exception as exc:  # the delivery stands; only its record is missing
                log.error("rollout notification result not recorded for decision %d: %s", decision_id, exc)
        return result

    def _post(self, url: str, payload: Mapping[str, object]) -> int:
        headers = {"Content-Type": "application/json", "User-Agent": "rag-rollout-controller"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers, method="POST")
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status: int = response.status
                return status
        except urllib.error.HTTPError as exc:
            message = f"HTTP {exc.code} from {redacted(url)}"
            if exc.code in RETRIED_STATUSES:
                raise _Retryable(message) from None
            raise _Refused(message) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Retryable(f"{redacted(url)} unreachable after {time.monotonic() - started:.1f} s: "
                             f"{reason}") from None
