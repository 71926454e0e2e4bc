"""The parts' values as the settings configure them: one function per part, read by the composition root.

The domain takes plain values (thresholds, a plan, backfill options, an alert policy, a judge's
set-up, the dashboard's limits); these functions are the one place that reads them from `Settings`,
so a domain module never imports `rollout.config` and a test builds the same values by hand.
"""

from __future__ import annotations

from dataclasses import replace

from rollout.alerts import AlertPolicy
from rollout.analytics.figures import CriteriaLimits
from rollout.config import Settings
from rollout.controller.plan import RolloutPlan
from rollout.controller.thresholds import Thresholds
from rollout.embedders.registry import ProviderAccount
from rollout.migration.backfill import BackfillOptions
from rollout.relevance.judges import JudgeSetup, judge_provider


def rollout_thresholds(settings: Settings) -> Thresholds:
    """The gates' thresholds the settings describe (ROLLOUT_MIN_SAMPLES, ROLLOUT_ROLLBACK_ALPHA, ...)."""
    return Thresholds(
        min_samples=settings.rollout_min_samples,
        min_samples_to_roll_back=settings.rollout_min_samples_to_roll_back,
        latency_margin=settings.rollout_latency_margin,
        max_p95_s=settings.rollout_max_p95_ms / 1000,
        min_similarity=settings.rollout_min_similarity,
        min_shadow_overlap=settings.rollout_min_shadow_overlap,
        min_shadow_samples=settings.rollout_min_shadow_samples,
        max_error_rate=settings.rollout_max_error_rate,
        max_critical_errors=settings.rollout_max_critical_errors,
        rollback_alpha=settings.rollout_rollback_alpha,
        advance_confidence=settings.rollout_advance_confidence,
        srm_alpha=settings.rollout_srm_alpha,
        max_crossover_share=settings.rollout_max_crossover_share,
        max_lost_row_share=settings.rollout_max_lost_row_share,
        relevance_margin=settings.relevance_margin,
        relevance_sources=relevance_sources(settings),
    )


def relevance_sources(settings: Settings) -> tuple[str, ...]:
    """The relevance sources this deployment can ever hear from, known before any data: the judge when one
    is set and samples, probes when scheduled, feedback always (the API accepts it), the golden set when
    ROLLOUT_REQUIRE_EVAL makes an eval part of the rollout. Only these share the relevance gate's alpha."""
    configured = {"judge": settings.relevance_judge != "none" and settings.relevance_judge_sample_rate > 0,
                  "feedback": True,
                  "probes": settings.relevance_probe_interval_s > 0,
                  "golden": settings.rollout_require_eval}
    return tuple(source for source, on in configured.items() if on)


def rollout_plan(settings: Settings) -> RolloutPlan:
    """The plan the settings describe (ROLLOUT_STAGES, ROLLOUT_MIN_STAGE_S, ... and the gates' thresholds)."""
    return RolloutPlan(stages=settings.rollout_stages, min_stage_s=settings.rollout_min_stage_s,
                       evaluation_interval_s=settings.rollout_evaluation_interval_s,
                       rollback_to=settings.rollout_rollback_to, complete_after_s=settings.rollout_complete_after_s,
                       critical_window_s=settings.rollout_critical_window_s,
                       traffic_grace_s=settings.rollout_traffic_grace_s,
                       thresholds=rollout_thresholds(settings))


def backfill_options(settings: Settings, **changes) -> BackfillOptions:
    """MIGRATION_* overridden by `changes` that are not None (the CLI's options), with the idle timeout the
    document embedder needs (EMBEDDING_BATCH_SIZE, EMBEDDING_MAX_ATTEMPTS, EMBEDDING_TIMEOUT_S)."""
    options = replace(BackfillOptions(batch_size=settings.migration_batch_size, workers=settings.migration_workers,
                                      rebuild_share=settings.migration_index_rebuild_share,
                                      maintenance_work_mem=settings.migration_maintenance_work_mem,
                                      maintenance_workers=settings.migration_maintenance_workers),
                      **{k: v for k, v in changes.items() if v is not None})
    return options.for_embedder(settings.embedding_batch_size, settings.embedding_max_attempts,
                                settings.embedding_timeout_s)


def alert_policy(settings: Settings) -> AlertPolicy:
    """Which alerts trip the breakers and what a trip and its release do (ALERT_TRIP_*, ALERT_*)."""
    return AlertPolicy(settings.trip_severities, settings.trip_label, settings.alert_set_percentage_zero,
                       settings.alert_on_resolve == "auto", settings.alert_restore_percentage)


def judge_setup(settings: Settings, judge: str | None = None) -> JudgeSetup:
    """What the pairwise judge is built from: RELEVANCE_JUDGE (or `judge`), its model, timeout and credentials."""
    name = judge or settings.relevance_judge
    provider = judge_provider(name)
    return JudgeSetup(judge=name, model=settings.relevance_judge_model, timeout_s=settings.relevance_judge_timeout_s,
                      account=settings.account(provider) if provider else ProviderAccount())


def criteria_limits(settings: Settings) -> CriteriaLimits:
    """The dashboard's success criteria: the controller's thresholds and CRITERIA_*."""
    thresholds = rollout_thresholds(settings)
    return CriteriaLimits(max_p95_ms=thresholds.max_p95_s * 1000, min_similarity=thresholds.min_similarity,
                          max_critical_errors=thresholds.max_critical_errors,
                          max_error_rate=thresholds.max_error_rate, min_samples=settings.criteria_min_samples,
                          min_cache_hit_rate=settings.criteria_min_cache_hit_rate)
