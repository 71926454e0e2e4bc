"""Cost of one routing decision: our local-snapshot router against one that reads Redis per request.

Both run the same decision code (rollout.routing.Router); the baseline first reloads the
flags from Redis (one pipelined GET + HGETALL round trip), as a router without a local
snapshot must. Targets: <= 2 us per decision, >= 40x faster than the per-request read.
"""

from __future__ import annotations

import statistics
import time

from harness import bench_settings, report

from flags import GRADUAL_MIGRATION, V2_PERCENTAGE
from rollout.runtime import Runtime

LOCAL_DECISIONS = 200_000
REDIS_DECISIONS = 5_000
ROUNDS = 5


def per_decision_us(decide, keys) -> float:
    started = time.perf_counter()
    for key in keys:
        decide(key)
    return (time.perf_counter() - started) / len(keys) * 1e6


def main() -> None:
    with bench_settings() as settings:
        runtime = Runtime(settings, settings.database_url, settings.redis_url).start()
        try:
            runtime.flags.set(GRADUAL_MIGRATION, True, actor="bench")
            runtime.flags.set(V2_PERCENTAGE, 25, actor="bench")
            router, replica = runtime.router, runtime.flag_replica

            def decide_reading_redis(key: str):
                replica.load(force=True)
                return router.decide(key)

            local_keys = [f"user-{n}" for n in range(LOCAL_DECISIONS)]
            redis_keys = local_keys[:REDIS_DECISIONS]
            per_decision_us(router.decide, local_keys[:10_000])  # warm-up
            per_decision_us(decide_reading_redis, redis_keys[:500])
            local = [per_decision_us(router.decide, local_keys) for _ in range(ROUNDS)]
            remote = [per_decision_us(decide_reading_redis, redis_keys) for _ in range(ROUNDS)]
            candidate = router.roles.candidate
            shares = sum(router.decide(k).version == candidate for k in local_keys) / len(local_keys) * 100
        finally:
            runtime.close()

    ours, baseline = statistics.median(local), statistics.median(remote)
    ratio = baseline / ours
    report("routing decision cost (median of 5 rounds)", [
        ("local snapshot router", f"{ours:.2f} us/decision ({LOCAL_DECISIONS:,} decisions a round)"),
        ("Redis read per request", f"{baseline:.2f} us/decision ({REDIS_DECISIONS:,} decisions a round)"),
        ("ratio (baseline / ours)", f"{ratio:.0f}x"),
        (f"candidate ({candidate}) share at 25 %", f"{shares:.2f} %"),
        ("anchors", "GrowthBook Python SDK 1.7-3 us, Unleash ~20 us per evaluation"),
    ], [("<= 2 us per decision", ours <= 2.0), (">= 40x faster than a Redis read", ratio >= 40)])


if __name__ == "__main__":
    main()
