"""Circuit breakers per version, shared by every worker and host through a replicated Redis hash."""

from rollout.breaker.breakers import CircuitBreakers
from rollout.breaker.slow_calls import SlowCallPolicy, SlowCallWindow
from rollout.breaker.state import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerConflict,
    BreakerPolicy,
    BreakerState,
    BreakerUnavailable,
    Cause,
    FiringAlert,
    Outcome,
    VersionRecord,
)
from rollout.breaker.storage import BreakerStorage, MemoryBreakerStorage, ReplicatedBreakerStorage

__all__ = [
    "CLOSED", "HALF_OPEN", "OPEN", "BreakerConflict", "BreakerPolicy", "BreakerState", "BreakerUnavailable",
    "BreakerStorage", "Cause", "CircuitBreakers", "FiringAlert", "MemoryBreakerStorage", "Outcome",
    "ReplicatedBreakerStorage", "SlowCallPolicy", "SlowCallWindow", "VersionRecord",
]
