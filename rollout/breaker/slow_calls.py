"""The slow-call trigger: resilience4j's slowCallRateThreshold over a count-based window.

Consecutive failures miss a provider that still answers, only slowly (or a deadline
that keeps rescuing users): every slow call costs them the hedge. Each worker keeps,
per version, the last `window` calls as slow or not; once it holds at least
`min_calls` and the slow share reaches `rate`, the breaker opens (cause `failures`,
detail `slow_calls`). The window is per process: it needs no Redis on the request
path, and any worker that sees the slowness can open the shared breaker.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class SlowCallPolicy:
    duration_ms: float = 400.0
    rate: float = 0.5
    window: int = 20
    min_calls: int = 10


class SlowCallWindow:
    def __init__(self, policy: SlowCallPolicy):
        self.policy = policy
        self._calls: dict[str, deque[bool]] = {}
        self._lock = threading.Lock()

    def record(self, version: str, elapsed_ms: float) -> str | None:
        """Count one call; the trip's detail when the slow share reaches the rate (the window restarts)."""
        policy = self.policy
        with self._lock:
            calls = self._calls.setdefault(version, deque(maxlen=policy.window))
            calls.append(elapsed_ms >= policy.duration_ms)
            slow, total = sum(calls), len(calls)
            if total < policy.min_calls or slow < policy.rate * total:
                return None
            calls.clear()
        return f"slow_calls: {slow} of {total} over {policy.duration_ms:g} ms"
