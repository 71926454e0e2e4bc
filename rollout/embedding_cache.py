"""Query embeddings cached in Redis: the same question is embedded (and paid for) once a TTL.

Keys are `(model, dimensions, sha256 of the text)` under the deployment's prefix,
values the raw float32 bytes. The size is bounded without relying on Redis's
`maxmemory` (a shared Redis may have none, or evict our flags): each write also
records the key in a sorted set by time, and one Lua script trims the oldest
entries beyond EMBEDDING_CACHE_MAX_ENTRIES (and those past their TTL) in the same
round trip. Every key carries one hash tag, so the script stays in one slot.

The cache never fails a query and never slows one by more than its socket
timeout: any Redis error counts, opens a short circuit (no Redis calls for
EMBEDDING_CACHE_COOLDOWN_S), and the query is embedded as if there were no cache.
A hand-rolled circuit rather than pybreaker: pybreaker holds a per-process lock
for the whole call, which would serialise every query of a worker on Redis.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time

import numpy as np
import redis

from rollout.metrics import Metrics

log = logging.getLogger(__name__)

# KEYS[1] entry, KEYS[2] index; ARGV: value, ttl seconds, now, max entries
_STORE = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[3]) - tonumber(ARGV[2]))
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if excess > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[2], excess)
  for i = 1, #oldest, 2 do redis.call('DEL', oldest[i]) end
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
return excess
"""


class QueryEmbeddingCache:
    def __init__(self, client: redis.Redis, prefix: str, metrics: Metrics, *, ttl_s: int = 86400,
                 max_entries: int = 50000, cooldown_s: float = 5.0):
        self.client = client
        self.metrics = metrics
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.cooldown_s = cooldown_s
        self._tag = f"{{{prefix}:embcache}}"
        self.index_key = f"{self._tag}:index"
        self._store = client.register_script(_STORE)
        self._down_until = 0.0
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, redis_url: str, prefix: str, metrics: Metrics, *, timeout_ms: int = 50, ttl_s: int = 86400,
                max_entries: int = 50000, cooldown_s: float = 5.0) -> QueryEmbeddingCache:
        """A binary client of its own, with the cache's short timeouts (the flags' client waits longer)."""
        timeout = timeout_ms / 1000
        client = redis.Redis.from_url(redis_url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                      retry_on_timeout=False, health_check_interval=0)
        return cls(client, prefix, metrics, ttl_s=ttl_s, max_entries=max_entries, cooldown_s=cooldown_s)

    def key(self, model: str, dimensions: int, text: str) -> str:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return f"{self._tag}:{model}:{dimensions}:{digest}"

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def get_or_embed(self, backend, text: str) -> tuple[np.ndarray, bool]:
        """The query's vector from the cache, else from `backend.embedder` (and stored)."""
        embedder, version = backend.embedder, backend.version
        key = self.key(embedder.model, embedder.dimensions, text)
        cached = self._get(key, version)
        if cached is not None and cached.size == embedder.dimensions:
            self.metrics.embedding_cache_hits.labels(version).inc()
            return cached, True
        self.metrics.embedding_cache_misses.labels(version).inc()
        vector = embedder.embed([text])[0]
        self._put(key, vector, version)
        return vector, False

    def _get(self, key: str, version: str) -> np.ndarray | None:
        if not self.available:
            return None
        try:
            raw = self.client.get(key)
        except (redis.RedisError, OSError) as exc:
            self._trip(exc, version)
            return None
        if raw is None or len(raw) % 4:
            return None
        return np.frombuffer(raw, dtype=np.float32).copy()

    def _put(self, key: str, vector: np.ndarray, version: str) -> None:
        if not self.available:
            return
        try:
            self._store(keys=[key, self.index_key],
                        args=[np.asarray(vector, dtype=np.float32).tobytes(), self.ttl_s, f"{time.time():.6f}",
                              self.max_entries])
        except (redis.RedisError, OSError) as exc:
            self._trip(exc, version)

    def _trip(self, exc: Exception, version: str) -> None:
        self.metrics.embedding_cache_errors.labels(version).inc()
        with self._lock:
            already_down = self._down_until > time.monotonic()
            self._down_until = time.monotonic() + self.cooldown_s
        if not already_down:
            log.warning("embedding cache: Redis failed (%s); embedding without the cache for %.0f s",
                        exc, self.cooldown_s)

    def size(self) -> int:
        return self.client.zcard(self.index_key)

    def close(self) -> None:
        self.client.close()
