"""`rollout import`: a corpus from another vector store into `documents` (and, if asked, its vectors).

One module per format reads a store into `SourceRecord`s; this module turns them
into documents and writes them in one transaction, so a bad file writes nothing.

Ids never depend on where a record sits in the file, so editing, reordering or
deleting records and importing again updates the same documents:

- a record's own id in the store always wins: `{namespace}_{id}` (Chroma
  collection, Vespa document type or Weaviate class in front);
- without one, its `source` metadata (or `doc_id`, `parent_id`, `url`, `path`)
  with its `chunk` / `chunk_index` metadata: `{namespace}_{source}_{chunk}`;
- without either, its text: `{namespace}_{source or "text"}_h{hash}` (an edited text
  is then a new document; the plan says so);
- an import never overwrites a document that is not the same record of a store
  (one written through the API, or another record): it is refused whole;
- records without an id of their own and with a text another record has are
  imported once; records with their own id are always imported;
- metadata is kept as it was, with `imported_from` (format, original id, the key
  the id was derived from) added;
- vectors are ignored unless `keep_vectors`, and then kept only for the version
  whose dimension they have (normalised; the backfill embeds the rest).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg
from psycopg_pool import ConnectionPool

from rollout.documents import Document, UpsertCounts, upsert_documents
from rollout.embedders.base import normalise_rows
from rollout.migration.importers import chroma, faiss, jsonl, vespa, weaviate
from rollout.migration.importers.source import ImportFileError, SourceRecord, SourceScan
from rollout.migration.loader import EmbeddingLoader, EmbeddingRow, storable
from rollout.version_spec import VersionSettings

READERS = {"jsonl": jsonl.read, "chroma": chroma.read, "faiss": faiss.read, "vespa": vespa.read,
           "weaviate": weaviate.read}
FORMATS = tuple(READERS)

SOURCE_KEYS = ("source", "doc_id", "document_id", "parent_id", "url", "path", "file")
CHUNK_KEYS = ("chunk", "chunk_index", "chunk_id", "chunk_number")
TITLE_KEYS = ("title", "name", "heading", "subject")
TITLE_CHARS = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")  # "_" separates the parts of a stable id
NAMESPACE_PATTERN = r"^[A-Za-z0-9.-]{1,64}$"

__all__ = ["FORMATS", "ImportFileError", "ImportPlan", "apply_import", "plan_import", "preview", "read_source"]


def read_source(path: Path, fmt: str, *, vectors: bool = False, collection: str | None = None,
                content_property: str | None = None) -> SourceScan:
    if fmt not in READERS:
        raise ImportFileError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not path.exists():
        raise ImportFileError(f"{path}: no such file or directory")
    if fmt == "weaviate":
        return weaviate.read(path, vectors=vectors, collection=collection, content_property=content_property)
    if content_property is not None:
        raise ImportFileError("--content-property applies to the weaviate format only")
    return READERS[fmt](path, vectors=vectors, collection=collection)


def id_part(value: str, limit: int = 96) -> str:
    """`value` as a piece of an id: unchanged if safe and short, else cleaned with a hash suffix (no collisions)."""
    cleaned = _UNSAFE.sub("-", value).strip("-")
    if cleaned == value and 0 < len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:10]
    return f"{cleaned[:limit - 11]}-{digest}" if cleaned else digest


def default_namespace(path: Path) -> str:
    return id_part(path.resolve().stem or "import", 64)


@dataclass
class ImportPlan:
    scan: SourceScan
    namespace: str
    documents: list[Document]
    vectors: dict[str, list[EmbeddingRow]] = field(default_factory=dict)
    targets: dict[str, VersionSettings] = field(default_factory=dict)  # where each version's vectors go
    duplicates: int = 0              # records whose text another record of the store already has
    empty: int = 0                   # records without text
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        dimensions = Counter(r.vector.size for r in self.scan.records if r.vector is not None)
        return {
            "format": self.scan.format, "path": str(self.scan.path), "namespace": self.namespace,
            "files": self.scan.files, "bytes": sum(self.scan.files.values()), "records": len(self.scan.records),
            "documents": len(self.documents), "duplicates": self.duplicates, "empty": self.empty,
            "categories": dict(Counter(d.category for d in self.documents).most_common()),
            "vector_dimensions": {str(k): v for k, v in dimensions.items()},
            "vectors_kept": {v: len(rows) for v, rows in self.vectors.items()},
            "notes": self.scan.notes + self.notes,
        }


def plan_import(scan: SourceScan, namespace: str, *, keep_vectors: bool = False, vectors_version: str | None = None,
                versions: Mapping[str, VersionSettings] | None = None) -> ImportPlan:
    """`versions`: where kept vectors may go, by name (`rollout import` passes the served versions' set-ups;
    none given: no vector is kept)."""
    if not re.match(NAMESPACE_PATTERN, namespace):
        raise ImportFileError(f"namespace {namespace!r}: use 1-64 letters, digits, '.' or '-'")
    plan = ImportPlan(scan, namespace, [])
    seen_hash: set[str] = set()
    by_id: dict[str, Document] = {}
    kept: list[tuple[str, np.ndarray]] = []
    from_text = same_text = 0
    for record in scan.records:
        if not record.content.strip():
            plan.empty += 1
            continue
        document, kind = _document(record, namespace, scan.format)
        digest = document.content_hash
        earlier = by_id.get(document.id)
        if earlier is not None:
            if earlier.content_hash == digest:
                plan.duplicates += 1
                continue
            raise ImportFileError(f"two records of different text map to the id {document.id!r} (the same id, "
                                  "or the same source and chunk metadata); fix them or import them separately")
        if digest in seen_hash:
            if kind != "id":
                plan.duplicates += 1
                continue
            same_text += 1
        seen_hash.add(digest)
        from_text += kind == "text"
        by_id[document.id] = document
        plan.documents.append(document)
        if record.vector is not None:
            kept.append((document.id, record.vector))
    if from_text:
        plan.notes.append(f"{from_text} records have no id (nor source and chunk metadata): their ids come from "
                          "their text, so an edited one is imported as a new document beside the old one; "
                          "give records an `id` to update them in place")
    if same_text:
        plan.notes.append(f"{same_text} records with their own id repeat another record's text: each id is kept")
    if keep_vectors:
        _keep_vectors(plan, kept, versions or {}, vectors_version)
    elif kept:
        plan.notes.append(f"{len(kept)} vectors found and ignored (--keep-vectors keeps those of a version's "
                          "dimension)")
    return plan


def _document(record: SourceRecord, namespace: str, fmt: str) -> tuple[Document, str]:
    """The document of `record` and how its id was derived: "id", "chunk" or "text" (see the module docstring)."""
    meta = record.metadata
    source = next((str(meta[k]) for k in SOURCE_KEYS if meta.get(k) not in (None, "")), None)
    chunk = next((int(meta[k]) for k in CHUNK_KEYS if _whole_number(meta.get(k))), None)
    if record.original_id is not None and not record.positional:
        own = f"{record.scope}.{record.original_id}" if record.scope else record.original_id
        kind, key, document_id = "id", f"id:{own}", f"{namespace}_{id_part(own)}"
    elif source is not None and chunk is not None:
        kind, key, document_id = "chunk", f"chunk:{source}#{chunk}", f"{namespace}_{id_part(source)}_{chunk}"
    else:
        digest = hashlib.sha256(record.content.encode("utf-8")).hexdigest()[:16]
        kind, key = "text", f"text:{source or ''}#{digest}"
        document_id = f"{namespace}_{id_part(source) if source else 'text'}_h{digest}"
    title = record.title or next((str(meta[k]) for k in TITLE_KEYS if isinstance(meta.get(k), str)
                                  and meta[k].strip()), None) or _first_line(record.content)
    metadata = _jsonable(meta)
    provenance = {"format": fmt, "id": record.original_id, "key": key}
    if record.scope:
        provenance["scope"] = record.scope
    metadata["imported_from"] = provenance
    return Document(document_id, title.strip()[:1000], record.content, (record.category or "general")[:128],
                    metadata), kind


def _whole_number(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, np.integer)):
        return value >= 0
    return isinstance(value, str) and value.isdigit()


def _first_line(content: str) -> str:
    line = next((part.strip() for part in content.splitlines() if part.strip()), content.strip())
    if len(line) <= TITLE_CHARS:
        return line
    cut = line[:TITLE_CHARS].rsplit(" ", 1)[0]
    return f"{cut}…"


def _jsonable(value):
    """Metadata as JSON can hold it: numpy scalars and arrays unwrapped, dates and the rest as text."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _keep_vectors(plan: ImportPlan, kept: list[tuple[str, np.ndarray]], versions: Mapping[str, VersionSettings],
                  vectors_version: str | None) -> None:
    if not kept:
        plan.notes.append("--keep-vectors: the store holds no vectors")
        return
    sizes = Counter(vector.size for _, vector in kept)
    hashes = {d.id: d.content_hash for d in plan.documents}
    for size, count in sorted(sizes.items()):
        if vectors_version is not None and vectors_version not in versions:
            raise ImportFileError(f"--vectors-version {vectors_version}: no such version "
                                  f"(known: {', '.join(versions)})")
        matching = [v for v, target in versions.items() if target.dimensions == size]
        if vectors_version is not None:
            matching = [v for v in matching if v == vectors_version]
        if not matching:
            plan.notes.append(f"{count} vectors of dimension {size} match no version's dimension: ignored")
            continue
        if len(matching) > 1:
            raise ImportFileError(f"vectors of dimension {size} fit {' and '.join(matching)}; "
                                  "say which with --vectors-version")
        version = matching[0]
        ids = [i for i, vector in kept if vector.size == size]
        matrix = normalise_rows(np.stack([vector for _, vector in kept if vector.size == size]))
        usable = storable(matrix)
        plan.vectors[version] = [EmbeddingRow(i, matrix[n], hashes[i]) for n, i in enumerate(ids) if usable[n]]
        plan.targets[version] = versions[version]
        if not usable.all():
            plan.notes.append(f"{int((~usable).sum())} vectors with NaN, infinite or only zero values: not kept")
        plan.notes.append(f"{len(plan.vectors[version])} vectors kept for {version} "
                          f"(as {versions[version].model}: they must come from that model)")


