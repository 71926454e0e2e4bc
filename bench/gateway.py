"""Requests/s of the full gateway under gunicorn against a bare Flask endpoint doing the same search.

Both run under the same gunicorn config (2 workers), on the same database and demo
corpus, serving V2; load comes from separate processes, in alternating rounds (A B A B ...)
so drift on a shared machine hits both alike. Target: ratio >= 0.85 (routing, flags,
breaker and metrics cost <= 15 %).
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from harness import bench_settings, hammer, report

from flags import GRADUAL_MIGRATION, V2_PERCENTAGE
from rollout import demo
from rollout.runtime import Runtime
from rollout.server import GatewayProcess
from rollout.services.ports import free_port

ROUNDS = 4
SECONDS = 6.0
WORKERS = 2


def main() -> None:
    queries = [q for q in demo.queries_path().read_text().splitlines() if q.strip()]
    with bench_settings() as settings, tempfile.TemporaryDirectory() as folder:
        runtime = Runtime(settings, settings.database_url, settings.redis_url)
        runtime.sync()
        demo.load_corpus(runtime)
        demo.embed_corpus(runtime)
        runtime.flags.set(GRADUAL_MIGRATION, True, actor="bench")
        runtime.flags.set(V2_PERCENTAGE, 100, actor="bench")
        runtime.close()

        env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
               "REDIS_KEY_PREFIX": settings.redis_key_prefix, "GUNICORN_LOG_LEVEL": "warning"}
        gateway = GatewayProcess(env, port=free_port(), workers=WORKERS, metrics_dir=Path(folder) / "metrics")
        bare = GatewayProcess(env, port=free_port(), workers=WORKERS, app="bare_search_app:create_app()",
                              chdir=Path(__file__).resolve().parent)
        with gateway, bare:
            gateway.start()
            bare.start()
            gateway_bodies = [json.dumps({"query": q, "user_id": f"user-{n}"}).encode()
                              for n, q in enumerate(queries * 5)]
            bare_bodies = [json.dumps({"query": q}).encode() for q in queries * 5]
            hammer(gateway.url, "/api/rag/query", gateway_bodies, 2.0)  # warm-up
            hammer(bare.url, "/search", bare_bodies, 2.0)
            ours, base, failed = [], [], 0
            for _ in range(ROUNDS):
                rate, errors, _ = hammer(gateway.url, "/api/rag/query", gateway_bodies, SECONDS)
                ours.append(rate)
                failed += errors
                rate, errors, _ = hammer(bare.url, "/search", bare_bodies, SECONDS)
                base.append(rate)
                failed += errors

    ratio = statistics.median(ours) / statistics.median(base)
    report(f"gateway throughput, gunicorn {WORKERS} workers, {ROUNDS} alternating rounds of {SECONDS:.0f} s", [
        ("full gateway (POST /api/rag/query)", f"{statistics.median(ours):.0f} req/s  rounds: "
                                               + " ".join(f"{r:.0f}" for r in ours)),
        ("bare Flask search (POST /search)", f"{statistics.median(base):.0f} req/s  rounds: "
                                             + " ".join(f"{r:.0f}" for r in base)),
        ("ratio (ours / bare)", f"{ratio:.3f}"),
        ("failed requests", str(failed)),
    ], [(">= 0.85", ratio >= 0.85), ("no failed requests", failed == 0)])


if __name__ == "__main__":
    main()
