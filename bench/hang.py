"""A hanging candidate provider: how long users wait for their answers, in one run.

    python bench/hang.py [--requests 60]

The gateway runs under gunicorn (2 workers) on the demo corpus; the baseline (V1)
embeds locally, the candidate (V2) through a stand-in provider on 127.0.0.1.

1. The baseline's own p99: every user on V1, sequential requests.
2. The provider hangs (answers nothing for 30 s), every user on V2, the breaker's
   triggers set out of reach so that every request meets the hang (the worst case:
   in production the breaker opens after BREAKER_FAIL_MAX deadline failures and
   later users are not even routed there). p99 of the users' answers.

Target: p99 during the hang <= RAG_QUERY_DEADLINE_MS + the baseline's own p99
(ratio <= 1). For context, a few requests with the deadline off show the old cost
(the provider's own timeout, two attempts of QUERY_EMBEDDING_TIMEOUT_S).

Uses embedded services in a temporary folder.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the stand-in embedding provider

from fake_embedding_server import FakeEmbeddingServer  # noqa: E402
from harness import demo_queries, gateway_on  # noqa: E402
from shadow import Client, latencies, metric, settle, verdict  # noqa: E402

from rollout import demo  # noqa: E402
from rollout.analytics.figures import distribution  # noqa: E402
from rollout.server import GatewayProcess  # noqa: E402

DEADLINE_MS = 800
HANG_S = 30.0
UNREACHABLE = "1000"  # a breaker trigger no run of this benchmark reaches


def run(requests: int) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="bench-hang-") as tmp, FakeEmbeddingServer() as provider:
        folder = Path(tmp)
        token = secrets.token_urlsafe(16)
        with demo.prepared_services(folder / "services") as urls:
            queries = demo_queries()

            def gateway(name: str, **extra: str) -> GatewayProcess:
                return gateway_on(urls, folder, token, f"hang-{name}", V2_EMBEDDER="openai",
                                  OPENAI_API_KEY="bench-key", OPENAI_BASE_URL=f"{provider.url}/v1",
                                  V2_MIN_COVERAGE_PERCENT="0", BREAKER_FAIL_MAX=UNREACHABLE,
                                  BREAKER_SLOW_CALL_MIN_CALLS=UNREACHABLE, BREAKER_SLOW_CALL_WINDOW=UNREACHABLE,
                                  **extra)

            with gateway("deadline", RAG_QUERY_DEADLINE_MS=str(DEADLINE_MS)).start() as served:
                client = Client(served.port, token)
                settle(client, {"FF_NEW_EMBEDDINGS_PERCENTAGE": 0})
                latencies(client, queries, 30, 0)  # warm-up
                baseline = distribution(latencies(client, queries, requests, 100))
                settle(client, {"FF_NEW_EMBEDDINGS_PERCENTAGE": 100})
                provider.delay_s = HANG_S
                hang = distribution(latencies(client, queries, requests, 1000))
                rescued = metric(client, 'rag_fallbacks_total{reason="deadline"}')
                client.close()
            with gateway("no-deadline", RAG_QUERY_DEADLINE_MS="0").start() as old:
                client = Client(old.port, token)
                settle(client, {"FF_NEW_EMBEDDINGS_PERCENTAGE": 100})
                before = distribution(latencies(client, queries, 5, 2000))
                client.close()
            provider.delay_s = 0.0

    bound = DEADLINE_MS + baseline["p99"]
    ratio = hang["p99"] / bound
    return [
        f"baseline alone: p50 {baseline['p50']:.1f} ms, p99 {baseline['p99']:.1f} ms ({requests} sequential requests)",
        f"candidate provider hanging, deadline {DEADLINE_MS} ms: p50 {hang['p50']:.1f} ms, "
        f"p99 {hang['p99']:.1f} ms ({requests} requests; {rescued:.0f} answered by the baseline at the deadline)",
        f"p99 during the hang {hang['p99']:.1f} ms vs deadline + baseline p99 {bound:.1f} ms: ratio {ratio:.3f} "
        f"(target <= 1) {verdict(ratio <= 1)}",
        f"for context, without the deadline: p50 {before['p50']:.0f} ms over 5 requests",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=150,
                        help="Sequential requests per condition (150: a p99 that is not just the slowest one).")
    args = parser.parse_args()
    for line in run(args.requests):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
