"""Leader election: exactly one active controller, however many hosts run `rollout controller`.

The leader holds a Redis key (`<prefix>:controller:leader`) whose value is its identity and
whose TTL (ROLLOUT_LEADER_TTL_S) it renews every third of the TTL; the others try to take it
at the same pace, so when the leader dies its key expires and one of them takes over
within a TTL and a third. redis-py's `Lock` does the compare-and-set and compare-and-delete
in Lua, so a controller can never renew or release a key that another one holds.

A leader acts only while it is sure the key is still its own: until one TTL after the
last successful renewal began (measured on its own monotonic clock). A leader cut off from
Redis therefore stops acting before its key can expire and be taken by another.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from redis.exceptions import LockError

from rollout.identity import holder_identity

log = logging.getLogger(__name__)

LEADER_KEY = "controller:leader"  # under REDIS_KEY_PREFIX


class LeaderLock:
    def __init__(self, client: redis.Redis, key: str, ttl_s: float, identity: str | None = None):
        self.client = client
        self.key = key
        self.ttl_s = ttl_s
        self.identity = identity or holder_identity()
        self._lock = client.lock(key, timeout=ttl_s, blocking=False, thread_local=False)
        self._valid_until = 0.0
        self._mutex = threading.Lock()

    @property
    def held(self) -> bool:
        """This process may act as the leader now."""
        return time.monotonic() < self._valid_until

    def refresh(self) -> bool:
        """Renew the key if it is ours, else try to take it; True when this process leads afterwards."""
        with self._mutex:
            started = time.monotonic()
            was_leader = self._valid_until > 0
            try:
                if was_leader:
                    self._lock.reacquire()
                elif not self._lock.acquire(token=self.identity):
                    return False
            except LockError:
                self._valid_until = 0.0
                log.warning("controller %s lost the leader lock (it expired and was taken over)", self.identity)
                return False
            except (redis.RedisError, OSError) as exc:
                if was_leader and not self.held:
                    self._valid_until = 0.0
                    log.warning("controller %s lost the leader lock: Redis unreachable (%s)", self.identity, exc)
                return self.held
            if not was_leader:
                log.info("controller %s is the leader", self.identity)
            self._valid_until = started + self.ttl_s
            return True

    def release(self) -> None:
        """Give the key up (clean shutdown): another controller takes over at its next try."""
        with self._mutex:
            if self._valid_until == 0.0:
                return
            self._valid_until = 0.0
            try:
                self._lock.release()
            except (LockError, redis.RedisError, OSError) as exc:
                log.warning("controller %s: leader lock not released (%s); it expires in at most %g s",
                            self.identity, exc, self.ttl_s)

    def holder(self) -> tuple[str, float] | None:
        return leader_of(self.client, self.key)


def leader_of(client: redis.Redis, key: str) -> tuple[str, float] | None:
    """The current leader's identity and the seconds before its key expires; None when no one leads."""
    pipe = client.pipeline(transaction=True)
    pipe.get(key)
    pipe.pttl(key)
    identity, ttl_ms = pipe.execute()
    if identity is None:
        return None
    if isinstance(identity, bytes):
        identity = identity.decode()
    return identity, max(ttl_ms, 0) / 1000
