"""Weaviate objects as its REST API returns them, read from files (no Weaviate client needed).

PATH is a JSON file, a JSON-lines file, or a directory of them (`*.json`, `*.jsonl`,
in name order). Recognised shapes:
- a page of `GET /v1/objects?class=C&include=vector&limit=N&after=ID`:
  `{"objects": [...], "totalResults": N}` (one file per page);
- a JSON array of objects, or one object per line.

An object is `{"class", "id" (a UUID), "properties": {...}, "vector": [...],
"vectors": {name: [...]}, "tenant", "creationTimeUnix", "lastUpdateTimeUnix"}`.
The text is the property the user names (`content_property`), else the first of
`content`, `text`, `body`, `chunk`, `passage`; every other property becomes
metadata. The vector is `vector`, or the one named vector; with several named
vectors none is kept (the backfill embeds). The UUID is the record's id, the class
its scope, so the same UUID in two classes stays two documents.
"""

from __future__ import annotations

import json
from pathlib import Path

from rollout.migration.importers.source import ImportFileError, SourceRecord, SourceScan, as_vector, file_sizes

CONTENT_PROPERTIES = ("content", "text", "body", "chunk", "passage")
TITLE_PROPERTIES = ("title", "name", "heading")
TIMES = ("creationTimeUnix", "lastUpdateTimeUnix")


def read(path: Path, *, vectors: bool = False, collection: str | None = None,
         content_property: str | None = None) -> SourceScan:
    files = sorted([*path.glob("*.json"), *path.glob("*.jsonl")]) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise ImportFileError(f"{path}: no Weaviate export (a .json/.jsonl file or a directory of them)")
    scan = SourceScan("weaviate", path, [], file_sizes(*files))
    classes: dict[str, int] = {}
    several_vectors = 0
    for file in files:
        for where, obj in _objects(file):
            name = obj.get("class")
            classes[str(name)] = classes.get(str(name), 0) + 1
            if collection is not None and name != collection:
                continue
            record, several = _record(where, obj, vectors, content_property)
            several_vectors += several
            scan.records.append(record)
    if collection is not None and not scan.records:
        found = ", ".join(sorted(classes)) or "none"
        raise ImportFileError(f"{path}: no objects of class {collection!r} (found: {found})")
    if not scan.records:
        raise ImportFileError(f"{path}: no Weaviate objects found (expected pages of /v1/objects or object lines)")
    scan.notes.append("classes: " + ", ".join(f"{name} ({count})" for name, count in sorted(classes.items())))
    if several_vectors:
        scan.notes.append(f"{several_vectors} objects have several named vectors: none of theirs kept")
    return scan


def _objects(file: Path) -> list[tuple[str, dict]]:
    """(where, object) for every object of a file, whatever its shape."""
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        payloads = [(str(file), json.loads(text))]
    except ValueError:
        payloads = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    payloads.append((f"{file}:{number}", json.loads(line)))
                except ValueError as exc:
                    raise ImportFileError(f"{file}:{number}: not valid JSON ({exc}); a truncated file?") from None
    found = []
    for where, payload in payloads:
        if isinstance(payload, dict) and isinstance(payload.get("objects"), list):
            payload = payload["objects"]
        items = payload if isinstance(payload, list) else [payload]
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("properties"), dict):
                raise ImportFileError(f"{where}: expected Weaviate objects (with 'class', 'id' and 'properties')")
            found.append((where, item))
    return found


def _record(where: str, obj: dict, vectors: bool, content_property: str | None) -> tuple[SourceRecord, bool]:
    uuid, properties = obj.get("id"), obj["properties"]
    if not isinstance(uuid, str) or not uuid:
        raise ImportFileError(f"{where}: an object without an 'id'")
    if content_property is not None:
        if not isinstance(properties.get(content_property), str):
            present = ", ".join(k for k, v in properties.items() if isinstance(v, str)) or "none"
            raise ImportFileError(f"{where}: object {uuid} has no text property {content_property!r} "
                                  f"(its text properties: {present})")
        content_key = content_property
    else:
        content_key = next((p for p in CONTENT_PROPERTIES if isinstance(properties.get(p), str)), None)
        if content_key is None:
            present = ", ".join(k for k, v in properties.items() if isinstance(v, str)) or "none"
            raise ImportFileError(f"{where}: object {uuid} has none of the properties "
                                  f"{', '.join(CONTENT_PROPERTIES)}; name the text with --content-property "
                                  f"(its text properties: {present})")
    title_key = next((p for p in TITLE_PROPERTIES if p != content_key and isinstance(properties.get(p), str)), None)
    metadata = {k: v for k, v in properties.items() if k not in (content_key, title_key)}
    for name in (*TIMES, "tenant"):
        if obj.get(name) is not None:
            metadata.setdefault(f"weaviate_{name}", obj[name])
    vector, several = _vector(where, obj) if vectors else (None, False)
    category = properties.get("category")
    return SourceRecord(original_id=uuid, content=properties[content_key],
                        title=properties[title_key] if title_key else None,
                        category=category if isinstance(category, str) else None, metadata=metadata,
                        vector=vector, scope=str(obj["class"]) if obj.get("class") else None), several


def _vector(where: str, obj: dict):
    raw = obj.get("vector")
    named = obj.get("vectors")
    if not raw and isinstance(named, dict) and named:
        if len(named) > 1:
            return None, True
        raw = next(iter(named.values()))
    if not raw:
        return None, False
    vector = as_vector(raw)
    if vector is None:
        raise ImportFileError(f"{where}: the vector of {obj.get('id')} is not a list of numbers")
    return vector, False
