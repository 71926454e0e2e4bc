"""Settings: the one place configuration enters, from the environment over `.env`.

Every variable is documented in `.env.example`. Values are read into a frozen,
validated `Settings`; nothing else in the code reads `os.environ` for its own
configuration (the FF_* flag defaults are read from the same mapping).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rollout.errors import ConfigError

VERSIONS = ("v1", "v2")
EmbedderKind = Literal["local", "openai", "google"]


def read_environment(env_file: str | os.PathLike | None = ".env") -> dict[str, str]:
    """Process environment over the `.env` file (the environment wins, as with docker/systemd)."""
    values: dict[str, str] = {}
    if env_file and Path(env_file).is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ)
    return values


class VersionSettings(BaseModel):
    """How one corpus version embeds: provider, model and dimension."""

    model_config = ConfigDict(frozen=True)

    version: str
    embedder: EmbedderKind
    model: str
    dimensions: int
    table: str


class Settings(BaseModel):
    """Validated configuration. Field aliases are the environment variable names."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    # services (unset = embedded PostgreSQL+pgvector / Redis under data_dir)
    database_url: str | None = Field(None, alias="DATABASE_URL")
    redis_url: str | None = Field(None, alias="REDIS_URL")
    data_dir: Path = Field(Path(".rollout"), alias="ROLLOUT_DATA_DIR")
    redis_key_prefix: str = Field("rollout", alias="REDIS_KEY_PREFIX", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    environment: Literal["production", "development"] = Field("production", alias="ROLLOUT_ENV")

    # secrets
    admin_token: str | None = Field(None, alias="ROLLOUT_ADMIN_TOKEN")
    alert_webhook_secret: str | None = Field(None, alias="ALERT_WEBHOOK_SECRET")

    # embedders, per version
    v1_embedder: EmbedderKind = Field("local", alias="V1_EMBEDDER")
    v1_model: str | None = Field(None, alias="V1_MODEL")
    v1_dimensions: int = Field(1536, alias="V1_DIMENSIONS", ge=1, le=16000)
    v2_embedder: EmbedderKind = Field("local", alias="V2_EMBEDDER")
    v2_model: str | None = Field(None, alias="V2_MODEL")
    v2_dimensions: int = Field(768, alias="V2_DIMENSIONS", ge=1, le=16000)
    openai_api_key: str | None = Field(None, alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(None, alias="OPENAI_BASE_URL")
    google_api_key: str | None = Field(None, alias="GOOGLE_API_KEY")
    google_base_url: str | None = Field(None, alias="GOOGLE_BASE_URL")
    embedding_timeout_s: float = Field(10.0, alias="EMBEDDING_TIMEOUT_S", gt=0)
    embedding_max_attempts: int = Field(5, alias="EMBEDDING_MAX_ATTEMPTS", ge=1, le=20)
    embedding_batch_size: int = Field(100, alias="EMBEDDING_BATCH_SIZE", ge=1, le=2048)
    query_embedding_timeout_s: float = Field(2.0, alias="QUERY_EMBEDDING_TIMEOUT_S", gt=0)
    query_embedding_max_attempts: int = Field(2, alias="QUERY_EMBEDDING_MAX_ATTEMPTS", ge=1, le=5)

    # search
    search_timeout_ms: int = Field(2000, alias="RAG_SEARCH_TIMEOUT_MS", ge=10)
    hnsw_ef_search: int = Field(100, alias="HNSW_EF_SEARCH", ge=1, le=1000)
    db_pool_min_size: int = Field(1, alias="DB_POOL_MIN_SIZE", ge=0)
    db_pool_max_size: int = Field(8, alias="DB_POOL_MAX_SIZE", ge=1)

    # migration: backfill, coverage guard, dual-write (`rollout migrate ...`)
    migration_batch_size: int = Field(500, alias="MIGRATION_BATCH_SIZE", ge=1, le=20000)
    migration_workers: int = Field(2, alias="MIGRATION_WORKERS", ge=1, le=64)
    migration_index_rebuild_share: float = Field(0.25, alias="MIGRATION_INDEX_REBUILD_SHARE", ge=0, le=1)
    migration_maintenance_work_mem: str = Field("1GB", alias="MIGRATION_MAINTENANCE_WORK_MEM",
                                                pattern=r"^[0-9]+ ?(kB|MB|GB|TB)?$")
    migration_maintenance_workers: int = Field(2, alias="MIGRATION_MAINTENANCE_WORKERS", ge=0, le=64)
    embedding_prices: dict[str, float] = Field(
        default_factory=lambda: {"text-embedding-3-small": 0.02, "gemini-embedding-001": 0.15},
        alias="EMBEDDING_PRICES_PER_MTOK")
    v2_min_coverage_percent: float = Field(100.0, alias="V2_MIN_COVERAGE_PERCENT", ge=0, le=100)
    coverage_refresh_s: float = Field(10.0, alias="COVERAGE_REFRESH_S", gt=0)

    # query embedding cache (Redis)
    embedding_cache_enabled: bool = Field(True, alias="EMBEDDING_CACHE")
    embedding_cache_ttl_s: int = Field(86400, alias="EMBEDDING_CACHE_TTL_S", ge=1)
    embedding_cache_max_entries: int = Field(50000, alias="EMBEDDING_CACHE_MAX_ENTRIES", ge=1)
    embedding_cache_timeout_ms: int = Field(50, alias="EMBEDDING_CACHE_TIMEOUT_MS", ge=1, le=10000)
    embedding_cache_cooldown_s: float = Field(5.0, alias="EMBEDDING_CACHE_COOLDOWN_S", ge=0)

    # flags and routing
    routing_group: str = Field("embeddings-v2", alias="ROUTING_GROUP", min_length=1)
    flags_check_interval_s: float = Field(5.0, alias="FLAGS_CHECK_INTERVAL_S", gt=0)

    # server
    host: str = Field("127.0.0.1", alias="ROLLOUT_HOST")
    port: int = Field(8000, alias="ROLLOUT_PORT", ge=1, le=65535)
    web_concurrency: int = Field(2, alias="WEB_CONCURRENCY", ge=1, le=64)
    gunicorn_timeout_s: int = Field(30, alias="GUNICORN_TIMEOUT", ge=1)
    metrics_dir: Path | None = Field(None, alias="PROMETHEUS_MULTIPROC_DIR")

    # the FF_* flag defaults, kept raw: the flags package parses and validates them
    flag_env: dict[str, str] = Field(default_factory=dict)

    @field_validator("database_url", "redis_url", "admin_token", "alert_webhook_secret",
                     "openai_api_key", "google_api_key", "openai_base_url", "google_base_url",
                     "v1_model", "v2_model", mode="before")
    @classmethod
    def _blank_is_unset(cls, value):
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("embedding_prices", mode="before")
    @classmethod
    def _price_list(cls, value):
        """`model=USD per 1M tokens` pairs, comma-separated."""
        if not isinstance(value, str):
            return value
        prices = {}
        for pair in filter(None, (p.strip() for p in value.split(","))):
            model, sep, price = pair.partition("=")
            if not sep or not model.strip():
                raise ValueError(f"expected model=price pairs, got {pair!r}")
            prices[model.strip()] = float(price)
        return prices

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        """Build from an environment-like mapping; raise ConfigError naming the bad variables."""
        names = {field.alias for field in cls.model_fields.values() if field.alias}
        data: dict[str, object] = {k: v for k, v in environ.items() if k in names}
        data["flag_env"] = {k: v for k, v in environ.items() if k.startswith("FF_")}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise ConfigError(f"invalid configuration: {problems}") from None

    @classmethod
    def load(cls, overrides: Mapping[str, str] | None = None, env_file: str | None = ".env") -> Settings:
        environ = read_environment(env_file)
        environ.update(overrides or {})
        return cls.from_environ(environ)

    def with_overrides(self, **changes) -> Settings:
        return self.model_copy(update=changes)

    @property
    def development(self) -> bool:
        return self.environment == "development"

    def version(self, name: str) -> VersionSettings:
        """The embedding set-up of `v1` or `v2`."""
        if name not in VERSIONS:
            raise ConfigError(f"unknown version {name!r}; expected one of {', '.join(VERSIONS)}")
        embedder = getattr(self, f"{name}_embedder")
        return VersionSettings(
            version=name,
            embedder=embedder,
            model=getattr(self, f"{name}_model") or default_model(embedder, name),
            dimensions=getattr(self, f"{name}_dimensions"),
            table=f"doc_embeddings_{name}",
        )


def default_model(embedder: str, version: str) -> str:
    """The model a provider uses when `V*_MODEL` is unset."""
    if embedder == "openai":
        return "text-embedding-3-small"
    if embedder == "google":
        return "gemini-embedding-001"
    return f"local-lexical-{version}"
