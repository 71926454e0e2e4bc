"""A Vespa export: query results (`/search/`) or a document visit (`/document/v1`, `vespa visit`).

PATH is a JSON file, a JSON-lines file, or a directory of them (`*.json`, `*.jsonl`,
in name order, e.g. one file per visit continuation). Recognised shapes:
- `/search/`: `{"root": {"children": [{"id": ..., "fields": {...}}]}}` (the document id
  is `fields.documentid` when the summary has it);
- `/document/v1` visit: `{"documents": [{"id": "id:ns:type::key", "fields": {...}}]}`;
- `vespa visit` / feed lines: `{"put" | "id": "id:ns:type::key", "fields": {...}}`.

Fields: the text from `content`, `text`, `body`, `chunk` or `passage`; the title from
`title`, `name` or `heading`; the vector from `embedding` (or the first tensor field)
in any of Vespa's JSON tensor forms; every other field becomes metadata.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from rollout.migration.importers.source import ImportFileError, SourceRecord, SourceScan, as_vector, file_sizes

CONTENT_FIELDS = ("content", "text", "body", "chunk", "passage")
TITLE_FIELDS = ("title", "name", "heading")
SYSTEM_FIELDS = {"sddocname", "documentid", "summaryfeatures", "matchfeatures", "relevance"}
_HEX_CELL = {"float": ">f4", "double": ">f8", "int8": "i1"}  # Vespa's hex form is big-endian per cell
_TENSOR_TYPE = re.compile(r"tensor<(\w+)>")


def read(path: Path, *, vectors: bool = False, collection: str | None = None) -> SourceScan:
    files = sorted([*path.glob("*.json"), *path.glob("*.jsonl")]) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise ImportFileError(f"{path}: no Vespa export (a .json/.jsonl file or a directory of them)")
    scan = SourceScan("vespa", path, [], file_sizes(*files))
    for file in files:
        documents = _documents(file)
        scan.records += [_record(file, doc_id, fields, vectors) for doc_id, fields in documents]
    if not scan.records:
        raise ImportFileError(f"{path}: no Vespa documents found (expected root.children[].fields, "
                              "documents[].fields or one {put|id, fields} object a line)")
    return scan


def _documents(file: Path) -> list[tuple[str | None, dict]]:
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{file}: not UTF-8 text ({exc.reason})") from None
    try:
        payloads = [json.loads(text)]
    except ValueError:
        payloads = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    payloads.append(json.loads(line))
                except ValueError as exc:
                    raise ImportFileError(f"{file}:{number}: not valid JSON ({exc}); a truncated file?") from None
    found = []
    for payload in payloads:
        found += _from_payload(file, payload)
    return found


def _from_payload(file: Path, payload) -> list[tuple[str | None, dict]]:
    if isinstance(payload, list):
        return [item for entry in payload for item in _from_payload(file, entry)]
    if not isinstance(payload, dict):
        return []
    if isinstance(payload.get("root"), dict):
        children = payload["root"].get("children") or []
        return [(_fields(file, c).get("documentid") or c.get("id"), _fields(file, c))
                for c in children if isinstance(c, dict) and "fields" in c]
    if isinstance(payload.get("documents"), list):
        return [(d.get("id"), _fields(file, d)) for d in payload["documents"] if isinstance(d, dict)]
    if "fields" in payload and ("put" in payload or "id" in payload):
        return [(payload.get("put") or payload.get("id"), _fields(file, payload))]
    return []


def _fields(file: Path, entry: dict) -> dict:
    fields = entry.get("fields")
    if not isinstance(fields, dict):
        raise ImportFileError(f"{file}: 'fields' of {entry.get('id')!r} is not an object")
    return fields


def _split_id(doc_id: str | None) -> tuple[str | None, str | None]:
    """`id:<namespace>:<type>:<key=value>:<user id>` -> (user id, type)."""
    if isinstance(doc_id, str) and doc_id.startswith("id:"):
        parts = doc_id.split(":", 4)
        if len(parts) == 5:
            return parts[4], parts[2]
    return doc_id, None


def _record(file: Path, doc_id: str | None, fields: dict, vectors: bool) -> SourceRecord:
    user_id, doc_type = _split_id(doc_id)
    content_field = next((f for f in CONTENT_FIELDS if isinstance(fields.get(f), str)), None)
    if content_field is None:
        raise ImportFileError(f"{file}: document {doc_id!r} has no text field ({', '.join(CONTENT_FIELDS)})")
    title_field = next((f for f in TITLE_FIELDS if isinstance(fields.get(f), str)), None)
    vector_field = "embedding" if "embedding" in fields else next(
        (name for name, value in fields.items() if _is_tensor(value)), None)
    metadata = {k: v for k, v in fields.items()
                if k not in SYSTEM_FIELDS and k not in (content_field, title_field, vector_field)}
    category = fields.get("category")
    vector = _tensor(fields[vector_field], file, doc_id) if vectors and vector_field else None
    return SourceRecord(original_id=user_id, content=fields[content_field],
                        title=fields[title_field] if title_field else None,
                        category=category if isinstance(category, str) else None,
                        metadata=metadata, vector=vector, scope=doc_type)


def _is_tensor(value) -> bool:
    return isinstance(value, dict) and ("values" in value or "cells" in value or "blocks" in value)


def _tensor(value, file: Path, doc_id) -> np.ndarray:
    """A dense 1-d tensor from any JSON form Vespa writes: a list, {values: list | hex}, or {cells}."""
    cell_type = "float"
    if isinstance(value, dict):
        match = _TENSOR_TYPE.match(str(value.get("type", "")))
        cell_type = match.group(1) if match else cell_type
        if "cells" in value:
            cells = value["cells"]
            if isinstance(cells, dict):  # short form of a mapped tensor: label -> value
                value = [cells[k] for k in sorted(cells, key=_label_order)]
            else:
                value = [c["value"] for c in sorted(cells, key=lambda c: _label_order(
                    next(iter(c.get("address", {}).values()), 0)))]
        else:
            value = value.get("values")
    if isinstance(value, str):
        vector = _hex(value, cell_type)
    else:
        vector = as_vector(value)
    if vector is None:
        raise ImportFileError(f"{file}: the tensor of {doc_id!r} is not a dense vector")
    return vector


def _label_order(label):
    return int(label) if str(label).lstrip("-").isdigit() else str(label)


def _hex(text: str, cell_type: str) -> np.ndarray | None:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    if cell_type == "bfloat16":  # the upper half of a float32
        halves = np.frombuffer(raw, dtype=">u2").astype(np.uint32) << 16
        return halves.view(np.float32).astype(np.float32)
    dtype = np.dtype(_HEX_CELL.get(cell_type, ">f4"))
    if len(raw) % dtype.itemsize:
        return None
    return np.frombuffer(raw, dtype=dtype).astype(np.float32)
