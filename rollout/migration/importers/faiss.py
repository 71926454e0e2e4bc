"""A FAISS index with its texts and metadata pickled beside it.

The layout: a directory holding the index (`index.faiss`, or one `*.faiss` /
`*.index` file), `text.pkl` (a list of texts, position = FAISS id, or a dict id ->
text) and `metadata.pkl` (the same shape, of dicts). PATH may name the directory
or the index file. The pickles are read with a loader that rebuilds data only.
The ids of an `IndexIDMap` are the records' own ids; a plain index has only
positions, which change when it is rebuilt, so those records are identified by
their source and chunk metadata or their text instead.

Reading the index needs the `faiss-cpu` package (`pip install 'rag-rollout[faiss]'`),
imported only here. Vectors are kept only from indexes that store them exactly
(flat, HNSW-flat, IVF-flat); quantised ones (PQ, SQ, LSH) give approximations.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from rollout.migration.importers.source import ImportFileError, SourceRecord, SourceScan, file_sizes, load_pickle

LOSSY = ("PQ", "SQ", "LSH", "Binary", "RaBitQ")


def _faiss():
    try:
        return importlib.import_module("faiss")
    except ImportError:
        raise ImportFileError("reading a FAISS index needs the faiss-cpu package: "
                              "pip install 'rag-rollout[faiss]'") from None


def _index_file(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise ImportFileError(f"{path}: no such file or directory")
    if (path / "index.faiss").is_file():
        return path / "index.faiss"
    candidates = sorted([*path.glob("*.faiss"), *path.glob("*.index")])
    if len(candidates) != 1:
        raise ImportFileError(f"{path}: expected one index file (index.faiss, *.faiss or *.index), "
                              f"found {len(candidates)}")
    return candidates[0]


def _by_id(value, name: str, ids: list[int], path: Path) -> list:
    """Entries of a pickled list (by position) or dict (by FAISS id), in the order of `ids`."""
    if isinstance(value, dict):
        missing = [i for i in ids if i not in value and str(i) not in value]
        if missing:
            raise ImportFileError(f"{path}: no {name} for ids {missing[:5]}")
        return [value[i] if i in value else value[str(i)] for i in ids]
    if isinstance(value, (list, tuple)):
        if len(value) != len(ids):
            raise ImportFileError(f"{path}: {len(value)} {name} entries for {len(ids)} vectors in the index")
        return list(value)  # by storage position
    raise ImportFileError(f"{path}: expected a list or a dict of {name}, found {type(value).__name__}")


def read(path: Path, *, vectors: bool = False, collection: str | None = None) -> SourceScan:
    index_file = _index_file(path)
    folder = index_file.parent
    text_file, metadata_file = folder / "text.pkl", folder / "metadata.pkl"
    for needed in (text_file, metadata_file):
        if not needed.is_file():
            raise ImportFileError(f"{folder}: {needed.name} is missing (the layout is the index, text.pkl "
                                  "and metadata.pkl side by side)")
    faiss = _faiss()
    try:
        index = faiss.read_index(str(index_file))
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise ImportFileError(f"{index_file}: not a FAISS index ({first_line})") from None
    ids, inner, positional = _ids(faiss, index)
    texts = _by_id(load_pickle(text_file), "texts", ids, text_file)
    metadata = _by_id(load_pickle(metadata_file), "metadata", ids, metadata_file)
    kind = type(faiss.downcast_index(inner)).__name__
    lossy = any(mark in kind for mark in LOSSY)
    scan = SourceScan("faiss", folder, [], file_sizes(index_file, text_file, metadata_file),
                      [f"{kind}: {index.ntotal} vectors of dimension {index.d}"])
    matrix = None
    if vectors and lossy:
        scan.notes.append(f"{kind} stores approximations of the vectors: none kept")
    elif vectors and index.ntotal:
        matrix = _reconstruct(faiss, inner, index.ntotal)
    for position, (faiss_id, text, meta) in enumerate(zip(ids, texts, metadata, strict=False)):
        if not isinstance(text, str):
            raise ImportFileError(f"{text_file}: entry {faiss_id} is a {type(text).__name__}, not a text")
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):
            raise ImportFileError(f"{metadata_file}: entry {faiss_id} is a {type(meta).__name__}, not a dict")
        category = meta.get("category")
        scan.records.append(SourceRecord(
            original_id=str(faiss_id), content=text, title=meta.get("title") if isinstance(meta.get("title"), str)
            else None, category=category if isinstance(category, str) else None, metadata=dict(meta),
            vector=None if matrix is None else matrix[position], positional=positional))
    return scan


def _ids(faiss, index) -> tuple[list[int], object, bool]:
    """The FAISS ids in storage order, the index that stores the vectors, and whether the ids are mere positions."""
    index = faiss.downcast_index(index)
    if hasattr(index, "id_map"):  # IndexIDMap / IndexIDMap2
        return [int(i) for i in faiss.vector_to_array(index.id_map)], faiss.downcast_index(index.index), False
    return list(range(index.ntotal)), index, True


def _reconstruct(faiss, index, count: int) -> np.ndarray:
    try:
        ivf = faiss.extract_index_ivf(index)
    except (RuntimeError, TypeError):
        ivf = None
    if ivf is not None:
        ivf.make_direct_map()
    try:
        return np.asarray(index.reconstruct_n(0, count), dtype=np.float32)
    except RuntimeError as exc:
        raise ImportFileError(f"the index cannot give its vectors back ({str(exc).strip().splitlines()[0]})") \
            from None
