"""The corpus: documents with stable IDs and the hash of the text that gets embedded.

The hash covers exactly what an embedder sees (title and content), so a changed
title or content marks the document's embeddings stale in every version, and an
unchanged re-import touches nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg_pool import ConnectionPool

from rollout.errors import RolloutError


def embedding_text(title: str, content: str) -> str:
    """The text an embedder receives for a document."""
    return f"{title}\n\n{content}"


def content_hash(title: str, content: str) -> str:
    return hashlib.sha256(embedding_text(title, content).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    content: str
    category: str = "general"
    metadata: dict = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        return content_hash(self.title, self.content)

    @property
    def text(self) -> str:
        return embedding_text(self.title, self.content)


@dataclass(frozen=True)
class UpsertCounts:
    inserted: int
    updated: int
    unchanged: int


class CorpusFileError(RolloutError):
    """A corpus file that cannot be read; the message names the file and line."""


def read_jsonl(path: Path) -> list[Document]:
    """Documents from a JSON-lines file of {id, title, content, category?, metadata?}."""
    documents = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                documents.append(Document(str(row["id"]), row["title"], row["content"],
                                          row.get("category") or "general", row.get("metadata") or {}))
            except (ValueError, KeyError, TypeError) as exc:
                raise CorpusFileError(f"{path}:{number}: not a document ({exc})") from None
    return documents


def upsert_documents(conn: psycopg.Connection, documents: Iterable[Document]) -> UpsertCounts:
    """The upsert of `DocumentStore.upsert_many` inside the caller's transaction (with its vectors, say)."""
    rows = [(d.id, d.category, d.title, d.content, json.dumps(d.metadata), d.content_hash) for d in documents]
    if not rows:
        return UpsertCounts(0, 0, 0)
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS incoming_documents (id text, category text, title text, "
                 "content text, metadata jsonb, content_hash text) ON COMMIT DELETE ROWS")
    with conn.cursor().copy("COPY incoming_documents FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    result = conn.execute("""
        INSERT INTO documents AS d (id, category, title, content, metadata, content_hash)
        SELECT DISTINCT ON (id) id, category, title, content, metadata, content_hash FROM incoming_documents
        ORDER BY id
        ON CONFLICT (id) DO UPDATE SET
            category = EXCLUDED.category, title = EXCLUDED.title, content = EXCLUDED.content,
            metadata = EXCLUDED.metadata, content_hash = EXCLUDED.content_hash, updated_at = now()
        WHERE (d.category, d.title, d.content, d.metadata, d.content_hash)
              IS DISTINCT FROM (EXCLUDED.category, EXCLUDED.title, EXCLUDED.content,
                                EXCLUDED.metadata, EXCLUDED.content_hash)
        RETURNING (xmax = 0) AS inserted""").fetchall()
    conn.execute("TRUNCATE incoming_documents")
    inserted = sum(1 for (was_insert,) in result if was_insert)
    distinct = len({row[0] for row in rows})
    return UpsertCounts(inserted, len(result) - inserted, distinct - len(result))


class DocumentStore:
    def __init__(self, pool: ConnectionPool):
        self.pool = pool

    def upsert_many(self, documents: Iterable[Document]) -> UpsertCounts:
        """Insert new documents, update changed ones, leave identical ones untouched; one transaction."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SET LOCAL statement_timeout = 0")  # a bulk write, not a search
            return upsert_documents(conn, documents)

    def delete(self, document_id: str) -> bool:
        """Delete a document; its embeddings in every version go with it (ON DELETE CASCADE)."""
        with self.pool.connection() as conn:
            return conn.execute("DELETE FROM documents WHERE id = %s", (document_id,)).rowcount == 1

    def count(self) -> int:
        with self.pool.connection() as conn:
            return conn.execute("SELECT count(*) FROM documents").fetchone()[0]

    def categories(self) -> list[str]:
        with self.pool.connection() as conn:
            return [r[0] for r in conn.execute("SELECT DISTINCT category FROM documents ORDER BY 1").fetchall()]
