"""Embedders per version, chosen by `V1_EMBEDDER` / `V2_EMBEDDER` (local, openai, google)."""

from __future__ import annotations

from rollout.config import Settings, VersionSettings
from rollout.embedders.base import (
    Embedder,
    EmbeddingAuthError,
    EmbeddingDimensionError,
    EmbeddingError,
    EmbeddingRejected,
)
from rollout.embedders.lexical import LexicalEmbedder
from rollout.errors import ConfigError

__all__ = [
    "Embedder", "EmbeddingAuthError", "EmbeddingDimensionError", "EmbeddingError",
    "EmbeddingRejected", "LexicalEmbedder", "build_embedder",
]


def build_embedder(version: VersionSettings, settings: Settings, purpose: str = "document") -> Embedder:
    """The embedder a version is configured for; no network is touched here.

    `purpose="query"` is for the request path: a short timeout and few attempts, so
    a failing provider turns into a V1 fallback in seconds, not minutes.
    """
    if version.embedder == "local":
        return LexicalEmbedder(version.dimensions, version.model)
    for_query = purpose == "query"
    common = dict(model=version.model, dimensions=version.dimensions,
                  timeout_s=settings.query_embedding_timeout_s if for_query else settings.embedding_timeout_s,
                  max_attempts=(settings.query_embedding_max_attempts if for_query
                                else settings.embedding_max_attempts),
                  batch_size=settings.embedding_batch_size)
    prefix = version.version.upper()
    if version.embedder == "openai":
        if not settings.openai_api_key:
            raise ConfigError(f"{prefix}_EMBEDDER=openai needs OPENAI_API_KEY")
        from rollout.embedders.openai import OpenAIEmbedder
        return OpenAIEmbedder(api_key=settings.openai_api_key, base_url=settings.openai_base_url, **common)
    if version.embedder == "google":
        if not settings.google_api_key:
            raise ConfigError(f"{prefix}_EMBEDDER=google needs GOOGLE_API_KEY")
        from rollout.embedders.google import GoogleEmbedder
        return GoogleEmbedder(api_key=settings.google_api_key, base_url=settings.google_base_url,
                              task_type="RETRIEVAL_QUERY" if for_query else "RETRIEVAL_DOCUMENT", **common)
    raise ConfigError(f"{prefix}_EMBEDDER: unknown embedder {version.embedder!r}")
