"""Breakers and flags tell listeners what changed; metrics are one listener, and a failing one changes nothing."""

from __future__ import annotations

import fakeredis
from memory_gateway import CANDIDATE, memory_gateway
from prometheus_client import CollectorRegistry

from flags import V2_PERCENTAGE, FlagStore, ReplicatedHash
from rollout.breaker.listeners import BreakerListener
from rollout.gateway import RagQuery
from rollout.metrics import Metrics


class Broken(BreakerListener):
    def state_seen(self, state, local_only):
        raise RuntimeError("a listener's bug")


def test_the_breaker_metrics_listener_follows_a_trip_and_a_rollback():
    p = memory_gateway(percentage=100, fail_max=1)
    try:
        p.breakers.add_listener(Broken())  # a broken listener beside the metrics one
        p.backends[CANDIDATE].fail = "timeout"
        p.gateway.answer(RagQuery("pool", user_key="u"))
        p.breakers.refresh_gauges()
        assert p.sample("circuit_breaker_state", version=CANDIDATE) == 2
        assert p.sample("circuit_breaker_failures", version=CANDIDATE) == 1
        assert p.sample("rollout_rollbacks_total", trigger="failures") == 1
        p.breakers.close(CANDIDATE, actor="t")
        p.breakers.open(CANDIDATE, reason="rollback", actor="t", percentage=100)
        assert p.sample("rollout_rollbacks_total", trigger="manual") == 1
    finally:
        p.shadow_pool.shutdown()


def test_flag_listeners_hear_every_new_snapshot_and_a_broken_one_is_contained():
    store = FlagStore(ReplicatedHash(fakeredis.FakeRedis(decode_responses=True), "unit:listen"), {})
    metrics, seen = Metrics(CollectorRegistry()), []
    store.add_listener(lambda snapshot: (_ for _ in ()).throw(RuntimeError("a listener's bug")))
    store.add_listener(metrics.flags_seen)
    store.add_listener(lambda snapshot: seen.append(snapshot[V2_PERCENTAGE]))
    assert seen == [0.0] and metrics.registry.get_sample_value("rollout_percentage") == 0.0
    store.replica.write({V2_PERCENTAGE: "25"})
    assert seen == [0.0, 25.0] and metrics.registry.get_sample_value("rollout_percentage") == 25.0
