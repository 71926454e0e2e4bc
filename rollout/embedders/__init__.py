"""Embedders per version, built by the version's provider (`rollout.embedders.registry`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rollout.embedders.base import (
    Embedder,
    EmbeddingAuthError,
    EmbeddingDimensionError,
    EmbeddingError,
    EmbeddingRejected,
)
from rollout.embedders.lexical import LexicalEmbedder
from rollout.embedders.registry import PROVIDERS, provider
from rollout.errors import ConfigError

if TYPE_CHECKING:  # config reads the provider table, so this package never imports config at load
    from rollout.config import Settings
    from rollout.version_spec import VersionSettings

__all__ = [
    "PROVIDERS", "Embedder", "EmbeddingAuthError", "EmbeddingDimensionError", "EmbeddingError",
    "EmbeddingRejected", "LexicalEmbedder", "build_embedder",
]


def build_embedder(version: VersionSettings, settings: Settings, purpose: str = "document") -> Embedder:
    """The embedder a version is configured for; no network is touched here.

    `purpose="query"` is for the request path: a short timeout and few attempts, so
    a failing provider turns into a baseline fallback in seconds, not minutes.
    """
    return provider(version.embedder).build(version, settings, purpose)


def call_options(version: VersionSettings, settings: Settings, for_query: bool) -> dict:
    """What every cloud provider's constructor takes: model, dimension, timeouts, attempts, batch."""
    return {"model": version.model, "dimensions": version.dimensions,
            "timeout_s": settings.query_embedding_timeout_s if for_query else settings.embedding_timeout_s,
            "max_attempts": (settings.query_embedding_max_attempts if for_query
                             else settings.embedding_max_attempts),
            "batch_size": settings.embedding_batch_size}


def api_key(version: VersionSettings, settings: Settings) -> str:
    """The provider's key from its account in the settings, or a ConfigError naming the variable to set."""
    key = settings.account(version.embedder).api_key
    if not key:
        variable = provider(version.embedder).key_variable or "an API key"
        raise ConfigError(f"version {version.version} uses {version.embedder}, which needs {variable}")
    return key
