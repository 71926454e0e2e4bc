"""A gateway on in-memory parts: no PostgreSQL, no Redis server.

The versions search documents held in memory (exact cosine over a lexical embedder's
vectors, the same embedder the offline demo uses); flags and breaker state live in
fakeredis hashes and the process's memory. Everything else (router, breakers, shadow
pool, merger, metrics) is production code.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import fakeredis
import numpy as np
from prometheus_client import CollectorRegistry

from flags import FlagStore, ReplicatedHash
from rollout.analytics.record import QueryRecord
from rollout.backends import Hit, SearchFailed, SearchResult
from rollout.breaker import BreakerPolicy, BreakerState, CircuitBreakers, MemoryBreakerStorage
from rollout.breaker.listeners import BreakerMetrics
from rollout.comparison import Comparison
from rollout.embedders.lexical import LexicalEmbedder
from rollout.gateway import RagAnswer, RagGateway
from rollout.merging import Merger
from rollout.metrics import Metrics
from rollout.routing import Roles, Router
from rollout.shadow import ShadowPool

BASELINE, CANDIDATE = "v1", "v2"

DOCUMENTS = [
    ("pool-hours", "facilities", "Pool opening hours", "The indoor pool opens at 6am on weekdays and 8am on weekends."),
    ("parking-rates", "parking", "Car park rates", "Parking in the garage costs 12 dollars per day."),
    ("day-pass", "pricing", "Day pass price", "A coworking day pass costs 35 dollars and includes coffee."),
    ("gym-hours", "facilities", "Gym opening hours", "The gym opens at 5am and closes at 11pm every day."),
    ("bike-storage", "parking", "Bike storage", "Bikes can be stored in the basement racks for free."),
    ("meeting-rooms", "pricing", "Meeting rooms", "Meeting rooms cost 20 dollars per hour for members."),
]


class MemoryBackend:
    """One version's search over documents in memory; `fail` makes every search fail with that kind."""

    def __init__(self, version: str, dimensions: int = 256):
        self.version = version
        self.embedder = LexicalEmbedder(dimensions, model=f"local-lexical-{version}")
        self.query_cache = None
        self.fail: str | None = None
        self.release: threading.Event | None = None  # when set up, each search waits for it
        self.searches = 0
        self._documents = DOCUMENTS
        self._vectors = self.embedder.embed([f"{title}\n{content}" for _, _, title, content in DOCUMENTS])

    def search(self, text: str, k: int, category: str | None = None,
               min_similarity: float | None = None) -> SearchResult:
        self.searches += 1
        if self.release is not None and not self.release.wait(timeout=10):
            raise AssertionError(f"{self.version}: the test never released the search")
        if self.fail is not None:
            raise SearchFailed(self.version, self.fail, "failing on purpose")
        vector = self.embedder.embed([text])[0]
        similarities = self._vectors @ vector
        order = np.argsort(-similarities, kind="stable")
        hits = [Hit(doc_id, title, content[:240], {}, cat, float(similarities[n]))
                for n in order
                for doc_id, cat, title, content in [self._documents[n]]
                if category is None or cat == category][:k]
        if min_similarity is not None:
            hits = [h for h in hits if h.similarity >= min_similarity]
        return SearchResult(self.version, hits, embed_ms=0.1, search_ms=0.1)


@dataclass
class MemoryGateway:
    gateway: RagGateway
    backends: dict[str, MemoryBackend]
    breakers: CircuitBreakers
    metrics: Metrics
    flags: FlagStore
    shadow_pool: ShadowPool
    records: list[QueryRecord] = field(default_factory=list)
    pairs: list[tuple[RagAnswer, SearchResult, Comparison]] = field(default_factory=list)
    recorded: threading.Condition = field(default_factory=threading.Condition)

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def wait_for_records(self, count: int, timeout_s: float = 10.0) -> list[QueryRecord]:
        with self.recorded:
            assert self.recorded.wait_for(lambda: len(self.records) >= count, timeout=timeout_s), self.records
            return list(self.records)

    def _record(self, record: QueryRecord) -> None:
        with self.recorded:
            self.records.append(record)
            self.recorded.notify_all()


def memory_gateway(*, migration: bool = True, percentage: float = 0, shadow: bool = False,
                   fail_max: int = 3) -> MemoryGateway:
    flags = FlagStore(ReplicatedHash(fakeredis.FakeRedis(decode_responses=True), "unit:flags"), {
        "FF_ENABLE_GRADUAL_MIGRATION": str(migration).lower(),
        "FF_NEW_EMBEDDINGS_PERCENTAGE": str(percentage),
        "FF_USE_PARALLEL_RAG": str(shadow).lower(),
    })
    metrics = Metrics(CollectorRegistry())
    metrics.add_versions((BASELINE, CANDIDATE))
    metrics.set_roles(BASELINE, CANDIDATE)
    versions = (BASELINE, CANDIDATE)
    breakers = CircuitBreakers(MemoryBreakerStorage(BreakerState.decode({}, versions)),
                               BreakerPolicy(fail_max, reset_timeout_s=60, probe_lease_s=5),
                               redis_up=lambda: True, listeners=[BreakerMetrics(metrics)])
    router = Router(flags, "embeddings-v2", Roles(BASELINE, CANDIDATE))
    router.add_guard(breakers)
    backends = {v: MemoryBackend(v) for v in versions}
    pool = ShadowPool(4)
    gateway = RagGateway(router, backends, metrics, flags, health=breakers, shadow_pool=pool,
                         merger=Merger(None, min_per_version=1))
    parts = MemoryGateway(gateway, backends, breakers, metrics, flags, pool)
    gateway.record_listeners.append(parts._record)
    gateway.pair_listeners.append(lambda answer, other, comparison: parts.pairs.append((answer, other, comparison)))
    return parts
