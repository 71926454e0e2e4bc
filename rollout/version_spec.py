"""What one embedding version is: its name, provider, model, dimension and table.

A domain value: backends, the migration and the registry of versions (`rollout.versions`) take
it as an argument. `rollout.config` builds the first two (`Settings.version`) from V1_*/V2_*;
the registry builds every other from its rows (`EmbeddingVersion.settings`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class VersionSettings(BaseModel):
    """How one corpus version embeds: provider, model and dimension."""

    model_config = ConfigDict(frozen=True)

    version: str
    embedder: str  # a provider of rollout.embedders.registry
    model: str
    dimensions: int
    table: str
    vector_type: Literal["vector", "halfvec"] = "vector"
