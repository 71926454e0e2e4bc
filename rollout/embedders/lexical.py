"""The offline default: a deterministic *lexical* embedder (feature hashing), not a semantic model.

Texts become signed, hashed counts of their words and character 3- and 4-grams,
L2-normalised. Two texts are close when they share words and spellings, not
meaning: good enough to exercise routing, search, backfill and comparison without
a network or model files, and honest about it in its name (`local-lexical-*`).

A whole batch is hashed at once with numpy over the texts' UTF-8 bytes, so the
backfill is bound by the database, not by this embedder. The version name is the
hash seed, so the baseline and the candidate give different (but correlated) rankings, as two real
models would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import mmh3
import numpy as np

from rollout.embedders.base import Embedder, estimate_tokens, normalise_rows

if TYPE_CHECKING:
    from rollout.config import Settings
    from rollout.version_spec import VersionSettings

_MIX = np.uint64(0x9E3779B97F4A7C15)  # golden-ratio multiplier (Fibonacci hashing)
_PRIME = np.uint64(0x100000001B3)  # FNV-64 prime, to combine bytes
_SEPARATOR = 0  # byte between texts: n-grams never span two texts

WORD_WEIGHT = 1.0
NGRAM_WEIGHT = 0.35
NGRAM_SIZES = (3, 4)
STOPWORDS = frozenset(
    "a an and are as at be by can do does for from has have how i if in is it its me my no not "
    "of on or our so that the their there this to was we what when where which who why will "
    "with you your".split())


def _mix(values: np.ndarray, seed: np.uint64) -> np.ndarray:
    """A 64-bit finaliser (xor-shift-multiply) that spreads low-entropy inputs."""
    h = values ^ seed
    h = h * _MIX
    h ^= h >> np.uint64(29)
    h = h * _MIX
    h ^= h >> np.uint64(32)
    return h


class LexicalEmbedder(Embedder):
    """Hashed word + character n-gram features; deterministic across processes and hosts."""

    provider = "local"

    def __init__(self, dimensions: int, model: str = "local-lexical"):
        super().__init__()
        self.dimensions = dimensions
        self.model = model
        self._seed = np.uint64(mmh3.hash(model, signed=False))
        self._stopword_hashes = np.array([], dtype=np.uint64)
        self._stopword_hashes = self._word_hashes(sorted(STOPWORDS))

    def _word_hashes(self, words: list[str]) -> np.ndarray:
        """Hashes of single words, computed by the same path as in `embed`."""
        hashes = []
        for word in words:
            data = np.frombuffer(word.encode("utf-8"), dtype=np.uint8)
            parts = _mix(data.astype(np.uint64) * _PRIME + np.arange(data.size, dtype=np.uint64), self._seed)
            hashes.append(_mix(np.add.reduce(parts, dtype=np.uint64, keepdims=True), self._seed + np.uint64(7))[0])
        return np.array(hashes, dtype=np.uint64)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        count = len(texts)
        if count == 0:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        encoded = [t.lower().encode("utf-8") for t in texts]
        data = np.frombuffer(bytes([_SEPARATOR]).join(encoded), dtype=np.uint8)
        lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=count)
        text_of = np.repeat(np.arange(count), lengths + 1)[: data.size]

        sums = np.zeros(count * self.dimensions, dtype=np.float64)
        in_word = self._add_words(data, text_of, sums)
        self._add_ngrams(data, in_word, text_of, sums)
        vectors = sums.reshape(count, self.dimensions)
        empty = ~vectors.any(axis=1)
        vectors[empty] = self._empty_vector  # no features: a fixed vector, never a zero one
        self.usage.record(texts=count, tokens=estimate_tokens(texts))  # estimated: nothing to pay, but comparable
        return normalise_rows(vectors)

    @property
    def _empty_vector(self) -> np.ndarray:
        vector = np.zeros(self.dimensions)
        vector[int(self._seed % np.uint64(self.dimensions))] = 1.0
        return vector

    def _scatter(self, hashes: np.ndarray, owners: np.ndarray, weight: float, sums: np.ndarray) -> None:
        buckets = (hashes >> np.uint64(33)) % np.uint64(self.dimensions)
        signs = np.where(hashes & np.uint64(1), weight, -weight)
        flat = owners * self.dimensions + buckets.astype(np.int64)
        sums += np.bincount(flat, weights=signs, minlength=sums.size)

    def _add_words(self, data: np.ndarray, text_of: np.ndarray, sums: np.ndarray) -> np.ndarray:
        """Hash each word (a run of ASCII letters/digits or non-ASCII bytes) by a position-aware sum.

        Returns the mask of bytes inside kept (non-stopword) words, where n-grams are taken.
        """
        is_word = ((data >= 48) & (data <= 57)) | ((data >= 97) & (data <= 122)) | (data >= 128)
        if not is_word.any():
            return is_word
        starts = is_word & ~np.concatenate(([False], is_word[:-1]))
        word_id = np.cumsum(starts) - 1
        positions = np.flatnonzero(is_word)
        ids = word_id[positions]
        first = np.flatnonzero(starts)
        offset_in_word = positions - first[ids]
        parts = _mix(data[positions].astype(np.uint64) * _PRIME + offset_in_word.astype(np.uint64), self._seed)
        hashes = _mix(np.add.reduceat(parts, np.searchsorted(ids, np.arange(first.size))),
                      self._seed + np.uint64(7))
        keep = ~np.isin(hashes, self._stopword_hashes)
        self._scatter(hashes[keep], text_of[first][keep], WORD_WEIGHT, sums)
        in_kept_word = np.zeros_like(is_word)
        in_kept_word[positions] = keep[ids]
        return in_kept_word

    def _add_ngrams(self, data: np.ndarray, in_word: np.ndarray, text_of: np.ndarray,
                    sums: np.ndarray) -> None:
        """Character n-grams inside kept words (grams never cross a word or a text)."""
        wide = data.astype(np.uint64)
        for size in NGRAM_SIZES:
            if data.size < size:
                continue
            span = data.size - size + 1
            combined = wide[:span].copy()
            inside = in_word[:span].copy()
            for offset in range(1, size):
                combined = combined * _PRIME + wide[offset: offset + span]
                inside &= in_word[offset: offset + span]
            seed = self._seed + np.uint64(size)
            self._scatter(_mix(combined[inside] + np.uint64(size), seed), text_of[:span][inside],
                          NGRAM_WEIGHT, sums)


def build(version: VersionSettings, settings: Settings, for_query: bool) -> Embedder:
    """The `local` provider: any dimension, no network, no key."""
    return LexicalEmbedder(version.dimensions, version.model)
