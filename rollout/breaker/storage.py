"""Where breaker state lives: Redis, replicated to every process, or this process's memory.

Both storages answer `state()` from memory (no I/O: it is read on every routing
decision) and apply `update(transition)` atomically: the replicated one by one
compare-and-set on the hash's version (`ReplicatedHash.transact`, retried when another
writer got there first) that announces the change to every worker by pub/sub, the
memory one under a lock. The memory storage is what a worker falls back to while
Redis is unreachable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar

from flags.replica import Change, ReplicatedHash
from rollout.breaker.state import BreakerState

T = TypeVar("T")
Transition = Callable[[BreakerState], tuple[BreakerState | None, T]]


class BreakerStorage(Protocol):
    """What the breakers need of a storage (pybreaker's storage abstraction, for the shared state)."""

    installed_at: float  # when this process's copy last changed

    @property
    def version(self) -> int | None:
        """The stored state's version, if the storage counts them."""

    def state(self) -> BreakerState: ...

    def update(self, transition: Transition[T]) -> tuple[bool, T]: ...

    def follow(self, versions: tuple[str, ...]) -> None:
        """The registry changed: the baseline, then the candidate, then the others."""


class MemoryBreakerStorage:
    def __init__(self, initial: BreakerState):
        self._state = initial
        self._lock = threading.Lock()
        self.installed_at = time.time()

    @property
    def version(self) -> int | None:
        return None

    def state(self) -> BreakerState:
        return self._state

    def update(self, transition: Transition[T]) -> tuple[bool, T]:
        with self._lock:
            new, result = transition(self._state)
            if new is not None:
                self._state = new
                self.installed_at = time.time()
            return new is not None, result

    def follow(self, versions: tuple[str, ...]) -> None:
        with self._lock:
            self._state = BreakerState.decode(self._state.encode(), versions)


class ReplicatedBreakerStorage:
    """The breaker hash, decoded once per change (not per read)."""

    def __init__(self, replica: ReplicatedHash, versions: tuple[str, ...]):
        self.replica = replica
        self.versions = versions
        self._state = BreakerState.decode(replica.data, versions)
        self.installed_at = time.time()  # when this process's copy last changed (propagation, staleness)
        replica.on_change(self._reload)

    def state(self) -> BreakerState:
        return self._state

    def update(self, transition: Transition[T]) -> tuple[bool, T]:
        """One atomic read-decide-write in Redis; raises redis.RedisError when it cannot."""
        def compute(data: Mapping[str, str]) -> tuple[Change | None, T]:
            new, result = transition(BreakerState.decode(data, self.versions))
            return (new.change_from(data) if new is not None else None), result

        version, result = self.replica.transact(compute)
        return version is not None, result

    @property
    def version(self) -> int | None:
        return self.replica.version

    def follow(self, versions: tuple[str, ...]) -> None:
        """The registry changed: the baseline, then the candidate (alerts hold it), then the others."""
        if versions != self.versions:
            self.versions = versions
            self._state = BreakerState.decode(self.replica.data, versions)

    def _reload(self, replica: ReplicatedHash) -> None:
        self._state = BreakerState.decode(replica.data, self.versions)
        self.installed_at = time.time()
