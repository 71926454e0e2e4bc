"""Settings: the one place configuration enters, from the environment over `.env`.

Every variable is documented in `.env.example`. Values are read into a frozen,
validated `Settings`; nothing else in the code reads `os.environ` for its own
configuration (the FF_* flag defaults are read from the same mapping, and so are the
providers' credential variables, which the provider registry declares).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rollout.embedders.registry import PROVIDERS, ProviderAccount, provider
from rollout.errors import ConfigError
from rollout.stages import DEFAULT_STAGES, RollbackTarget, parse_stages
from rollout.version_spec import VersionSettings

VERSIONS = ("v1", "v2")


def read_environment(env_file: str | os.PathLike | None = ".env") -> dict[str, str]:
    """Process environment over the `.env` file (the environment wins, as with docker/systemd)."""
    values: dict[str, str] = {}
    if env_file and Path(env_file).is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ)
    return values


def _unset_if_blank(value):
    return None if isinstance(value, str) and not value.strip() else value


def accounts_from(environ: Mapping[str, str]) -> dict[str, ProviderAccount]:
    """Each registered provider's credentials, read from exactly the variables its entry declares;
    a blank value is unset, as for the other settings."""
    def read(variable: str | None) -> str | None:
        return _unset_if_blank(environ.get(variable)) if variable else None
    return {p.name: ProviderAccount(api_key=read(p.key_variable), base_url=read(p.url_variable))
            for p in PROVIDERS.values() if p.variables}


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
    v1_embedder: str = Field("local", alias="V1_EMBEDDER")
    v1_model: str | None = Field(None, alias="V1_MODEL")
    v1_dimensions: int = Field(1536, alias="V1_DIMENSIONS", ge=1, le=16000)
    v2_embedder: str = Field("local", alias="V2_EMBEDDER")
    v2_model: str | None = Field(None, alias="V2_MODEL")
    v2_dimensions: int = Field(768, alias="V2_DIMENSIONS", ge=1, le=16000)
    embedding_timeout_s: float = Field(10.0, alias="EMBEDDING_TIMEOUT_S", gt=0)
    embedding_max_attempts: int = Field(5, alias="EMBEDDING_MAX_ATTEMPTS", ge=1, le=20)
    embedding_batch_size: int = Field(100, alias="EMBEDDING_BATCH_SIZE", ge=1, le=2048)
    query_embedding_timeout_s: float = Field(2.0, alias="QUERY_EMBEDDING_TIMEOUT_S", gt=0)
    query_embedding_max_attempts: int = Field(2, alias="QUERY_EMBEDDING_MAX_ATTEMPTS", ge=1, le=5)

    # search
    search_timeout_ms: int = Field(2000, alias="RAG_SEARCH_TIMEOUT_MS", ge=10)
    query_deadline_ms: int = Field(800, alias="RAG_QUERY_DEADLINE_MS", ge=0, le=60000)
    hedge_delay_ms: int = Field(400, alias="RAG_HEDGE_DELAY_MS", ge=0, le=60000)
    hnsw_ef_search: int = Field(200, alias="HNSW_EF_SEARCH", ge=1, le=1000)
    db_pool_min_size: int = Field(1, alias="DB_POOL_MIN_SIZE", ge=0)
    db_pool_max_size: int = Field(8, alias="DB_POOL_MAX_SIZE", ge=1)

    # comparison: shadow queries, merged mode, query analytics, success criteria
    shadow_sample_rate: float = Field(1.0, alias="SHADOW_SAMPLE_RATE", ge=0, le=1)
    shadow_max_concurrency: int = Field(4, alias="SHADOW_MAX_CONCURRENCY", ge=1, le=64)
    merge_min_per_version: int = Field(3, alias="MERGE_MIN_PER_VERSION", ge=0, le=25)
    merge_duplicate_similarity: float = Field(0.85, alias="MERGE_DUPLICATE_SIMILARITY", gt=0, le=1)
    merge_rrf_k: int = Field(60, alias="MERGE_RRF_K", ge=1, le=1000)
    query_log_store_text: bool = Field(False, alias="QUERY_LOG_STORE_TEXT")
    query_log_hash_key: str | None = Field(None, alias="QUERY_LOG_HASH_KEY")
    query_log_queue_size: int = Field(10000, alias="QUERY_LOG_QUEUE_SIZE", ge=1, le=1_000_000)
    query_log_batch_size: int = Field(500, alias="QUERY_LOG_BATCH_SIZE", ge=1, le=50_000)
    query_log_flush_interval_s: float = Field(1.0, alias="QUERY_LOG_FLUSH_INTERVAL_S", gt=0, le=60)
    query_log_retention_days: float = Field(30.0, alias="QUERY_LOG_RETENTION_DAYS", gt=0)
    query_log_retention_interval_s: float = Field(3600.0, alias="QUERY_LOG_RETENTION_INTERVAL_S", ge=1)
    monitoring_query_timeout_ms: int = Field(15000, alias="MONITORING_QUERY_TIMEOUT_MS", ge=100)
    criteria_min_cache_hit_rate: float = Field(0.7, alias="CRITERIA_MIN_CACHE_HIT_RATE", ge=0, le=1)
    criteria_min_samples: int = Field(100, alias="CRITERIA_MIN_SAMPLES", ge=1)

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

    # circuit breaker and alert webhooks
    breaker_fail_max: int = Field(5, alias="BREAKER_FAIL_MAX", ge=1, le=1000)
    breaker_reset_timeout_s: float = Field(30.0, alias="BREAKER_RESET_TIMEOUT_S", gt=0)
    breaker_probe_lease_s: float = Field(10.0, alias="BREAKER_PROBE_LEASE_S", gt=0)
    breaker_redis_timeout_ms: int = Field(250, alias="BREAKER_REDIS_TIMEOUT_MS", ge=1, le=10000)
    breaker_slow_call_duration_ms: int = Field(400, alias="BREAKER_SLOW_CALL_DURATION_MS", ge=1, le=60000)
    breaker_slow_call_rate: float = Field(0.5, alias="BREAKER_SLOW_CALL_RATE", gt=0, le=1)
    breaker_slow_call_window: int = Field(20, alias="BREAKER_SLOW_CALL_WINDOW", ge=1, le=10000)
    breaker_slow_call_min_calls: int = Field(10, alias="BREAKER_SLOW_CALL_MIN_CALLS", ge=1, le=10000)
    alert_trip_severities: str = Field("critical", alias="ALERT_TRIP_SEVERITIES")
    alert_trip_label: str = Field("rollout_action=rollback", alias="ALERT_TRIP_LABEL")
    alert_set_percentage_zero: bool = Field(True, alias="ALERT_SET_PERCENTAGE_ZERO")
    alert_on_resolve: Literal["rearm", "auto"] = Field("rearm", alias="ALERT_ON_RESOLVE")
    alert_restore_percentage: bool = Field(True, alias="ALERT_RESTORE_PERCENTAGE")
    alert_hmac_signature_header: str = Field("X-Grafana-Alerting-Signature", alias="ALERT_HMAC_SIGNATURE_HEADER",
                                             min_length=1)
    alert_hmac_timestamp_header: str = Field("X-Grafana-Alerting-Timestamp", alias="ALERT_HMAC_TIMESTAMP_HEADER",
                                             min_length=1)
    alert_hmac_max_age_s: float = Field(300.0, alias="ALERT_HMAC_MAX_AGE_S", gt=0)
    alert_outage_poll_s: float = Field(2.0, alias="ALERT_OUTAGE_POLL_S", gt=0)

    # server
    host: str = Field("127.0.0.1", alias="ROLLOUT_HOST")
    port: int = Field(8000, alias="ROLLOUT_PORT", ge=1, le=65535)
    web_concurrency: int = Field(2, alias="WEB_CONCURRENCY", ge=1, le=64)
    gunicorn_timeout_s: int = Field(30, alias="GUNICORN_TIMEOUT", ge=1)
    metrics_dir: Path | None = Field(None, alias="PROMETHEUS_MULTIPROC_DIR")

    # staged rollout: the plan and the thresholds of its gates (see README, "how V2 is judged")
    rollout_stages: tuple[float, ...] = Field(DEFAULT_STAGES, alias="ROLLOUT_STAGES")
    rollout_min_stage_s: float = Field(72 * 3600, alias="ROLLOUT_MIN_STAGE_S", ge=0)
    rollout_min_samples: int = Field(8000, alias="ROLLOUT_MIN_SAMPLES", ge=20)
    rollout_min_samples_to_roll_back: int = Field(250, alias="ROLLOUT_MIN_SAMPLES_TO_ROLL_BACK", ge=20)
    rollout_evaluation_interval_s: float = Field(300, alias="ROLLOUT_EVALUATION_INTERVAL_S", gt=0)
    rollout_rollback_to: RollbackTarget = Field("zero", alias="ROLLOUT_ROLLBACK_TO")
    rollout_complete_after_s: float = Field(48 * 3600, alias="ROLLOUT_COMPLETE_AFTER_S", ge=0)
    rollout_latency_margin: float = Field(0.10, alias="ROLLOUT_LATENCY_MARGIN", ge=0, le=1)
    rollout_max_p95_ms: float = Field(800, alias="ROLLOUT_MAX_P95_MS", gt=0)
    rollout_min_similarity: float = Field(0.7, alias="ROLLOUT_MIN_SIMILARITY", ge=-1, le=1)
    rollout_min_shadow_overlap: float = Field(0.5, alias="ROLLOUT_MIN_SHADOW_OVERLAP", ge=0, le=1)
    rollout_min_shadow_samples: int = Field(200, alias="ROLLOUT_MIN_SHADOW_SAMPLES", ge=20)
    rollout_max_error_rate: float = Field(0.001, alias="ROLLOUT_MAX_ERROR_RATE", gt=0, lt=1)
    rollout_max_critical_errors: int = Field(0, alias="ROLLOUT_MAX_CRITICAL_ERRORS", ge=0)
    rollout_critical_window_s: float = Field(24 * 3600, alias="ROLLOUT_CRITICAL_WINDOW_S", gt=0)
    rollout_rollback_alpha: float = Field(0.01, alias="ROLLOUT_ROLLBACK_ALPHA", gt=0, lt=0.5)
    rollout_advance_confidence: float = Field(0.95, alias="ROLLOUT_ADVANCE_CONFIDENCE", ge=0.5, lt=1)
    rollout_srm_alpha: float = Field(0.001, alias="ROLLOUT_SRM_ALPHA", gt=0, lt=0.5)
    rollout_traffic_grace_s: float = Field(1800, alias="ROLLOUT_TRAFFIC_GRACE_S", ge=0)
    rollout_max_crossover_share: float = Field(0.01, alias="ROLLOUT_MAX_CROSSOVER_SHARE", ge=0, le=1)
    rollout_plan_file: str | None = Field(None, alias="ROLLOUT_PLAN_FILE")  # a plan file (README: plan files)
    rollout_max_lost_row_share: float = Field(0.01, alias="ROLLOUT_MAX_LOST_ROW_SHARE", ge=0, le=1)
    rollout_holdback_percent: float = Field(0, alias="ROLLOUT_HOLDBACK_PERCENT", ge=0, le=50)

    # relevance evidence (see README, "relevance evidence")
    rollout_quality_gate: Literal["relevance", "similarity"] = Field("relevance", alias="ROLLOUT_QUALITY_GATE")
    rollout_require_eval: bool = Field(False, alias="ROLLOUT_REQUIRE_EVAL")
    relevance_margin: float = Field(0.05, alias="RELEVANCE_MARGIN", gt=0, lt=0.5)
    relevance_probe_interval_s: float = Field(3600, alias="RELEVANCE_PROBE_INTERVAL_S", ge=0)
    relevance_probes_per_category: int = Field(5, alias="RELEVANCE_PROBES_PER_CATEGORY", ge=1, le=1000)
    relevance_probe_k: int = Field(10, alias="RELEVANCE_PROBE_K", ge=1, le=50)
    relevance_calibration: bool = Field(True, alias="RELEVANCE_CALIBRATION")
    relevance_calibration_window_s: float = Field(7 * 86400, alias="RELEVANCE_CALIBRATION_WINDOW_S", gt=0)
    relevance_calibration_min_samples: int = Field(200, alias="RELEVANCE_CALIBRATION_MIN_SAMPLES", ge=20)
    relevance_judge: str = Field("none", alias="RELEVANCE_JUDGE")  # none, or a JUDGES name (checked when built)
    relevance_judge_model: str | None = Field(None, alias="RELEVANCE_JUDGE_MODEL")
    relevance_judge_sample_rate: float = Field(0.1, alias="RELEVANCE_JUDGE_SAMPLE_RATE", ge=0, le=1)
    relevance_judge_max_rbo: float = Field(0.7, alias="RELEVANCE_JUDGE_MAX_RBO", gt=0, le=1)
    relevance_judge_daily_tokens: int = Field(1_200_000, alias="RELEVANCE_JUDGE_DAILY_TOKENS", ge=0)
    relevance_judge_daily_usd: float = Field(1.0, alias="RELEVANCE_JUDGE_DAILY_USD", ge=0)
    relevance_judge_usd_per_1k_tokens: float = Field(0.00015, alias="RELEVANCE_JUDGE_USD_PER_1K_TOKENS", ge=0)
    relevance_judge_timeout_s: float = Field(10.0, alias="RELEVANCE_JUDGE_TIMEOUT_S", gt=0, le=120)

    # staged rollout: the controller process, its evidence and its notifications
    rollout_evidence_max_samples: int = Field(100_000, alias="ROLLOUT_EVIDENCE_MAX_SAMPLES", ge=1000, le=5_000_000)
    rollout_leader_ttl_s: float = Field(30.0, alias="ROLLOUT_LEADER_TTL_S", ge=1, le=3600)
    rollout_notify_url: str | None = Field(None, alias="ROLLOUT_NOTIFY_URL", pattern=r"^https?://")
    rollout_notify_token: str | None = Field(None, alias="ROLLOUT_NOTIFY_TOKEN")
    rollout_notify_timeout_s: float = Field(5.0, alias="ROLLOUT_NOTIFY_TIMEOUT_S", gt=0, le=60)
    rollout_notify_attempts: int = Field(3, alias="ROLLOUT_NOTIFY_ATTEMPTS", ge=1, le=10)
    rollout_controller_metrics_port: int | None = Field(None, alias="ROLLOUT_CONTROLLER_METRICS_PORT",
                                                        ge=1, le=65535)

    # the operator console at /console
    console: bool = Field(True, alias="ROLLOUT_CONSOLE")
    console_refresh_s: float = Field(5.0, alias="ROLLOUT_CONSOLE_REFRESH_S", ge=1, le=300)
    console_session_s: float = Field(8 * 3600.0, alias="ROLLOUT_CONSOLE_SESSION_S", ge=60, le=7 * 86400)

    # the FF_* flag defaults, kept raw: the flags package parses and validates them
    flag_env: dict[str, str] = Field(default_factory=dict)
    # each provider's credentials, from the variables its registry entry names (OPENAI_API_KEY, ...)
    accounts: dict[str, ProviderAccount] = Field(default_factory=dict)

    @field_validator("database_url", "redis_url", "admin_token", "alert_webhook_secret",
                     "v1_model", "v2_model", "query_log_hash_key", "rollout_notify_url", "rollout_notify_token",
                     "rollout_controller_metrics_port", "relevance_judge_model", mode="before")
    @classmethod
    def _blank_is_unset(cls, value):
        return _unset_if_blank(value)

    @field_validator("v1_embedder", "v2_embedder")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        if value not in PROVIDERS:
            raise ValueError(f"unknown embedding provider {value!r}; expected one of {', '.join(PROVIDERS)}")
        return value

    @field_validator("rollout_stages", mode="before")
    @classmethod
    def _stages(cls, value):
        return parse_stages(value)

    @model_validator(mode="after")
    def _rollback_samples_within_minimum(self):
        if self.rollout_min_samples_to_roll_back > self.rollout_min_samples:
            raise ValueError("ROLLOUT_MIN_SAMPLES_TO_ROLL_BACK must not exceed ROLLOUT_MIN_SAMPLES")
        if self.rollout_evidence_max_samples < self.rollout_min_samples:
            raise ValueError("ROLLOUT_EVIDENCE_MAX_SAMPLES must be at least ROLLOUT_MIN_SAMPLES (a sample smaller "
                             "than the minimum would never let latency be judged)")
        return self

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
        data["accounts"] = accounts_from(environ)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                ": ".join(filter(None, ('.'.join(str(p) for p in err['loc']), err['msg']))) for err in exc.errors()
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

    @property
    def trip_severities(self) -> frozenset[str]:
        return frozenset(s.strip().lower() for s in self.alert_trip_severities.split(",") if s.strip())

    @property
    def trip_label(self) -> tuple[str, str] | None:
        """ALERT_TRIP_LABEL as (name, value); None when unset."""
        name, _, value = self.alert_trip_label.partition("=")
        return (name.strip(), value.strip()) if name.strip() else None

    def account(self, provider_name: str) -> ProviderAccount:
        """The credentials of provider `provider_name`; an empty account when none are set."""
        return self.accounts.get(provider_name) or ProviderAccount()

    def version(self, name: str) -> VersionSettings:
        """The embedding set-up of `v1` or `v2`."""
        if name not in VERSIONS:
            raise ConfigError(f"unknown version {name!r}; expected one of {', '.join(VERSIONS)}")
        embedder = getattr(self, f"{name}_embedder")
        return VersionSettings(
            version=name,
            embedder=embedder,
            model=getattr(self, f"{name}_model") or provider(embedder).model_for(name),
            dimensions=getattr(self, f"{name}_dimensions"),
            table=f"doc_embeddings_{name}",
        )
