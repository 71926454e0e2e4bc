"""V2 against V1 on 50,000 documents with HNSW: query latency, table+index size, recall against an exact scan.

Both versions hold the same synthetic corpus, embedded by the local embedders
(V1 1536-d, V2 768-d) and indexed with HNSW (m=16, ef_construction=64). Queries
are words drawn from random documents, embedded once per version beforehand, so
the latency is the database search as the gateway runs it (`search_vector`: the
HNSW scan, the join to `documents`, the fetch). Each version is measured as the
serving version: a pass that fills the caches, then the measured pass (its steady
state), in blocks V1 V2 V1 V2 so drift on a shared machine hits both alike. (V1's
index is about twice V2's: on the embedded server, shared_buffers 256 MB, V2's
fits and V1's does not, which shows in the steady state.) Recall@10 compares each HNSW
answer with an exact scan (index scans off), at several hnsw.ef_search values; the
first at which both versions reach 0.95 is the one the latency targets are read at
(set it as HNSW_EF_SEARCH). Targets: p50 ratio V2/V1 <= 0.8, size ratio <= 0.55,
recall@10 >= 0.95 for both.
"""

from __future__ import annotations

import statistics
import time

from harness import bench_settings, report
from synthetic import documents, queries

from rollout.documents import DocumentStore
from rollout.migration.backfill import BackfillOptions, backfill_for
from rollout.runtime import Runtime

COUNT = 50_000
QUERIES = 200
K = 10
EF_SEARCH = (40, 100, 200, 400)  # the first at which both versions reach the recall target is chosen
RECALL_TARGET = 0.95


def exact(runtime: Runtime, version: str, vector) -> set[str]:
    table = runtime.settings.version(version).table
    with runtime.pool.connection() as conn, conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off; SET LOCAL statement_timeout = 0")
        rows = conn.execute(f"SELECT document_id FROM {table} ORDER BY embedding <=> %s LIMIT %s",
                            (vector, K)).fetchall()
    return {r[0] for r in rows}


def measure(runtime: Runtime, vectors: dict, truth: dict) -> tuple[dict, dict, dict]:
    """Per version: p50 latency (ms) in its steady state and in its first (cache-filling) pass, and recall@K.

    Each version is measured as if it served alone: a pass that fills the caches, then the measured
    pass; V1, V2, V1, V2 in blocks, so drift on a shared machine hits both alike."""
    backends = runtime.backends
    steady, first = {"v1": [], "v2": []}, {"v1": [], "v2": []}
    found = {"v1": 0, "v2": 0}
    for _ in range(2):
        for v in ("v1", "v2"):
            for timings in (first[v], steady[v]):
                for n in range(QUERIES):
                    started = time.perf_counter()
                    hits = backends[v].search_vector(vectors[v][n], K)
                    timings.append(time.perf_counter() - started)
                    found[v] += len({h.id for h in hits} & truth[v][n])
    p50 = {v: statistics.median(steady[v]) * 1000 for v in steady}
    cold = {v: statistics.median(first[v]) * 1000 for v in first}
    return p50, cold, {v: found[v] / (4 * K * QUERIES) for v in found}


def main() -> None:
    docs = documents(COUNT)
    asked = queries(docs, QUERIES)
    results = {}
    with bench_settings() as settings:
        runtime = Runtime(settings, settings.database_url, settings.redis_url)
        runtime.sync()
        DocumentStore(runtime.pool).upsert_many(docs)
        for version in ("v1", "v2"):
            backfill_for(runtime, version, BackfillOptions.from_settings(settings)).run()
        with runtime.pool.connection() as conn:
            conn.execute("SET statement_timeout = 0")
            conn.execute("VACUUM ANALYZE")
            sizes = {v: conn.execute("SELECT pg_total_relation_size(%s)", (f"doc_embeddings_{v}",)).fetchone()[0]
                     for v in ("v1", "v2")}
        vectors = {v: runtime.backends[v].embedder.embed(asked) for v in ("v1", "v2")}
        truth = {v: [exact(runtime, v, vector) for vector in vectors[v]] for v in ("v1", "v2")}
        runtime.close()
        for ef in EF_SEARCH:
            at = Runtime(settings.with_overrides(hnsw_ef_search=ef), settings.database_url, settings.redis_url)
            results[ef] = measure(at, vectors, truth)
            at.close()

    chosen = next((ef for ef in EF_SEARCH if min(results[ef][2].values()) >= RECALL_TARGET), EF_SEARCH[-1])
    p50, first, recall = results[chosen]
    size_ratio = sizes["v2"] / sizes["v1"]
    rows = [(f"ef_search={ef}: p50 V1 / V2, recall@{K} V1 / V2",
             f"{results[ef][0]['v1']:.2f} / {results[ef][0]['v2']:.2f} ms, "
             f"{results[ef][2]['v1']:.3f} / {results[ef][2]['v2']:.3f}") for ef in EF_SEARCH]
    rows += [
        ("chosen ef_search", f"{chosen} (the first with recall@{K} >= {RECALL_TARGET} for both)"),
        ("p50 V1 (1536-d) / V2 (768-d)", f"{p50['v1']:.2f} ms / {p50['v2']:.2f} ms (steady state)"),
        ("first pass p50 V1 / V2", f"{first['v1']:.2f} ms / {first['v2']:.2f} ms "
                                   f"(ratio {first['v2'] / first['v1']:.2f}, caches filling)"),
        ("p50 ratio V2 / V1", f"{p50['v2'] / p50['v1']:.2f}"),
        ("table+index V1 / V2", f"{sizes['v1'] / 2**20:.1f} MiB / {sizes['v2'] / 2**20:.1f} MiB"),
        ("size ratio V2 / V1", f"{size_ratio:.2f}"),
        (f"recall@{K} V1 / V2", f"{recall['v1']:.3f} / {recall['v2']:.3f}"),
    ]
    report(f"search over {COUNT:,} documents, HNSW (m=16, ef_construction=64), {QUERIES} queries, k={K}", rows, [
        ("p50 ratio <= 0.8", p50["v2"] / p50["v1"] <= 0.8),
        ("size ratio <= 0.55", size_ratio <= 0.55),
        (f"recall@{K} >= {RECALL_TARGET} (V1)", recall["v1"] >= RECALL_TARGET),
        (f"recall@{K} >= {RECALL_TARGET} (V2)", recall["v2"] >= RECALL_TARGET),
    ])


if __name__ == "__main__":
    main()
