"""Backfill throughput: our loader (claims, batches, binary COPY, HNSW built once) against the naive loop.

The naive loop is the seed's `insert_document`: embed one document, INSERT one row
into the indexed table, commit, next. Both embed 20,000 documents for the candidate
(the registry's, or `--candidate NAME`; on a new database the demo's v2, 768-d) with its
embedder on the same database. Our figure is given two ways: "load" counts
claiming, embedding and storing (the HNSW index dropped for the load), "all-in"
adds building the index afterwards, so the table is searchable again.
Both run after one unmeasured load (see main), on the same 20,000 documents.
Targets: load >= 10,000 docs/s, and >= 10x the naive loop.
"""

from __future__ import annotations

import argparse
import time

from harness import bench_settings, pair, report
from synthetic import documents

from rollout.configured import backfill_options
from rollout.documents import DocumentStore
from rollout.embedders import build_embedder
from rollout.migration.backfill import backfill_for
from rollout.migration.index import VectorIndex
from rollout.runtime import Runtime

COUNT = 20_000


RUNS = 3


def naive(runtime: Runtime, name: str, docs) -> float:
    """Seconds to embed and insert `docs` one at a time, a commit per row, into the indexed table."""
    version = runtime.version(name)
    embedder = build_embedder(version, runtime.settings, purpose="document")  # what the backfill embeds with
    with runtime.pool.connection() as conn:
        conn.execute("SELECT set_config('statement_timeout', '0', false)")
        conn.autocommit = False
        started = time.perf_counter()
        for doc in docs:
            vector = embedder.embed([doc.text])[0]
            conn.execute(f"INSERT INTO {version.table} (document_id, embedding, model, content_hash) "
                         "VALUES (%s, %s, %s, %s)", (doc.id, vector, version.model, doc.content_hash))
            conn.commit()
        seconds = time.perf_counter() - started
        conn.autocommit = True
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", help="The version backfilled (default: the registry's candidate).")
    args = parser.parse_args()
    docs = documents(COUNT)
    with bench_settings() as settings:
        _, candidate = pair(settings.database_url, candidate=args.candidate)
        runtime = Runtime(settings, settings.database_url, settings.redis_url)
        runtime.sync()
        version = runtime.version(candidate)
        DocumentStore(runtime.pool).upsert_many(docs)
        with runtime.pool.connection() as conn:
            conn.execute("VACUUM ANALYZE documents")

        # A fresh cluster creates (and fsyncs) its WAL segments on first use; a live database recycles
        # them. One unmeasured load first, so both measured loops run on a warmed-up cluster.
        # Then RUNS measured loads of the whole table; the median run is reported (the machine is shared).
        backfill_for(runtime, candidate, backfill_options(settings)).run()
        runs = []
        for _ in range(RUNS):
            with runtime.pool.connection() as conn:
                conn.execute(f"TRUNCATE {version.table}, embedding_migration_status")
                conn.execute("CHECKPOINT")
            run = backfill_for(runtime, candidate, backfill_options(settings)).run()
            assert run.embedded == COUNT and run.error is None, run.as_json()
            runs.append(run)
        ours = sorted(runs, key=lambda r: r.load_docs_per_s)[RUNS // 2]

        with runtime.pool.connection() as conn:
            conn.execute(f"TRUNCATE {version.table}")
            assert VectorIndex(version).state(conn).searchable
        naive_s = naive(runtime, candidate, docs)
        runtime.close()

    naive_rate = COUNT / naive_s
    options = backfill_options(settings)
    report(f"backfill of {COUNT:,} documents, candidate {candidate} ({version.dimensions}-d, {version.embedder} "
           f"embedder), "
           f"{options.workers} workers, batches of {options.batch_size}", [
               ("ours, load (claim+embed+COPY)", f"{ours.load_docs_per_s:,.0f} docs/s ({ours.load_seconds:.2f} s; "
                                                 f"median of {RUNS} runs: "
                                                 + " ".join(f"{r.load_docs_per_s:,.0f}" for r in runs) + ")"),
               ("ours, HNSW build after the load", f"{ours.index_build_seconds:.2f} s"),
               ("ours, all-in (load + build)", f"{ours.docs_per_s:,.0f} docs/s ({ours.seconds:.2f} s)"),
               ("naive (embed 1, INSERT 1, commit)", f"{naive_rate:,.0f} docs/s ({naive_s:.2f} s)"),
               ("ratio load / naive", f"{ours.load_docs_per_s / naive_rate:.1f}x"),
               ("ratio all-in / naive", f"{ours.docs_per_s / naive_rate:.1f}x"),
           ], [
               (">= 10,000 docs/s (load)", ours.load_docs_per_s >= 10_000),
               (">= 10x naive (load)", ours.load_docs_per_s / naive_rate >= 10),
               (">= 10x naive (all-in)", ours.docs_per_s / naive_rate >= 10),
           ])


if __name__ == "__main__":
    main()
