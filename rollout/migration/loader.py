"""Bulk loading of embeddings, as pgvector-python recommends: binary COPY with pgvector's types.

Rows are copied into a temporary staging table, then moved into the version's
table with one INSERT ... ON CONFLICT. The move joins `documents` on the content
hash, so a vector computed from text that changed meanwhile is dropped rather
than stored as current, and a document deleted meanwhile leaves no orphan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import psycopg


@dataclass(frozen=True)
class EmbeddingRow:
    document_id: str
    vector: np.ndarray
    content_hash: str


def storable(vectors: np.ndarray) -> np.ndarray:
    """Which rows may be stored: finite and not all zero.

    pgvector refuses NaN and infinity (one bad row would fail a whole COPY), and a
    zero vector has no direction, so cosine distance to it is undefined.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        return np.zeros(len(vectors), dtype=bool)
    return np.isfinite(vectors).all(axis=1) & vectors.any(axis=1)


class EmbeddingLoader:
    def __init__(self, table: str, model: str):
        self.table = table
        self.model = model

    def load(self, conn: psycopg.Connection, rows: Sequence[EmbeddingRow]) -> int:
        """Store `rows`; return how many were stored (stale ones are skipped)."""
        return len(self.store(conn, rows))

    def store(self, conn: psycopg.Connection, rows: Sequence[EmbeddingRow]) -> list[str]:
        """Store `rows` atomically (a savepoint inside the caller's transaction); return the ids stored."""
        if not rows:
            return []
        with conn.transaction():
            self.stage(conn, rows)
            return self.merge(conn)

    def stage(self, conn: psycopg.Connection, rows: Sequence[EmbeddingRow]) -> None:
        """COPY the rows, in binary, into this session's staging table."""
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS embedding_staging "
                     "(document_id text, embedding vector, content_hash text) ON COMMIT DELETE ROWS")
        with conn.cursor().copy("COPY embedding_staging (document_id, embedding, content_hash) "
                                "FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["text", "vector", "text"])
            for row in rows:
                copy.write_row((row.document_id, row.vector, row.content_hash))

    def merge(self, conn: psycopg.Connection) -> list[str]:
        """Move the staged rows whose document still has that text into the version's table."""
        stored = conn.execute(f"""
            INSERT INTO {self.table} (document_id, embedding, model, content_hash, embedded_at)
            SELECT s.document_id, s.embedding, %s, s.content_hash, now()
            FROM embedding_staging s
            JOIN documents d ON d.id = s.document_id AND d.content_hash = s.content_hash
            ON CONFLICT (document_id) DO UPDATE SET
                embedding = EXCLUDED.embedding, model = EXCLUDED.model,
                content_hash = EXCLUDED.content_hash, embedded_at = EXCLUDED.embedded_at
            RETURNING document_id""", (self.model,)).fetchall()
        conn.execute("TRUNCATE embedding_staging")  # the next store in this transaction starts empty
        return [row[0] for row in stored]
