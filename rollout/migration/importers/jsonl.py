"""JSON lines: one object a line, `{id?, title, content, category?, metadata?, embedding?}`."""

from __future__ import annotations

import json
from pathlib import Path

from rollout.migration.importers.source import ImportFileError, SourceRecord, SourceScan, as_vector, file_sizes

VECTOR_FIELDS = ("embedding", "vector")


def read(path: Path, *, vectors: bool = False, collection: str | None = None) -> SourceScan:
    if not path.is_file():
        raise ImportFileError(f"{path}: not a file (the jsonl format reads one JSON-lines file)")
    records = []
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    records.append(_record(path, number, line))
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                              "is this a JSON-lines file?") from None
    if not records:
        raise ImportFileError(f"{path}: no records")
    if not vectors:
        for record in records:
            record.vector = None
    return SourceScan("jsonl", path, records, file_sizes(path))


def _record(path: Path, number: int, line: str) -> SourceRecord:
    where = f"{path}:{number}"
    try:
        row = json.loads(line)
    except ValueError as exc:
        raise ImportFileError(f"{where}: not valid JSON ({exc}); a truncated file?") from None
    if not isinstance(row, dict):
        raise ImportFileError(f"{where}: expected a JSON object")
    content = row.get("content")
    if not isinstance(content, str):
        raise ImportFileError(f"{where}: 'content' is missing or not a string")
    metadata = row.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ImportFileError(f"{where}: 'metadata' must be an object")
    for name in ("title", "category"):
        if row.get(name) is not None and not isinstance(row[name], str):
            raise ImportFileError(f"{where}: '{name}' must be a string")
    raw = next((row[f] for f in VECTOR_FIELDS if row.get(f) is not None), None)
    vector = as_vector(raw) if raw is not None else None
    if raw is not None and vector is None:
        raise ImportFileError(f"{where}: 'embedding' must be a list of numbers")
    original = row.get("id")
    return SourceRecord(original_id=None if original is None else str(original), content=content,
                        title=row.get("title"), category=row.get("category"), metadata=metadata, vector=vector)
