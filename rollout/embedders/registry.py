"""Embedding providers: one module each, one entry in `PROVIDERS`.

A provider module offers `build(version, settings, for_query) -> Embedder`. Its SDK is
imported only when a version uses it (the cloud SDKs are slow to import), so this table
stays cheap to read for `Settings` and `rollout versions add --provider`. Adding a
provider is a new module under `rollout/embedders/` and one line here.

An entry also names its credential variables (`key_variable`, `url_variable`): `Settings`
reads exactly those into one `ProviderAccount` per provider (`settings.account(name)`), so a
new provider's key needs no new settings field. `.env.example` documents them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rollout.errors import ConfigError

if TYPE_CHECKING:
    from rollout.config import Settings
    from rollout.embedders.base import Embedder
    from rollout.version_spec import VersionSettings


@dataclass(frozen=True)
class ProviderAccount:
    """A provider's credentials as configured: its API key and base URL (None when unset)."""

    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None


@dataclass(frozen=True)
class Provider:
    name: str
    module: str
    default_model: str  # "{version}" stands for the version's name
    key_variable: str | None = None  # the environment variable holding its API key, when it needs one
    url_variable: str | None = None  # the environment variable overriding its base URL, when it has one

    @property
    def variables(self) -> tuple[str, ...]:
        """The credential variables this provider reads (none for a local one)."""
        return tuple(v for v in (self.key_variable, self.url_variable) if v)

    def model_for(self, version: str) -> str:
        return self.default_model.format(version=version)

    def build(self, version: VersionSettings, settings: Settings, purpose: str = "document") -> Embedder:
        module = importlib.import_module(self.module)
        return module.build(version, settings, for_query=purpose == "query")


PROVIDERS: dict[str, Provider] = {p.name: p for p in (
    Provider("local", "rollout.embedders.lexical", "local-lexical-{version}"),
    Provider("openai", "rollout.embedders.openai", "text-embedding-3-small", "OPENAI_API_KEY", "OPENAI_BASE_URL"),
    Provider("google", "rollout.embedders.google", "gemini-embedding-001", "GOOGLE_API_KEY", "GOOGLE_BASE_URL"),
)}


def credential_variables() -> frozenset[str]:
    """Every credential variable the registered providers read."""
    return frozenset(v for p in PROVIDERS.values() for v in p.variables)


def provider(name: str) -> Provider:
    """The provider called `name`; a ConfigError listing the known ones otherwise."""
    try:
        return PROVIDERS[name]
    except KeyError:
        raise ConfigError(f"unknown embedding provider {name!r}; expected one of {', '.join(PROVIDERS)}") from None
