"""A Chroma persistence directory, read straight from its files (no chromadb needed).

Chroma (0.5 to 1.x) keeps, under the directory:
- `chroma.sqlite3`: `collections` (id, name, dimension); `segments` (a METADATA and a
  VECTOR segment per collection); `embeddings` (the records of a metadata segment:
  `embedding_id` is the user's id); `embedding_metadata` (key/value rows per record,
  the text under `chroma:document`; list values in `embedding_metadata_array`);
  `embeddings_queue`, the write-ahead log with the vectors (FLOAT32), purged once
  the vector segment has persisted them; `max_seq_id`, how far each segment got.
- `<vector segment id>/`: the hnswlib index (`header.bin`, `data_level0.bin`) and
  `index_metadata.pickle` mapping user ids to hnswlib labels.

A record's vector is the last one the log holds for it after the vector segment's
`max_seq_id`, else the persisted one.
"""

from __future__ import annotations

import pickle
import sqlite3
import struct
from pathlib import Path

import numpy as np

from rollout.migration.importers.source import (
    ImportFileError,
    SafeUnpickler,
    SourceRecord,
    SourceScan,
    file_sizes,
)

DOCUMENT_KEY = "chroma:document"
DELETE = 3  # embeddings_queue.operation: 0 add, 1 update, 2 upsert, 3 delete
HNSW_FIELDS = "<QQQQQQiiQQQdQ"  # hnswlib's saveIndex header; Chroma's fork writes an int32 version first


class _PersistentData:
    """Stands in for chromadb's PersistentData in pickles written by Chroma 0.4/0.5."""


class _ChromaUnpickler(SafeUnpickler):
    def find_class(self, module: str, name: str):
        if module.startswith("chromadb.") and name == "PersistentData":
            return _PersistentData
        return super().find_class(module, name)


def read(path: Path, *, vectors: bool = False, collection: str | None = None) -> SourceScan:
    database = path / "chroma.sqlite3" if path.is_dir() else path
    folder = database.parent
    if not database.is_file():
        raise ImportFileError(f"{path}: not a Chroma directory (no chroma.sqlite3)")
    try:
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise ImportFileError(f"{database}: not an SQLite database ({exc})") from None
    missing = {"collections", "segments", "embeddings", "embedding_metadata"} - tables
    if missing:
        raise ImportFileError(f"{database}: not a Chroma store (no {', '.join(sorted(missing))} table)")
    try:
        return _scan(conn, tables, folder, database, vectors, collection)
    except sqlite3.DatabaseError as exc:
        raise ImportFileError(f"{database}: unreadable ({exc})") from None
    finally:
        conn.close()


def _scan(conn: sqlite3.Connection, tables: set[str], folder: Path, database: Path, vectors: bool,
          only: str | None) -> SourceScan:
    collections = conn.execute("SELECT id, name, dimension FROM collections ORDER BY name").fetchall()
    names = [c[1] for c in collections]
    if only is not None:
        collections = [c for c in collections if c[1] == only]
        if not collections:
            raise ImportFileError(f"{database}: no collection {only!r} (found: {', '.join(names) or 'none'})")
    scan = SourceScan("chroma", folder, [], file_sizes(database))
    for collection_id, name, dimension in collections:
        segments = dict(conn.execute("SELECT scope, id FROM segments WHERE collection = ?", (collection_id,)))
        records = _records(conn, tables, segments.get("METADATA"), name)
        found = ""
        if vectors and segments.get("VECTOR"):
            by_id = _vectors(conn, tables, folder / segments["VECTOR"], segments["VECTOR"], collection_id, scan)
            for record in records:
                record.vector = by_id.get(record.original_id)
            found = f", {sum(r.vector is not None for r in records)} with vectors"
        scan.records += records
        scan.notes.append(f"collection {name}: {len(records)} records, dimension {dimension}{found}")
    return scan


