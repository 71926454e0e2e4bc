"""`rollout migrate run --dry-run`: what a run would embed, in tokens, dollars and time; writes nothing.

Tokens are estimated at four characters a token (what the providers' rules of
thumb say for English; Gemini reports no counts at all). The price per million
tokens comes from EMBEDDING_PRICES_PER_MTOK; the local embedder costs nothing.
The time comes from the last finished run of the version that embedded at least
MIN_MEASURED documents (a run of a few documents is mostly fixed costs, so its rate
says nothing of a large one), else from embedding a sample here (local) or from an
assumed provider latency (cloud).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import psycopg

from rollout.embedders import Embedder
from rollout.migration.backfill import BackfillOptions, rebuilds_index
from rollout.migration.status import NEEDS_EMBEDDING, MigrationStatus
from rollout.version_spec import VersionSettings

CHARS_PER_TOKEN = 4
ASSUMED_REQUEST_SECONDS = 1.0  # one provider call of EMBEDDING_BATCH_SIZE texts, when nothing was measured
SAMPLE_SIZE = 200
MIN_MEASURED = 100  # documents a finished run must have embedded for its rate to be used


@dataclass(frozen=True)
class CategoryEstimate:
    category: str
    documents: int
    missing: int          # no vector in this version
    stale: int            # a vector of an older text or another model
    failed_skipped: int   # refused before for the same text (skipped unless --retry-failed)
    to_embed: int
    tokens: int


@dataclass(frozen=True)
class BackfillEstimate:
    version: str
    provider: str
    model: str
    categories: list[CategoryEstimate]
    to_embed: int
    tokens: int
    price_per_mtok: float | None
    cost_usd: float | None
    docs_per_s: float | None
    seconds: float | None
    rate_basis: str
    index_plan: str

    def as_json(self) -> dict:
        return asdict(self)


def price_per_mtok(version: VersionSettings, prices: Mapping[str, float]) -> float | None:
    """USD per million tokens of the version's model, from `prices` (EMBEDDING_PRICES_PER_MTOK); local is free."""
    if version.embedder == "local":
        return 0.0
    return prices.get(version.model)


def estimate(conn: psycopg.Connection, version: VersionSettings, embedder: Embedder, options: BackfillOptions, *,
             prices: Mapping[str, float], embedding_batch_size: int) -> BackfillEstimate:
    """`prices`: EMBEDDING_PRICES_PER_MTOK; `embedding_batch_size`: texts per provider call (EMBEDDING_BATCH_SIZE)."""
    params = {"version": version.version, "model": version.model, "category": options.category,
              "retry": options.retry_failed}
    wanted = f"{NEEDS_EMBEDDING} AND (%(retry)s OR f.document_id IS NULL OR f.content_hash <> d.content_hash)"
    rows = conn.execute(f"""
        SELECT d.category, count(*),
               count(*) FILTER (WHERE e.document_id IS NULL),
               count(*) FILTER (WHERE e.document_id IS NOT NULL AND {NEEDS_EMBEDDING}),
               count(*) FILTER (WHERE {NEEDS_EMBEDDING} AND NOT %(retry)s AND f.content_hash = d.content_hash),
               count(*) FILTER (WHERE {wanted}),
               coalesce(sum(ceil((length(d.title) + length(d.content) + 2) / {CHARS_PER_TOKEN}.0))
                        FILTER (WHERE {wanted}), 0)::bigint
        FROM documents d
        LEFT JOIN {version.table} e ON e.document_id = d.id
        LEFT JOIN embedding_failures f ON f.version = %(version)s AND f.document_id = d.id
        WHERE %(category)s::text IS NULL OR d.category = %(category)s
        GROUP BY d.category ORDER BY d.category""", params).fetchall()
    categories = [CategoryEstimate(*row) for row in rows]
    pending = sum(c.to_embed for c in categories)
    tokens = sum(c.tokens for c in categories)
    to_embed = pending if options.limit is None else min(pending, options.limit)
    if pending and to_embed < pending:
        tokens = round(tokens * to_embed / pending)
    price = price_per_mtok(version, prices)
    rate, basis = _rate(conn, version, embedding_batch_size, embedder, options)
    total = conn.execute("SELECT count(*) FROM documents").fetchone()[0]
    return BackfillEstimate(
        version=version.version, provider=version.embedder, model=version.model, categories=categories,
        to_embed=to_embed, tokens=tokens, price_per_mtok=price,
        cost_usd=None if price is None else round(tokens / 1e6 * price, 6),
        docs_per_s=rate, seconds=round(to_embed / rate, 1) if rate else None, rate_basis=basis,
        index_plan=_index_plan(options, to_embed, total))


def _rate(conn: psycopg.Connection, version: VersionSettings, embedding_batch_size: int, embedder: Embedder,
          options: BackfillOptions) -> tuple[float | None, str]:
    measured = MigrationStatus(version).last_rate(conn, min_documents=MIN_MEASURED)
    if measured:
        return round(measured, 1), f"the last finished run of this version of at least {MIN_MEASURED} documents"
    if version.embedder == "local":
        texts = [f"{r[0]}\n\n{r[1]}" for r in conn.execute(
            "SELECT title, content FROM documents ORDER BY id LIMIT %s", (SAMPLE_SIZE,)).fetchall()]
        if not texts:
            return None, "no documents to sample"
        started = time.perf_counter()
        embedder.embed(texts)
        embed_rate = len(texts) / max(time.perf_counter() - started, 1e-6)
        # storing costs about as much as embedding with this embedder (bench/backfill.py)
        return round(embed_rate / 2 * min(options.workers, 2), 1), \
            f"embedding {len(texts)} documents here, storing assumed to cost as much"
    per_worker = embedding_batch_size / ASSUMED_REQUEST_SECONDS
    return round(per_worker * options.workers, 1), (
        f"assumed {ASSUMED_REQUEST_SECONDS:g} s per call of {embedding_batch_size} texts and "
        f"{options.workers} worker(s); the provider's rate limits may be lower")


def _index_plan(options: BackfillOptions, to_embed: int, total: int) -> str:
    share = to_embed / total if total else 0.0
    facts = f"{share:.0%} of the table loads; threshold {options.rebuild_share:.0%}, --index {options.index}"
    if rebuilds_index(options, to_embed, total):
        return f"drop the HNSW index and build it after the load ({facts})"
    return f"keep the HNSW index: rows are inserted into it ({facts})"