@dataclass(frozen=True)
class ImportResult:
    counts: UpsertCounts
    vectors: dict[str, int]
    already_present: dict[str, str]  # our id -> the id the corpus holds the same text under
    superseded: list[str] = field(default_factory=list)  # an earlier import's ids of the same records

    def as_json(self) -> dict:
        return {"inserted": self.counts.inserted, "updated": self.counts.updated,
                "unchanged": self.counts.unchanged, "vectors_stored": self.vectors,
                "already_present": len(self.already_present), "superseded": self.superseded}


def _already_present(conn: psycopg.Connection, plan: ImportPlan) -> dict[str, str]:
    """Documents of the plan without an id of their own whose text the corpus holds under another id."""
    derived = [d for d in plan.documents if not _key(d).startswith("id:")]
    rows = conn.execute("SELECT content_hash, min(id) FROM documents WHERE content_hash = ANY(%s) "
                        "AND NOT (id = ANY(%s)) GROUP BY 1",
                        ([d.content_hash for d in derived], [d.id for d in plan.documents])).fetchall()
    elsewhere = dict(rows)
    return {d.id: elsewhere[d.content_hash] for d in derived if d.content_hash in elsewhere}


def _key(document: Document) -> str:
    return _provenance(document).get("key", "")


def _superseded(conn: psycopg.Connection, plan: ImportPlan) -> list[str]:
    """Documents an import made before ids followed the records' own ids, of records this plan holds
    under their new id: the same record twice. Named, never deleted here."""
    owned = {(_provenance(d).get("format"), _provenance(d).get("scope"), _provenance(d).get("id"))
             for d in plan.documents if _key(d).startswith("id:")}
    if not owned:
        return []
    rows = conn.execute("SELECT id, metadata->'imported_from' FROM documents WHERE id LIKE %s "
                        "AND metadata ? 'imported_from' AND NOT (metadata->'imported_from' ? 'key') "
                        "AND NOT (id = ANY(%s))",
                        (plan.namespace + r"\_%", [d.id for d in plan.documents])).fetchall()
    return sorted(i for i, before in rows if isinstance(before, dict)
                  and (before.get("format"), before.get("scope"), before.get("id")) in owned)