def _records(conn: sqlite3.Connection, tables: set[str], segment: str | None, collection: str) -> list[SourceRecord]:
    if segment is None:
        return []
    rows = conn.execute("SELECT id, embedding_id FROM embeddings WHERE segment_id = ? ORDER BY id",
                        (segment,)).fetchall()
    values: dict[int, dict] = {row[0]: {} for row in rows}
    for record, key, text, integer, number, flag in conn.execute(
            "SELECT m.id, m.key, m.string_value, m.int_value, m.float_value, m.bool_value "
            "FROM embedding_metadata m JOIN embeddings e ON e.id = m.id WHERE e.segment_id = ?", (segment,)):
        values[record][key] = _value(text, integer, number, flag)
    if "embedding_metadata_array" in tables:
        for record, key, text, integer, number, flag in conn.execute(
                "SELECT a.id, a.key, a.string_value, a.int_value, a.float_value, a.bool_value "
                "FROM embedding_metadata_array a JOIN embeddings e ON e.id = a.id WHERE e.segment_id = ? "
                "ORDER BY a.rowid", (segment,)):
            values[record].setdefault(key, []).append(_value(text, integer, number, flag))
    records = []
    for record, user_id in rows:
        metadata = values[record]
        content = metadata.pop(DOCUMENT_KEY, None)
        if not isinstance(content, str):
            content = ""
        category = metadata.get("category")
        records.append(SourceRecord(original_id=user_id, content=content, title=None,
                                    category=category if isinstance(category, str) else None,
                                    metadata=metadata, scope=collection))
    return records


def _value(text, integer, number, flag):
    if flag is not None:
        return bool(flag)
    if integer is not None:
        return integer
    if number is not None:
        return number
    return text


def _vectors(conn: sqlite3.Connection, tables: set[str], folder: Path, segment: str, collection_id: str,
             scan: SourceScan) -> dict[str, np.ndarray]:
    found = _persisted(folder, scan)
    flushed = conn.execute("SELECT seq_id FROM max_seq_id WHERE segment_id = ?", (segment,)).fetchone() \
        if "max_seq_id" in tables else None
    if "embeddings_queue" not in tables:
        return found
    for _seq, operation, user_id, raw, encoding in conn.execute(
            "SELECT seq_id, operation, id, vector, encoding FROM embeddings_queue "
            "WHERE topic LIKE ? AND seq_id > ? ORDER BY seq_id",
            (f"%{collection_id}", _seq_number(flushed[0]) if flushed else 0)):
        if operation == DELETE:
            found.pop(user_id, None)
        elif raw is not None and (encoding or "FLOAT32").upper() == "FLOAT32":
            found[user_id] = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    return found


def _seq_number(value) -> int:
    """max_seq_id holds an integer, or 8 big-endian bytes in stores written by Chroma 0.4."""
    if isinstance(value, bytes):
        return int.from_bytes(value, "big")
    return int(value or 0)


def _persisted(folder: Path, scan: SourceScan) -> dict[str, np.ndarray]:
    """The vectors of a persisted hnswlib index, by user id (empty when none was persisted yet)."""
    mapping_file, header_file, data_file = (folder / n for n in ("index_metadata.pickle", "header.bin",
                                                                  "data_level0.bin"))
    if not (mapping_file.is_file() and header_file.is_file() and data_file.is_file()):
        return {}
    try:
        with open(mapping_file, "rb") as handle:
            mapping = _ChromaUnpickler(handle).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as exc:
        raise ImportFileError(f"{mapping_file}: not a readable pickle ({exc})") from None
    id_to_label = mapping.get("id_to_label") if isinstance(mapping, dict) else getattr(mapping, "id_to_label", None)
    if not isinstance(id_to_label, dict):
        raise ImportFileError(f"{mapping_file}: no id_to_label mapping")
    header = header_file.read_bytes()
    size = struct.calcsize(HNSW_FIELDS)
    if len(header) not in (size, size + 4):
        raise ImportFileError(f"{header_file}: not an hnswlib header ({len(header)} bytes)")
    (_, _, count, per_element, label_offset, data_offset, *_rest) = struct.unpack(HNSW_FIELDS, header[-size:])
    raw = np.fromfile(data_file, dtype=np.uint8)
    if per_element <= 0 or raw.size < count * per_element or label_offset <= data_offset:
        raise ImportFileError(f"{data_file}: shorter than its header says ({raw.size} bytes)")
    rows = raw[: count * per_element].reshape(count, per_element)
    matrix = np.ascontiguousarray(rows[:, data_offset:label_offset]).view("<f4")
    labels = np.ascontiguousarray(rows[:, label_offset:label_offset + 8]).view("<u8")[:, 0]
    row_of = {int(label): i for i, label in enumerate(labels)}
    scan.files.update(file_sizes(data_file, header_file, mapping_file, base=folder.parent))
    return {user_id: matrix[row_of[label]].astype(np.float32)
            for user_id, label in id_to_label.items() if label in row_of}
