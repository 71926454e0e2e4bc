"""The composition root: builds every service of a process from the settings, in one place.

The Flask app (`create_app`) and the CLI commands both get their pool, Redis
client, flag store, router and backends from here, so they cannot drift apart.
Nothing connects at import; `Runtime(...)` opens a pool that connects in the
background and a Redis client that connects on first use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import psycopg
import redis
from apscheduler.schedulers.base import BaseScheduler
from prometheus_client import CollectorRegistry

from flags import FlagStore, ReplicatedHash, Replicator
from flags.audit import FlagAudit
from flags.restore import FlagRestore
from rollout import schema
from rollout.alerts import AlertEventStore, AlertService, RollbackActions
from rollout.analytics.figures import Figures
from rollout.analytics.querylog import QueryLogWriter, QueryText
from rollout.backends import VersionBackend
from rollout.breaker import (
    BreakerPolicy,
    BreakerStorage,
    CircuitBreakers,
    ReplicatedBreakerStorage,
    SlowCallPolicy,
    SlowCallWindow,
)
from rollout.breaker.listeners import BreakerMetrics
from rollout.config import VERSIONS, Settings
from rollout.configured import (
    alert_policy,
    backfill_options,
    criteria_limits,
    judge_setup,
    rollout_plan,
    rollout_thresholds,
)
from rollout.controller.collector import EvidenceCollector
from rollout.controller.leader import LEADER_KEY
from rollout.controller.notifier import Notifier
from rollout.controller.planfile import FilePlan, read_plan
from rollout.controller.process import ControllerTimings
from rollout.controller.readings import MetricReader
from rollout.controller.service import RolloutService
from rollout.controller.sources import SourceContext
from rollout.controller.store import RolloutStore
from rollout.database import open_pool
from rollout.deadline import QueryDeadline
from rollout.embedders import Embedder, build_embedder
from rollout.embedding_cache import QueryEmbeddingCache
from rollout.errors import RolloutError
from rollout.gateway import RagGateway
from rollout.maintenance import Maintenance
from rollout.merging import Merger, NearDuplicates
from rollout.metrics import Metrics
from rollout.migration.backfill import BackfillOptions
from rollout.migration.coverage import CoverageMonitor
from rollout.migration.estimate import price_per_mtok
from rollout.migration.writer import DocumentWriter
from rollout.relevance.calibration import Calibration
from rollout.relevance.evidence import RelevanceCollector
from rollout.relevance.golden import EvalStore, GoldenGauge
from rollout.relevance.judges import build_judge
from rollout.relevance.judging import Budget, PairwiseJudging, shadow_listener
from rollout.relevance.probes import KnownItemProbes, ProbeMetrics
from rollout.relevance.versions import baseline_and_candidate
from rollout.routing import Roles, Router
from rollout.services import service_urls
from rollout.shadow import ShadowPool
from rollout.version_spec import VersionSettings
from rollout.versions import VersionError, all_versions, roles_of, serving

log = logging.getLogger(__name__)


def redis_client(url: str, timeout_s: float = 2.0) -> redis.Redis:
    """Short timeouts: a slow Redis must never hold a request or a rollback for long."""
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=timeout_s,
                                socket_connect_timeout=min(timeout_s, 1.0), retry_on_timeout=False)


class Runtime:
    """Every service of one process. Each part may be passed in (a test's, a benchmark's); the
    defaults are production's, built from the settings."""

    def __init__(self, settings: Settings, database_url: str, redis_url: str, *,
                 metrics_registry: CollectorRegistry | None = None, pool_size: int | None = None,
                 redis: redis.Redis | None = None, flags: FlagStore | None = None,
                 embedders: Mapping[str, Embedder] | None = None,
                 backends: Mapping[str, VersionBackend] | None = None,
                 breaker_storage: BreakerStorage | None = None):
        self.settings = settings
        self.thresholds = rollout_thresholds(settings)  # the gates' numbers, for readings outside the controller
        self.database_url = database_url
        self.redis_url = redis_url
        self.metrics = Metrics(metrics_registry)
        self.metrics.add_versions(VERSIONS)
        self.redis = redis if redis is not None else redis_client(redis_url)  # connects on first use
        self.flags = flags if flags is not None else FlagStore(ReplicatedHash(self.redis, self.key("flags")),
                                                               settings.flag_env)  # a bad FF_* default stops here
        self.flag_replica = self.flags.replica
        self.flags.add_listener(self.metrics.flags_seen)
        self.embedders = dict(embedders) if embedders is not None else {
            v: build_embedder(settings.version(v), settings, purpose="query") for v in VERSIONS}
        self.replicator = Replicator(self.redis, [self.flag_replica],
                                     check_interval_s=settings.flags_check_interval_s,
                                     name=f"replicator-{settings.redis_key_prefix}")
        self.replicator.on_tick(self.refresh_gauges)

        self.pool = open_pool(database_url, settings, max_size=pool_size)
        try:
            self.flag_audit = FlagAudit(self.pool)
            self.flags.add_audit_sink(self.flag_audit.recording)
            self.flag_restore = FlagRestore(self.flags, self.flag_audit, lambda: self.replicator.healthy)
            self.replicator.on_tick(self.flag_restore.tick)
            self.backends = dict(backends) if backends is not None else {
                v: VersionBackend(settings.version(v), self.embedders[v], self.pool) for v in VERSIONS}
            # until the registry is read (start/sync): the schema's first two versions
            self.router = Router(self.flags, settings.routing_group, Roles(*VERSIONS),
                                 holdback=settings.rollout_holdback_percent)
            self.metrics.set_roles(*self.router.roles)

            # Breaker writes happen on the request path (a candidate's failure) and on alerts: their own client
            # with a shorter timeout, past which the change is applied locally and written back later.
            self.breaker_redis = redis_client(redis_url, settings.breaker_redis_timeout_ms / 1000)
            if breaker_storage is None:
                breaker_replica = ReplicatedHash(self.redis, self.key("breaker"), write_client=self.breaker_redis)
                self.replicator.watch(breaker_replica)
                breaker_storage = ReplicatedBreakerStorage(breaker_replica, VERSIONS)
            self.breakers = CircuitBreakers(
                breaker_storage,
                BreakerPolicy(settings.breaker_fail_max, settings.breaker_reset_timeout_s,
                              settings.breaker_probe_lease_s),
                redis_up=lambda: self.replicator.healthy, listeners=[BreakerMetrics(self.metrics)],
                slow_calls=SlowCallWindow(SlowCallPolicy(
                    settings.breaker_slow_call_duration_ms, settings.breaker_slow_call_rate,
                    settings.breaker_slow_call_window, settings.breaker_slow_call_min_calls)))
            self.router.add_guard(self.breakers)
            self.router.remember_rollbacks(self.breakers)
            self.alert_events = AlertEventStore(self.pool)
            self.rollback = RollbackActions(self.breakers, self.flags, self.alert_events)
            self.alerts = AlertService(self.breakers, self.flags, self.alert_events, self.rollback,
                                       alert_policy(settings), self.metrics,
                                       redis_up=lambda: self.replicator.healthy,
                                       outage_poll_s=settings.alert_outage_poll_s)
            self.replicator.on_tick(self.breakers.tick)  # write back local state before alerts replay
            self.replicator.on_tick(self.alerts.tick)

            # migration: query embedding cache, the candidate's coverage guard, dual-write of documents
            self.embedding_cache = (QueryEmbeddingCache.connect(
                redis_url, settings.redis_key_prefix, self.metrics, timeout_ms=settings.embedding_cache_timeout_ms,
                ttl_s=settings.embedding_cache_ttl_s, max_entries=settings.embedding_cache_max_entries,
                cooldown_s=settings.embedding_cache_cooldown_s) if settings.embedding_cache_enabled else None)
            for backend in self.backends.values():
                backend.query_cache = self.embedding_cache
            self.coverage = CoverageMonitor(self.pool, {v: settings.version(v) for v in VERSIONS}, self.metrics,
                                            guarded=self.router.roles.candidate,
                                            min_percent=settings.v2_min_coverage_percent,
                                            interval_s=settings.coverage_refresh_s)
            self.router.add_guard(self.coverage)
            self.coverage.before_count.append(self.refresh_versions)
            self.document_writer = DocumentWriter(self.pool, self.document_embedder)

            self.shadow_pool = ShadowPool(settings.shadow_max_concurrency)
            self.deadline = (QueryDeadline(settings.query_deadline_ms, settings.hedge_delay_ms)
                             if settings.query_deadline_ms else None)
            duplicates = NearDuplicates(self.pool, lambda name: self.backends[name].settings.table)
            merger = Merger(duplicates,
                            threshold=settings.merge_duplicate_similarity,
                            min_per_version=settings.merge_min_per_version, rrf_k=settings.merge_rrf_k)
            self.gateway = RagGateway(self.router, self.backends, self.metrics, self.flags, health=self.breakers,
                                      shadow_pool=self.shadow_pool, shadow_sample_rate=settings.shadow_sample_rate,
                                      deadline=self.deadline,
                                      merger=merger, query_text=QueryText(settings.query_log_store_text,
                                                                          settings.query_log_hash_key))
            self.query_log = QueryLogWriter(self.pool, self.flags, self.metrics,
                                            queue_size=settings.query_log_queue_size,
                                            batch_size=settings.query_log_batch_size,
                                            flush_interval_s=settings.query_log_flush_interval_s)
            self.gateway.record_listeners.append(self.query_log.record)
            self.judging = self._judging()
            self.calibration = Calibration(self.pool, lambda: self.router.roles.baseline,
                                           window_s=settings.relevance_calibration_window_s,
                                           min_samples=settings.relevance_calibration_min_samples,
                                           tables=lambda: duplicates.tables(baseline_and_candidate(self.router.roles)))
            if settings.relevance_calibration:
                self.gateway.threshold_for = self.calibration.threshold_for
                merger.threshold_for = self.calibration.duplicate_threshold_for
                self.replicator.on_tick(lambda: self.calibration.refresh_if_due(wait=False))
            self.golden = GoldenGauge(EvalStore(self.pool), self.metrics.relevance_golden_ndcg,
                                      lambda: baseline_and_candidate(self.router.roles))
            self.replicator.on_tick(self.golden.refresh_if_due)
            self.figures = Figures(self.pool, criteria_limits(settings), roles=lambda: self.router.roles,
                                   price_per_mtok=self.price_per_mtok,
                                   calibration=self.calibration if settings.relevance_calibration else None,
                                   timeout_ms=settings.monitoring_query_timeout_ms)

            # staged rollout: one service for the status, people's commands and the controller's evaluations
            rollout_store = RolloutStore(self.pool)
            self.stages = RolloutService(
                rollout_plan(settings), rollout_store,
                EvidenceCollector(self.pool, self.breakers, self.coverage,
                                  max_samples=settings.rollout_evidence_max_samples,
                                  statement_timeout_ms=settings.monitoring_query_timeout_ms, flags=self.flags,
                                  roles=lambda: self.router.roles, holdback=settings.rollout_holdback_percent),
                self.flags,
                Notifier(settings.rollout_notify_url, token=settings.rollout_notify_token,
                         timeout_s=settings.rollout_notify_timeout_s, attempts=settings.rollout_notify_attempts,
                         on_result=rollout_store.set_notification),
                self.redis, self.key(LEADER_KEY), start_condition=self._start_condition(),
                relevance=(self._relevance_evidence
                           if settings.rollout_quality_gate == "relevance" else None))
            if settings.rollout_plan_file:
                self.follow_plan(read_plan(settings.rollout_plan_file, rollout_plan(settings)))
        except BaseException:
            self.pool.close()
            raise

    def follow_plan(self, plan: FilePlan) -> None:
        """Judge by a plan file: its stages and thresholds, its gates, its metric sources (built, not connected)."""
        context = SourceContext(self.database_url, self.pool, self.settings.monitoring_query_timeout_ms)
        reader = MetricReader.build(plan.metric_gates, dict(plan.sources), context)
        self.stages.use_plan(plan, plan.gates, reader.read if plan.metric_gates else None)

    def _judging(self) -> PairwiseJudging | None:
        """The pairwise judge of shadow disagreements (RELEVANCE_JUDGE), fed by the gateway."""
        judge = build_judge(judge_setup(self.settings))
        if judge is None:
            return None
        s = self.settings
        judging = PairwiseJudging(self.pool, judge, Budget(s.relevance_judge_daily_tokens, s.relevance_judge_daily_usd,
                                                           s.relevance_judge_usd_per_1k_tokens), self.metrics,
                                  sample_rate=s.relevance_judge_sample_rate, max_rbo=s.relevance_judge_max_rbo)
        self.gateway.pair_listeners.append(shadow_listener(judging, lambda: baseline_and_candidate(self.router.roles)))
        return judging

    def _start_condition(self) -> Callable[[str, str], str | None] | None:
        """ROLLOUT_REQUIRE_EVAL: the first stage needs a passing `rollout eval` of the pair it starts."""
        if not self.settings.rollout_require_eval:
            return None
        return EvalStore(self.pool).start_refusal

    def _relevance_evidence(self, *args, **kwargs):
        """The relevance gate's evidence for the rollout's pair as the registry names it now."""
        return RelevanceCollector(self.pool, *baseline_and_candidate(self.router.roles)).collect(*args, **kwargs)

    def key(self, name: str) -> str:
        """A Redis key in this deployment's namespace (REDIS_KEY_PREFIX)."""
        return f"{self.settings.redis_key_prefix}:{name}"

    def refresh_versions(self, conn: psycopg.Connection) -> None:
        """Take a snapshot of the version registry (off the request path: the coverage thread).

        Each change is one attribute write (roles, backends), so a request sees the old or the
        new snapshot whole. Every version embeds as its registry row says: one registered since,
        or whose row differs from the backend serving it (the first two start on the V1_*/V2_*
        settings that seeded their rows, until this first read), gets its query embedder and
        backend here.
        """
        registered = serving(all_versions(conn))
        roles = roles_of(registered)
        if roles is None:
            return
        current = self.backends
        stale = [v for v in registered if v.name not in current or current[v.name].settings != v.settings]
        if stale or {v.name for v in registered} != set(current):
            backends = {}
            try:
                for version in registered:
                    backend = current.get(version.name)
                    if backend is None or backend.settings != version.settings:
                        backend = VersionBackend(version.settings,
                                                 build_embedder(version.settings, self.settings, purpose="query"),
                                                 self.pool)
                        backend.query_cache = self.embedding_cache
                    backends[version.name] = backend
            except RolloutError as exc:  # e.g. a provider key missing here: keep serving the last snapshot
                log.error("version registry: %s; keeping the versions served so far", exc)
                return
            self.metrics.add_versions(name for name in backends if name not in current)
            self.embedders = {name: backend.embedder for name, backend in backends.items()}
            self.backends = backends
            self.gateway.backends = backends
            self.coverage.versions = {name: backend.settings for name, backend in backends.items()}
        if roles != self.router.roles:
            self.breakers.shared.follow(tuple(name for name in roles if name is not None))
            self.router.roles = roles
            self.metrics.set_roles(*roles)
            self.coverage.guarded = roles.candidate

    def version(self, name: str | None = None) -> VersionSettings:
        """A served version's set-up by name (None: the rollout's candidate), from the registry's snapshot."""
        name = name or self.router.roles.candidate or self.router.roles.baseline
        backend = self.backends.get(name)
        if backend is None:
            raise VersionError(f"no version named {name} is served; known: {', '.join(self.backends)} "
                               "(`rollout versions list`)")
        return backend.settings

    def document_embedder(self, setup: VersionSettings) -> Embedder:
        """The embedder a backfill and the document writer use: document purpose (long timeouts, many attempts)."""
        return build_embedder(setup, self.settings, purpose="document")

    def backfill_options(self, **changes) -> BackfillOptions:
        """The configured backfill options (see `backfill_options`)."""
        return backfill_options(self.settings, **changes)

    @property
    def controller_timings(self) -> ControllerTimings:
        """A controller process's schedule (ROLLOUT_LEADER_TTL_S, RELEVANCE_PROBE_INTERVAL_S)."""
        return ControllerTimings(leader_ttl_s=self.settings.rollout_leader_ttl_s,
                                 probe_interval_s=self.settings.relevance_probe_interval_s)

    def query_log_retention(self, scheduler: BaseScheduler) -> Maintenance:
        """The query_log retention job of a controller process, on the controller's `scheduler`."""
        return Maintenance(self.settings, self.database_url, scheduler=scheduler)

    def known_item_probes(self, registry: CollectorRegistry) -> KnownItemProbes:
        """The known-item probes a controller runs as the leader (RELEVANCE_PROBES_PER_CATEGORY, RELEVANCE_PROBE_K),
        their metrics in the controller's `registry`."""
        return KnownItemProbes(self.pool, self.backends, ProbeMetrics(registry),
                               per_category=self.settings.relevance_probes_per_category,
                               k=self.settings.relevance_probe_k)

    def price_per_mtok(self, name: str) -> float | None:
        """USD per million embedding tokens of a served version's model; None when no price is known."""
        backend = self.backends.get(name)
        return None if backend is None else price_per_mtok(backend.settings, self.settings.embedding_prices)

    def start(self) -> Runtime:
        """Load the replicated state once, then keep it current from a background thread."""
        self.replicator.sync_now()
        self.replicator.start()
        self.query_log.start()
        if self.judging is not None:
            self.judging.start()
        self.coverage.start()
        self.refresh_gauges()
        return self

    def sync(self) -> bool:
        """Load the replicated state once, without a thread (short-lived CLI commands)."""
        self.coverage.refresh()
        return self.replicator.sync_now()

    def refresh_gauges(self) -> None:
        age = self.replicator.snapshot_age_s()
        if age is not None:
            self.metrics.flags_snapshot_age.set(age)
        self.metrics.flags_redis_up.set(1 if self.replicator.healthy else 0)

    def close(self) -> None:
        self.replicator.stop()
        if self.deadline is not None:
            self.deadline.shutdown()
        self.shadow_pool.shutdown()  # shadows in flight finish and hand their rows to the writer
        self.query_log.close()
        if self.judging is not None:
            self.judging.close()
        self.stages.notifier.close()  # before the pool: delivery results are written to rollout_decisions
        self.coverage.stop()
        if self.embedding_cache is not None:
            self.embedding_cache.close()
        self.pool.close()
        self.breaker_redis.close()
        self.redis.close()


@contextmanager
def command_runtime(settings: Settings, *, replicate: bool = False) -> Iterator[Runtime]:
    """For a CLI command: services (embedded if the URLs are unset), then a Runtime, closed on exit.

    Never sets a folder up (that is `rollout demo`, `serve` and `db upgrade`), and a
    database without the schema is a one-line error before anything reads a table.
    """
    with service_urls(settings, create=False) as urls:
        with psycopg.connect(urls.database_url, connect_timeout=5) as conn:
            schema.check(conn, settings)
        runtime = Runtime(settings, urls.database_url, urls.redis_url, pool_size=4)
        try:
            runtime.start() if replicate else runtime.sync()
            yield runtime
        finally:
            runtime.close()
