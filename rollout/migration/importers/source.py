"""What every importer reads a store into: records with their original id, text, metadata and vector."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rollout.errors import RolloutError


class ImportFileError(RolloutError):
    """A store that cannot be read as the format says; the message names the file and the problem."""

    exit_code = 2


@dataclass
class SourceRecord:
    original_id: str | None   # the store's own id of the record, if it has one
    content: str
    title: str | None = None
    category: str | None = None
    metadata: dict = field(default_factory=dict)
    vector: np.ndarray | None = None
    scope: str | None = None  # a Chroma collection, a Vespa document type, a Weaviate class: part of the id
    positional: bool = False  # original_id is only a position (a FAISS index without ids): not the record's id


@dataclass
class SourceScan:
    format: str
    path: Path
    records: list[SourceRecord]
    files: dict[str, int] = field(default_factory=dict)   # file name -> bytes read
    notes: list[str] = field(default_factory=list)        # collections, index types, what was left out


def file_sizes(*paths: Path, base: Path | None = None) -> dict[str, int]:
    """Bytes of each file, by its path under `base` (or its name)."""
    return {str(p.relative_to(base)) if base else p.name: p.stat().st_size for p in paths if p.is_file()}


def as_vector(values) -> np.ndarray | None:
    """A float32 row, or None for anything that is not a flat list of numbers."""
    try:
        vector = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        return None
    return vector if vector.ndim == 1 and vector.size > 0 else None


class SafeUnpickler(pickle.Unpickler):
    """Unpickles data, never code: only plain containers, dates and numpy values may be rebuilt.

    A pickle can name any callable to run while loading, so a store from elsewhere
    must not be loaded with plain `pickle.load`.
    """

    ALLOWED = {
        ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"), ("builtins", "bytearray"),
        ("builtins", "slice"), ("collections", "OrderedDict"), ("collections", "defaultdict"),
        ("datetime", "datetime"), ("datetime", "date"), ("datetime", "time"), ("datetime", "timedelta"),
        ("datetime", "timezone"), ("numpy", "dtype"), ("numpy", "ndarray"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only data may be unpickled)")


def load_pickle(path: Path):
    try:
        with open(path, "rb") as handle:
            return SafeUnpickler(handle).load()
    except FileNotFoundError:
        raise ImportFileError(f"{path}: missing") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as exc:
        raise ImportFileError(f"{path}: not a readable pickle ({exc})") from None
