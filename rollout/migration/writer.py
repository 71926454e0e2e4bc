"""Dual-write: a document stored through the API is embedded for every version being written.

Which versions are written (from the version registry): the baseline whenever its
table exists, and any other version that is neither retired nor a read-only former
baseline while a migration to it is active, meaning `rollout migrate setup` or `run`
has been run for it (noted in `embedding_migrations`) or its table holds vectors.
So a document added or changed in the middle of a backfill is never missing from
the candidate, and nothing is paid for a version before anyone started moving to it.

An upsert embeds first (document-purpose embedders, outside any transaction),
then stores documents and vectors in one transaction; the vectors go through the
loader, joined on the content hash, so of two concurrent writers of one document
the one that commits last wins whole. If any embedding fails nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg_pool import ConnectionPool

from rollout.documents import Document, DocumentStore, UpsertCounts, upsert_documents
from rollout.embedders import Embedder, EmbeddingError
from rollout.migration.loader import EmbeddingLoader, EmbeddingRow, storable
from rollout.migration.status import migration_started, table_exists
from rollout.version_spec import VersionSettings
from rollout.versions import all_versions

WRITE_TIMEOUT = "60s"  # a write may wait for an index build of a bulk load (never a search's 2 s)


@dataclass(frozen=True)
class WriteResult:
    counts: UpsertCounts
    versions: list[str]
    embedded: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"inserted": self.counts.inserted, "updated": self.counts.updated,
                "unchanged": self.counts.unchanged, "versions": self.versions, "embedded": self.embedded}


class DocumentWriter:
    def __init__(self, pool: ConnectionPool, build_embedder: Callable[[VersionSettings], Embedder],
                 embedders: Mapping[str, Embedder] | None = None):
        self.pool = pool
        self.build_embedder = build_embedder  # a version's document embedder (the runtime's: long timeouts)
        self._embedders = dict(embedders or {})
        self._versions: dict[str, VersionSettings] = {}  # as the last registry read said
        self._built: dict[str, VersionSettings] = {}  # the set-up each embedder built here was made for

    def embedder(self, version: str) -> Embedder:
        """The document embedder of `version` as its registry row says now (built again when the row changed)."""
        setup = self._versions[version]
        if version not in self._embedders or self._built.get(version, setup) != setup:
            self._embedders[version] = self.build_embedder(setup)
            self._built[version] = setup
        return self._embedders[version]

    def written_versions(self, conn: psycopg.Connection) -> list[str]:
        """The versions an upsert embeds for now (see the module's docstring)."""
        written = []
        for version in all_versions(conn):
            if version.status in ("retired", "read_only") or not table_exists(conn, version.table_name):
                continue
            if version.status == "baseline" or migration_started(conn, version.name) or \
                    conn.execute(f"SELECT EXISTS (SELECT 1 FROM {version.table_name})").fetchone()[0]:
                self._versions[version.name] = version.settings
                written.append(version.name)
        return written

    def upsert(self, documents: Sequence[Document]) -> WriteResult:
        """Store `documents` with vectors for every written version; EmbeddingError: nothing stored."""
        with self.pool.connection() as conn:
            versions = self.written_versions(conn)
            needed = {v: self._needing(conn, v, documents) for v in versions}
        vectors = {}
        for version, docs in needed.items():
            if not docs:
                continue
            embedded = self.embedder(version).embed([d.text for d in docs])
            usable = storable(embedded)
            if not usable.all():
                bad = [d.id for d, ok in zip(docs, usable, strict=False) if not ok]
                raise EmbeddingError(f"{version}: the embedder returned unusable vectors for {', '.join(bad)}")
            vectors[version] = [EmbeddingRow(d.id, v, d.content_hash) for d, v in zip(docs, embedded, strict=False)]
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT set_config('statement_timeout', %s, true)", (WRITE_TIMEOUT,))
            counts = upsert_documents(conn, documents)
            stored = {}
            for version, rows in vectors.items():
                settings = self._versions[version]
                stored[version] = len(EmbeddingLoader(settings.table, settings.model).store(conn, rows))
                conn.execute("DELETE FROM embedding_failures WHERE version = %s AND document_id = ANY(%s)",
                             (version, [r.document_id for r in rows]))
        return WriteResult(counts, versions, {v: stored.get(v, 0) for v in versions})

    def _needing(self, conn: psycopg.Connection, version: str, documents: Sequence[Document]) -> list[Document]:
        """The documents whose vector in `version` is missing, of an older text, or of another model."""
        settings = self._versions[version]
        rows = conn.execute(f"SELECT document_id, content_hash, model FROM {settings.table} "
                            "WHERE document_id = ANY(%s)", ([d.id for d in documents],)).fetchall()
        have = {r[0]: (r[1], r[2]) for r in rows}
        return [d for d in documents if have.get(d.id) != (d.content_hash, settings.model)]

    def delete(self, document_id: str) -> bool:
        """Delete a document; its vectors in every version and its failures go with it (ON DELETE CASCADE)."""
        return DocumentStore(self.pool).delete(document_id)
