"""Who hears what the breakers do, as pybreaker's CircuitBreakerListener: the breakers decide,
listeners observe (metrics here; a log or a notifier could be another), so the decisions stay
free of Prometheus calls.
"""

from __future__ import annotations

from rollout.breaker.state import STATE_VALUES, BreakerState, Cause
from rollout.metrics import Metrics

TRIGGERS = {Cause.FAILURES: "failures", Cause.ALERT: "alert", Cause.MANUAL: "manual"}


class BreakerListener:
    """Every hook does nothing; a listener overrides the ones it needs. Hooks must return at once."""

    def state_seen(self, state: BreakerState, local_only: bool) -> None:
        """The state this process now routes by (after a change, or on the replicator's tick)."""

    def rolled_back(self, version: str, cause: Cause) -> None:
        """`version`, the candidate, was held off by `cause`."""


class BreakerMetrics(BreakerListener):
    """circuit_breaker_state / _failures / _local_only gauges and rollout_rollbacks_total."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def state_seen(self, state: BreakerState, local_only: bool) -> None:
        for version, record in state.records.items():
            self.metrics.breaker_state.labels(version).set(STATE_VALUES[record.state])
            self.metrics.breaker_failures.labels(version).set(record.failures)
        self.metrics.breaker_local_only.set(1 if local_only else 0)

    def rolled_back(self, version: str, cause: Cause) -> None:
        self.metrics.rollbacks.labels(TRIGGERS[cause]).inc()
