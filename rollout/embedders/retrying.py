"""The one retry layer of the cloud embedders: backoff on transient failures, then our errors.

Both SDKs are built with their own retries switched off, so a call is attempted at
most `max_attempts` times in total, whoever the provider. Each embedder only says
how its SDK's exceptions read (`classify` -> `Failure`); which failures are worth
another attempt, how long to wait, and which error a caller finally sees are
decided here, the same way for both.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from rollout.embedders.base import EmbeddingAuthError, EmbeddingError, EmbeddingRejected

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
AUTH_STATUSES = frozenset({401, 403})
REJECTED_STATUSES = frozenset({400, 404, 413, 422})
DETAIL_LIMIT = 300


@dataclass(frozen=True)
class Failure:
    """One failed call as the provider's SDK reported it.

    `status` is None when no answer came back (`network`: a timeout or a broken
    connection). `auth` marks key problems a provider reports with another status
    (Gemini answers a wrong key with 400 API_KEY_INVALID).
    """

    status: int | None = None
    detail: str = ""
    retry_after_s: float | None = None
    network: bool = False
    auth: bool = False

    @property
    def transient(self) -> bool:
        return not self.auth and (self.network or self.status in RETRY_STATUSES)


class _Transient(Exception):
    """Carries a retryable failure through tenacity."""

    def __init__(self, failure: Failure):
        super().__init__(failure.detail)
        self.failure = failure


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds asked for by `retry-after-ms` or `retry-after` (seconds or an HTTP date), if any."""
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            continue
        return max(0.0, when.timestamp() - time.time())
    return None


class RetryPolicy:
    """Call the provider, retrying 408/429/5xx, timeouts and connection errors with jittered backoff.

    A `Retry-After` the provider sends is honoured as a minimum wait, capped at
    `max_wait_s` like the backoff itself, so one header cannot stall a query.
    Messages never carry the API key: a provider that echoes it gets it masked.
    """

    def __init__(self, *, provider: str, key_variable: str, secret: str,
                 classify: Callable[[Exception], Failure | None], max_attempts: int,
                 wait_s: float = 0.5, max_wait_s: float = 20.0):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.provider = provider
        self.key_variable = key_variable
        self.max_attempts = max_attempts
        self.max_wait_s = max_wait_s
        self._secret = secret
        self._classify = classify
        self._backoff = tenacity.wait_exponential_jitter(initial=wait_s, max=max_wait_s, jitter=wait_s)

    def call(self, fn: Callable[[], T]) -> T:
        """`fn()`, retried; any provider failure ends as an `EmbeddingError` subclass."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_Transient),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(self._attempt, fn)
        except _Transient as exc:
            raise self.error_for(exc.failure, attempts=self.max_attempts) from None

    def _attempt(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except Exception as exc:
            failure = self._classify(exc)
            if failure is None:
                raise
            if failure.transient:
                raise _Transient(failure) from None
            raise self.error_for(failure, attempts=1) from None

    def _wait(self, state: tenacity.RetryCallState) -> float:
        backoff = self._backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        asked = exc.failure.retry_after_s if isinstance(exc, _Transient) else None
        if asked is None:
            return backoff
        return max(backoff, min(asked, self.max_wait_s))

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        failure = exc.failure if isinstance(exc, _Transient) else Failure()
        log.warning("%s: %s on attempt %d of %d, retrying in %.2fs", self.provider,
                    self._describe(failure), state.attempt_number, self.max_attempts,
                    state.next_action.sleep if state.next_action else 0.0)

    def error_for(self, failure: Failure, *, attempts: int) -> EmbeddingError:
        """The error a caller branches on, with a message meant to be read."""
        status = failure.status
        if failure.auth or status in AUTH_STATUSES:
            return EmbeddingAuthError(
                f"{self.provider} refused the API key (HTTP {status}); check {self.key_variable}",
                status=status)
        if status in REJECTED_STATUSES:
            return EmbeddingRejected(
                f"{self.provider} rejected the request: {self._describe(failure)}", status=status)
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return EmbeddingError(f"{self.provider}: {self._describe(failure)}{tries}", status=status)

    def _describe(self, failure: Failure) -> str:
        detail = failure.detail
        if self._secret:
            detail = detail.replace(self._secret, "***")
        if len(detail) > DETAIL_LIMIT:
            detail = detail[:DETAIL_LIMIT] + "..."
        if failure.status is None:
            return detail or "no answer"
        return f"HTTP {failure.status}" + (f" ({detail})" if detail else "")
