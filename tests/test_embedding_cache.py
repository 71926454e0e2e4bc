"""The query embedding cache: hits and misses per version, bounded size, TTL, and Redis down = no cache."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from fake_embedding_server import FakeEmbeddingServer
from helpers import load_and_embed, settings_for
from prometheus_client import CollectorRegistry

from rollout.embedding_cache import QueryEmbeddingCache
from rollout.metrics import Metrics
from rollout.services.ports import free_port

pytestmark = pytest.mark.timeout(60)


def counts(metrics: Metrics, version: str) -> tuple[float, float, float]:
    sample = metrics.registry.get_sample_value
    return tuple(sample(f"rag_embedding_cache_{kind}_total", {"version": version}) or 0.0
                 for kind in ("hits", "misses", "errors"))


def test_the_second_identical_query_is_a_hit(runtime):
    load_and_embed(runtime)
    backend = runtime.backends["v2"]
    first = backend.search("when does the pool open", 3)
    second = backend.search("when does the pool open", 3)
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert first.ids == second.ids
    assert counts(runtime.metrics, "v2") == (1.0, 1.0, 0.0)
    other = runtime.backends["v1"].search("when does the pool open", 3)  # another model: another key
    assert other.cache_hit is False


def test_keys_are_model_dimensions_and_text_hash(runtime):
    cache = runtime.embedding_cache
    key = cache.key("text-embedding-3-small", 768, "hello")
    assert key.endswith(":text-embedding-3-small:768:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
    assert key.startswith(f"{{{runtime.settings.redis_key_prefix}:embcache}}")
    assert cache.key("m", 768, "hello") != cache.key("m", 1536, "hello")


def test_a_cloud_model_is_called_once_per_distinct_query(make_runtime, services):
    with FakeEmbeddingServer() as server:
        runtime = make_runtime(settings_for(services, V2_EMBEDDER="openai", OPENAI_API_KEY="sk-test",
                                            OPENAI_BASE_URL=f"{server.url}/v1"))
        backend = runtime.backends["v2"]
        vectors = [backend.embed_query(q)[0] for q in ["a question", "a question", "another", "a question"]]
        assert len(server.requests) == 2
        np.testing.assert_array_equal(vectors[0], vectors[1])


def test_size_is_bounded_oldest_first(runtime):
    cache = QueryEmbeddingCache(runtime.embedding_cache.client, runtime.settings.redis_key_prefix + "-bounded",
                                Metrics(CollectorRegistry()), max_entries=5)
    backend = runtime.backends["v2"]
    for n in range(12):
        cache.get_or_embed(backend, f"query {n}")
    assert cache.size() == 5
    keys = [k.decode() for k in cache.client.keys(f"{cache._tag}:*") if not k.endswith(b":index")]
    assert len(keys) == 5
    assert cache.get_or_embed(backend, "query 11")[1] is True   # newest kept
    assert cache.get_or_embed(backend, "query 0")[1] is False   # oldest evicted


def test_entries_expire_after_the_ttl(runtime):
    cache = QueryEmbeddingCache(runtime.embedding_cache.client, runtime.settings.redis_key_prefix + "-ttl",
                                Metrics(CollectorRegistry()), ttl_s=1)
    backend = runtime.backends["v2"]
    cache.get_or_embed(backend, "short-lived")
    ttl = cache.client.ttl(cache.key(backend.embedder.model, backend.embedder.dimensions, "short-lived"))
    assert 0 < ttl <= 1


def test_redis_down_means_no_cache_and_no_failure(make_runtime, services):
    port = free_port()
    runtime = make_runtime()
    load_and_embed(runtime)
    down = QueryEmbeddingCache.connect(f"redis://127.0.0.1:{port}/0", runtime.settings.redis_key_prefix,
                                       runtime.metrics, timeout_ms=50)
    backend = runtime.backends["v2"]
    backend.query_cache = down
    results = [backend.search("pool opening hours", 3) for _ in range(20)]
    assert all(r.ids and r.ids[0] == "pool-hours" and not r.cache_hit for r in results)
    hits, misses, errors = counts(runtime.metrics, "v2")
    assert (hits, misses) == (0.0, 20.0)
    assert errors == 1.0  # the first failure opens the circuit: no more Redis calls for a while
    assert not down.available
    down.close()


def test_a_silent_redis_costs_at_most_the_socket_timeout_once(make_runtime, services):
    runtime = make_runtime()
    load_and_embed(runtime)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        cache = QueryEmbeddingCache.connect(url, runtime.settings.redis_key_prefix, runtime.metrics,
                                            timeout_ms=100, cooldown_s=30)
        backend = runtime.backends["v2"]
        backend.query_cache = cache
        answers = [backend.search("pool opening hours", 3) for _ in range(5)]
        assert all(a.ids[0] == "pool-hours" for a in answers)
        assert counts(runtime.metrics, "v2")[2] == 1.0
        cache.close()


def test_the_cache_can_be_switched_off(make_runtime, services):
    runtime = make_runtime(settings_for(services, EMBEDDING_CACHE="false"))
    assert runtime.embedding_cache is None and runtime.backends["v2"].query_cache is None
