"""Backfill: embed every document a version lacks (or holds stale) and bulk-load the vectors."""

from __future__ import annotations

import time
from dataclasses import dataclass

from psycopg_pool import ConnectionPool

from rollout.backends import VersionBackend
from rollout.documents import embedding_text
from rollout.migration.loader import EmbeddingLoader, EmbeddingRow


@dataclass(frozen=True)
class BackfillReport:
    version: str
    embedded: int
    seconds: float

    @property
    def docs_per_s(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


class Backfill:
    def __init__(self, pool: ConnectionPool, backend: VersionBackend, batch_size: int = 500):
        self.pool = pool
        self.backend = backend
        self.batch_size = batch_size
        self.table = backend.settings.table
        self.loader = EmbeddingLoader(self.table, backend.settings.model)

    def pending(self) -> int:
        with self.pool.connection() as conn:
            return conn.execute(f"""SELECT count(*) FROM documents d LEFT JOIN {self.table} e ON e.document_id = d.id
                                    WHERE e.document_id IS NULL OR e.content_hash <> d.content_hash""").fetchone()[0]

    def run(self) -> BackfillReport:
        started = time.perf_counter()
        embedded, after = 0, ""
        with self.pool.connection() as conn:
            while True:
                batch = conn.execute(f"""
                    SELECT d.id, d.title, d.content, d.content_hash FROM documents d
                    LEFT JOIN {self.table} e ON e.document_id = d.id
                    WHERE (e.document_id IS NULL OR e.content_hash <> d.content_hash) AND d.id > %s
                    ORDER BY d.id LIMIT %s""", (after, self.batch_size)).fetchall()
                if not batch:
                    break
                vectors = self.backend.embedder.embed([embedding_text(r[1], r[2]) for r in batch])
                rows = [EmbeddingRow(r[0], v, r[3]) for r, v in zip(batch, vectors)]
                embedded += self.loader.load(conn, rows)
                after = batch[-1][0]
        return BackfillReport(self.backend.version, embedded, time.perf_counter() - started)
