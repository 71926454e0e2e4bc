"""Shadow queries and query analytics: what they cost the request path, in one run.

    python bench/shadow.py [--requests 300] [--seconds 6] [--rounds 4] [--baseline NAME --candidate NAME]

The gateway runs under gunicorn (2 workers, gthread) on the demo corpus. Flags are
changed through the API between blocks, and the blocks alternate (off, on, off, on,
...) so drift on a shared machine hits both sides alike.

The pair is the registry's baseline and candidate (the demo's v1 and v2 on a new database;
the gateway routes between them, so `--baseline/--candidate` may only confirm them).

1. Latency (one client, sequential requests, keep-alive): each version's own p50
   (all traffic on the baseline, then on the candidate), then a 50 % split with
   FF_USE_PARALLEL_RAG off and on. Target: p50 with shadow ≤ 1.15 × the slower
   version's own p50. Run twice: with the local lexical embedders (CPU-bound: on 2
   cores the shadow's embedding and search compete with the answer's for the same
   CPUs, the worst case) and with provider embedders (google for the baseline, openai
   for the candidate: their registry rows say so for that gateway, and are restored
   after) behind a stand-in provider on 127.0.0.1 that answers in 20 ms, as a nearby
   real API would (the search runs against the stored local vectors: the figures are
   latencies, not relevance).
2. Throughput (4 client threads, shadow off, local embedders): requests per second
   with FF_ENABLE_QUERY_ANALYTICS off and on. Target: the writer costs ≤ 5 %.

The query embedding cache is off in both gateways, so every request pays for the
embedding the shadow doubles; the provider gateway also turns the coverage guard off,
since the vectors it searches were stored under the local models' names.

Uses DATABASE_URL / REDIS_URL when set, else embedded services in a temporary folder.
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the stand-in embedding provider

from fake_embedding_server import FakeEmbeddingServer  # noqa: E402
from harness import add_pair_options, demo_queries, gateway_on, registry_pair  # noqa: E402

from rollout import demo  # noqa: E402
from rollout.analytics.figures import distribution  # noqa: E402
from rollout.embedders.registry import provider as provider_kind  # noqa: E402
from rollout.server import GatewayProcess  # noqa: E402

SHADOW_TARGET = 1.15
ANALYTICS_TARGET = 0.05
PROVIDER_DELAY_S = 0.02


class Client:
    """One keep-alive HTTP connection to the gateway."""

    def __init__(self, port: int, token: str):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.token = token

    def call(self, method: str, path: str, body: dict | None = None, admin: bool = False) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"}
        if admin:
            headers["Authorization"] = f"Bearer {self.token}"
        payload = json.dumps(body) if body is not None else None
        try:
            self.connection.request(method, path, body=payload, headers=headers)
            response = self.connection.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self.connection.close()  # the server closed an idle keep-alive connection: reconnect once
            self.connection.request(method, path, body=payload, headers=headers)
            response = self.connection.getresponse()
        return response.status, response.read()

    def flag(self, name: str, value) -> None:
        status, body = self.call("PUT", f"/api/flags/{name}", {"value": value, "reason": "bench"}, admin=True)
        if status != 200:
            raise RuntimeError(f"setting {name} failed: {status} {body[:200]!r}")

    def close(self) -> None:
        self.connection.close()


def query_body(queries: list[str], n: int) -> dict:
    return {"query": queries[n % len(queries)], "user_id": f"user-{n % 997}", "k": 10}


def latencies(client: Client, queries: list[str], count: int, offset: int) -> list[float]:
    measured = []
    for n in range(offset, offset + count):
        started = time.perf_counter()
        status, _ = client.call("POST", "/api/rag/query", query_body(queries, n))
        measured.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise RuntimeError(f"query failed with {status}")
    return measured


def throughput(port: int, token: str, queries: list[str], seconds: float, threads: int = 4) -> float:
    stop = threading.Event()
    counts = [0] * threads

    def worker(index: int) -> None:
        client = Client(port, token)
        n = index * 100_000
        while not stop.is_set():
            status, _ = client.call("POST", "/api/rag/query", query_body(queries, n))
            if status == 200:
                counts[index] += 1
            n += 1
        client.close()

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join(30)
    return sum(counts) / (time.perf_counter() - started)


def settle(client: Client, flags: dict) -> None:
    for name, value in flags.items():
        client.flag(name, value)
    time.sleep(0.3)  # pub/sub reaches every worker in milliseconds; leave the shadows of the last block to end


def metric(client: Client, name: str) -> float:
    _, body = client.call("GET", "/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


@contextmanager
def registered_as(database_url: str, providers: dict[str, str]) -> Iterator[None]:
    """The versions' registry rows name these providers (their default models) while the block runs, then
    what they named before: a gateway embeds as the registry says, the environment only gives keys."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        before = {name: conn.execute("SELECT provider, model FROM embedding_versions WHERE name = %s",
                                     (name,)).fetchone() for name in providers}
        try:
            for name, kind in providers.items():
                conn.execute("UPDATE embedding_versions SET provider = %s, model = %s WHERE name = %s",
                             (kind, provider_kind(kind).model_for(name), name))
            yield
        finally:
            for name, (kind, model) in before.items():
                conn.execute("UPDATE embedding_versions SET provider = %s, model = %s WHERE name = %s",
                             (kind, model, name))


