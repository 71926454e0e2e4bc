"""What every embedder offers: `embed(texts) -> float32 array[n, dimensions]`, L2-normalised.

The errors below are what callers branch on: the gateway falls back to the baseline on any
`EmbeddingError`; the backfill retries nothing itself (embedders already retried
429/5xx) and records an `EmbeddingRejected` document as failed and moves on.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rollout.errors import RolloutError


class EmbeddingError(RolloutError):
    """The provider could not embed (network, timeout, 5xx after retries, bad answer)."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class EmbeddingAuthError(EmbeddingError):
    """401/403: the API key is missing or wrong. Retrying cannot help."""


class EmbeddingRejected(EmbeddingError):
    """400/413/422: the provider refused this input (too long, empty, ...). Retrying cannot help."""


class EmbeddingDimensionError(EmbeddingError):
    """The provider answered with vectors of another dimension than configured."""


@dataclass
class UsageSnapshot:
    requests: int = 0
    texts: int = 0
    tokens: int = 0


class EmbeddingUsage:
    """Running totals of provider calls, texts and tokens (thread-safe).

    Each thread also keeps its own token total, so a caller can tell what one of its calls
    used while other threads embed at the same time (the gateway logs each query's tokens).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals = UsageSnapshot()
        self._thread = threading.local()

    def record(self, *, requests: int = 1, texts: int = 0, tokens: int = 0) -> None:
        with self._lock:
            self._totals.requests += requests
            self._totals.texts += texts
            self._totals.tokens += tokens
        self._thread.tokens = self.thread_tokens() + tokens

    def thread_tokens(self) -> int:
        """Tokens recorded by the calling thread so far."""
        return getattr(self._thread, "tokens", 0)

    def snapshot(self) -> UsageSnapshot:
        with self._lock:
            return UsageSnapshot(self._totals.requests, self._totals.texts, self._totals.tokens)


class Embedder(ABC):
    """A text embedding model at a fixed dimension."""

    provider: str
    model: str
    dimensions: int

    def __init__(self) -> None:
        self.usage = EmbeddingUsage()

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed `texts` in order; float32 array of shape (len(texts), dimensions), unit norm."""

    def describe(self) -> dict:
        return {"provider": self.provider, "model": self.model, "dimensions": self.dimensions}

    def check_shape(self, vectors: np.ndarray, count: int) -> np.ndarray:
        """Reject answers of the wrong size; every provider path ends here."""
        if vectors.ndim != 2 or vectors.shape[0] != count:
            raise EmbeddingError(f"{self.model}: expected {count} vectors, got shape {vectors.shape}")
        if vectors.shape[1] != self.dimensions:
            raise EmbeddingDimensionError(
                f"{self.model}: expected {self.dimensions} dimensions, got {vectors.shape[1]}")
        return vectors


class BatchedEmbedder(Embedder):
    """A remote model called with at most `batch_size` texts a request."""

    batch_size: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        parts = [self._embed_batch(texts[start:start + self.batch_size])
                 for start in range(0, len(texts), self.batch_size)]
        return np.concatenate(parts)

    @abstractmethod
    def _embed_batch(self, batch: list[str]) -> np.ndarray:
        """One provider call: unit vectors for `batch`, in order."""

    def vectors_from(self, rows: Sequence[Sequence[float]], count: int) -> np.ndarray:
        """The answer's rows as a checked, normalised float32 array (one row per input text)."""
        if len(rows) != count:
            raise EmbeddingError(f"{self.model}: answer does not hold one vector per input "
                                 f"({len(rows)} for {count})")
        try:
            vectors = np.array(rows, dtype=np.float32)
        except ValueError:
            raise EmbeddingError(f"{self.model}: vectors of mixed sizes in one answer") from None
        return normalise_rows(self.check_shape(vectors, count))


def estimate_tokens(texts: Sequence[str]) -> int:
    """About four characters a token, per text, rounded up: for models that report no count."""
    return sum(-(-len(text) // 4) for text in texts)


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    """Scale each row to unit length (zero rows stay zero); returns float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=norms > 0)
    return vectors
