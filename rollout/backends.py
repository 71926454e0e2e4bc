"""One backend per version: embed the query with that version's model, search its table.

Both versions share the `documents` table and differ only in their embeddings
table and embedder, so one class serves both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from rollout.embedders import Embedder, EmbeddingError
from rollout.errors import RolloutError
from rollout.schema import table_dimensions
from rollout.version_spec import VersionSettings


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    title: str
    snippet: str
    metadata: dict
    category: str
    similarity: float

    def as_json(self) -> dict:
        return {"id": self.id, "title": self.title, "snippet": self.snippet, "category": self.category,
                "metadata": self.metadata, "similarity": round(self.similarity, 6)}


@dataclass(frozen=True)
class SearchResult:
    version: str
    hits: list[Hit]
    embed_ms: float
    search_ms: float
    cache_hit: bool = False
    tokens: int = 0  # what embedding the query used (0 from the cache; an estimate where the model reports none)

    @property
    def top_similarity(self) -> float | None:
        return self.hits[0].similarity if self.hits else None

    @property
    def ids(self) -> list[str]:
        return [hit.id for hit in self.hits]


class SearchFailed(RolloutError):
    """A version could not answer; `kind` labels the fallback metric."""

    def __init__(self, version: str, kind: str, message: str):
        super().__init__(f"{version}: {kind}: {message}")
        self.version = version
        self.kind = kind  # embedding | timeout | database


class QueryRejected(RolloutError):
    """The database refused a value of the query itself (e.g. a NUL in its category): the client's
    input, not the version, is at fault, so it is never counted toward a breaker nor answered by a
    fallback (the other version would refuse it too)."""

    def __init__(self, version: str, message: str):
        super().__init__(f"the query was refused: {message}")
        self.version = version


class SearchBackend(Protocol):
    """What the gateway needs of a version: its name, its query cache (if any) and a search."""

    version: str
    query_cache: object | None

    def search(self, text: str, k: int, category: str | None = None,
               min_similarity: float | None = None) -> SearchResult: ...


class VersionBackend:
    """A version's search in PostgreSQL: the query embedded by the version's model, its table searched."""

    SNIPPET_CHARS = 240

    def __init__(self, version: VersionSettings, embedder: Embedder, pool: ConnectionPool):
        self.version = version.version
        self.settings = version
        self.embedder = embedder
        self.pool = pool
        self.query_cache = None  # optional: an object with get_or_embed(backend, text) -> (vector, hit)
        table = version.table
        self._sql = {
            filtered: (
                "SELECT d.id, d.title, left(d.content, %(snippet)s), d.metadata, d.category, "
                f"e.embedding <=> %(vector)s::{version.vector_type} AS distance FROM {table} e "
                "JOIN documents d ON d.id = e.document_id "
                + ("WHERE d.category = %(category)s " if filtered else "")
                + "ORDER BY distance LIMIT %(k)s"
            )
            for filtered in (False, True)
        }

    def embed_query(self, text: str) -> tuple[np.ndarray, bool]:
        """The query's vector, and whether it came from the cache."""
        if self.query_cache is not None:
            return self.query_cache.get_or_embed(self, text)
        return self.embedder.embed([text])[0], False

    def search(self, text: str, k: int, category: str | None = None,
               min_similarity: float | None = None) -> SearchResult:
        started = time.perf_counter()
        tokens_before = self.embedder.usage.thread_tokens()
        try:
            vector, cache_hit = self.embed_query(text)
        except EmbeddingError as exc:
            raise SearchFailed(self.version, "embedding", str(exc)) from exc
        embedded = time.perf_counter()
        tokens = self.embedder.usage.thread_tokens() - tokens_before
        hits = self.search_vector(vector, k, category)
        if min_similarity is not None:
            hits = [h for h in hits if h.similarity >= min_similarity]
        return SearchResult(self.version, hits, (embedded - started) * 1000,
                            (time.perf_counter() - embedded) * 1000, cache_hit, tokens=tokens)

    def search_vector(self, vector: np.ndarray, k: int, category: str | None = None) -> list[Hit]:
        params = {"vector": vector, "k": k, "category": category, "snippet": self.SNIPPET_CHARS}
        try:
            with self.pool.connection() as conn:
                rows = conn.execute(self._sql[category is not None], params).fetchall()
        except psycopg.errors.QueryCanceled as exc:
            raise SearchFailed(self.version, "timeout", str(exc).strip()) from exc
        except PoolTimeout as exc:
            raise SearchFailed(self.version, "database", f"no database connection: {exc}") from exc
        except psycopg.DataError as exc:
            if exc.sqlstate is not None:  # the server refused a value (e.g. a vector's dimensions): a fault
                raise SearchFailed(self.version, "database", str(exc).strip()) from exc
            raise QueryRejected(self.version, str(exc).strip()) from exc  # the driver refused a parameter
        except UnicodeEncodeError as exc:
            raise QueryRejected(self.version, str(exc).strip()) from exc
        except psycopg.Error as exc:
            raise SearchFailed(self.version, "database", str(exc).strip()) from exc
        return [Hit(r[0], r[1], r[2], r[3], r[4], 1.0 - float(r[5])) for r in rows]

    def health(self) -> dict:
        """Database reachable, rows embedded, index present, dimensions agree."""
        report = {"version": self.version, "table": self.settings.table, "embedder": self.embedder.describe()}
        try:
            with self.pool.connection(timeout=3) as conn:
                documents = conn.execute("SELECT count(*) FROM documents").fetchone()[0]
                embedded = conn.execute(f"SELECT count(*) FROM {self.settings.table}").fetchone()[0]
                index = conn.execute(
                    "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexdef ILIKE '%%USING hnsw%%'",
                    (self.settings.table,)).fetchone()
                dimensions = table_dimensions(conn, self.settings.table)
        except (psycopg.Error, PoolTimeout) as exc:
            return {**report, "status": "down", "database": "unreachable", "error": str(exc).strip()}
        problems = []
        if index is None:
            problems.append("no HNSW index")
        if dimensions != self.embedder.dimensions:
            problems.append(f"table holds vector({dimensions}), embedder gives {self.embedder.dimensions}")
        return {**report, "status": "degraded" if problems else "ok", "database": "ok",
                "documents": documents, "embedded": embedded,
                "coverage": round(embedded / documents, 6) if documents else None,
                "index": index[0] if index else None, "dimensions": dimensions, "problems": problems}