def latency_blocks(client: Client, queries: list[str], requests: int, rounds: int) -> dict[str, list[float]]:
    """Sequential latencies per condition, the conditions alternating `rounds` times."""
    latencies(client, queries, 50, 0)  # warm-up: connections, caches
    blocks: dict[str, list[float]] = {"baseline": [], "candidate": [], "off": [], "on": []}
    per_block, offset = max(10, requests // rounds), 0
    for _ in range(rounds):
        for name, flags in (("baseline", {"FF_NEW_EMBEDDINGS_PERCENTAGE": 0, "FF_USE_PARALLEL_RAG": False}),
                            ("candidate", {"FF_NEW_EMBEDDINGS_PERCENTAGE": 100}),
                            ("off", {"FF_NEW_EMBEDDINGS_PERCENTAGE": 50}),
                            ("on", {"FF_USE_PARALLEL_RAG": True})):
            settle(client, flags)
            blocks[name] += latencies(client, queries, per_block, offset)
            offset += per_block
    settle(client, {"FF_USE_PARALLEL_RAG": False})
    return blocks


def latency_lines(label: str, blocks: dict[str, list[float]], shadows: float, names: tuple[str, str]) -> list[str]:
    p50 = {name: distribution(values)["p50"] for name, values in blocks.items()}
    slower = max(("baseline", "candidate"), key=lambda v: p50[v])
    ratio = p50["on"] / p50[slower]
    named = dict(zip(("baseline", "candidate"), names, strict=True))
    return [
        f"[{label}] own p50: baseline {names[0]} {p50['baseline']:.2f} ms, candidate {names[1]} "
        f"{p50['candidate']:.2f} ms ({len(blocks['baseline'])} sequential "
        f"requests each); 50 % split: shadow off {p50['off']:.2f} ms, shadow on {p50['on']:.2f} ms "
        f"({int(shadows)} comparisons)",
        f"[{label}] shadow on p50 {p50['on']:.2f} ms vs slower version's own p50 ({named[slower]}) "
        f"{p50[slower]:.2f} ms: "
        f"ratio {ratio:.3f} (target <= {SHADOW_TARGET}) {verdict(ratio <= SHADOW_TARGET)}",
    ]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def run(requests: int, seconds: float, rounds: int, baseline: str | None, candidate: str | None) -> list[str]:
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-shadow-") as tmp:
        folder = Path(tmp)
        token = secrets.token_urlsafe(16)
        with demo.prepared_services(folder / "services") as urls:
            queries = demo_queries()
            names = registry_pair(urls.database_url, baseline, candidate)

            def gateway(name: str, **extra: str) -> GatewayProcess:
                return gateway_on(urls, folder, token, f"shadow-{name}", **extra)

            with gateway("local").start() as local:
                client = Client(local.port, token)
                blocks = latency_blocks(client, queries, requests, rounds)
                lines += latency_lines("local embedders", blocks, metric(client, "rag_shadow_comparisons_total"),
                                       names)
                rates: dict[str, list[float]] = {"off": [], "on": []}
                for _ in range(rounds):
                    for name, value in (("off", False), ("on", True)):
                        settle(client, {"FF_ENABLE_QUERY_ANALYTICS": value})
                        rates[name].append(throughput(local.port, token, queries, seconds))
                written = metric(client, 'rollout_query_log_rows_total{outcome="written"}')
                dropped = metric(client, 'rollout_query_log_rows_total{outcome="dropped"}')
                client.close()
            off_rate, on_rate = sum(rates["off"]) / rounds, sum(rates["on"]) / rounds
            # the median of per-round ratios, each round's on beside its off
            ratio = float(np.median([on / off for on, off in zip(rates["on"], rates["off"], strict=False)]))
            cost = 1 - ratio
            lines.append(f"[local embedders] throughput with query analytics {on_rate:.0f} req/s vs without "
                         f"{off_rate:.0f} req/s: median ratio of {rounds} alternating rounds {ratio:.3f}, "
                         f"cost {cost:.1%} (target <= "
                         f"{ANALYTICS_TARGET:.0%}) {verdict(cost <= ANALYTICS_TARGET)}; {int(written)} rows "
                         f"written, {int(dropped)} dropped")

            with FakeEmbeddingServer() as provider, \
                    registered_as(urls.database_url, {names[0]: "google", names[1]: "openai"}):
                provider.delay_s = PROVIDER_DELAY_S
                remote = gateway("provider", GOOGLE_API_KEY="bench-key", GOOGLE_BASE_URL=provider.url,
                                 OPENAI_API_KEY="bench-key", OPENAI_BASE_URL=f"{provider.url}/v1",
                                 V2_MIN_COVERAGE_PERCENT="0")
                with remote.start():
                    client = Client(remote.port, token)
                    blocks = latency_blocks(client, queries, requests // 2, rounds)
                    label = f"provider embedders, {PROVIDER_DELAY_S * 1000:.0f} ms"
                    lines += latency_lines(label, blocks, metric(client, "rag_shadow_comparisons_total"), names)
                    client.close()
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="Sequential requests per latency condition.")
    parser.add_argument("--seconds", type=float, default=5.0, help="Length of one throughput block.")
    parser.add_argument("--rounds", type=int, default=6, help="Alternations of each comparison.")
    args = add_pair_options(parser).parse_args()
    for line in run(args.requests, args.seconds, args.rounds, args.baseline, args.candidate):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