def _provenance(document: Document) -> dict:
    return document.metadata.get("imported_from", {})


def _refuse_overwrites(conn: psycopg.Connection, plan: ImportPlan) -> None:
    """Refuse the import if one of its ids holds a document that is not the same record of a store.

    A document imported before ids carried their key counts as the same record when
    its format, scope and original id match.
    """
    rows = conn.execute("SELECT id, metadata->'imported_from' FROM documents WHERE id = ANY(%s)",
                        ([d.id for d in plan.documents],)).fetchall()
    stored = dict(rows)
    others = []
    for document in plan.documents:
        if document.id not in stored:
            continue
        before, now = stored[document.id], document.metadata.get("imported_from", {})
        if not isinstance(before, dict):
            same = False
        elif "key" in before:
            same = before["key"] == now["key"]
        else:
            same = all(before.get(k) == now.get(k) for k in ("format", "id", "scope"))
        if not same:
            others.append(document.id)
    if others:
        shown = ", ".join(repr(i) for i in others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise ImportFileError(f"import refused, nothing written: {len(others)} ids already hold another document "
                              f"({shown}: written through the API or from another record); "
                              "import under another --namespace")


def preview(pool: ConnectionPool, plan: ImportPlan) -> dict:
    """What `apply_import` would do, read-only: new, changed and unchanged documents."""
    with pool.connection() as conn:
        _refuse_overwrites(conn, plan)
        present = _already_present(conn, plan)
        superseded = _superseded(conn, plan)
        rows = conn.execute("SELECT id, category, title, content, metadata FROM documents WHERE id = ANY(%s)",
                            ([d.id for d in plan.documents],)).fetchall()
    stored = {r[0]: tuple(r[1:]) for r in rows}
    new = changed = 0
    for d in plan.documents:
        if d.id in present:
            continue
        if d.id not in stored:
            new += 1
        elif stored[d.id] != (d.category, d.title, d.content, json.loads(json.dumps(d.metadata))):
            changed += 1
    considered = len(plan.documents) - len(present)
    return {"new": new, "changed": changed, "unchanged": considered - new - changed,
            "already_present": len(present), "superseded": superseded}


def apply_import(pool: ConnectionPool, plan: ImportPlan) -> ImportResult:
    """Documents and kept vectors in one transaction: all of them, or nothing."""
    with pool.connection() as conn, conn.transaction():
        conn.execute("SELECT set_config('statement_timeout', '0', true)")
        conn.execute("LOCK TABLE documents IN SHARE ROW EXCLUSIVE MODE")  # no writer slips in between check and write
        _refuse_overwrites(conn, plan)
        present = _already_present(conn, plan)
        superseded = _superseded(conn, plan)
        documents = [d for d in plan.documents if d.id not in present]
        counts = upsert_documents(conn, documents)
        stored = {}
        for version, rows in plan.vectors.items():
            target = plan.targets[version]
            stored[version] = len(EmbeddingLoader(target.table, target.model)
                                  .store(conn, [r for r in rows if r.document_id not in present]))
    return ImportResult(counts, stored, present, superseded)
