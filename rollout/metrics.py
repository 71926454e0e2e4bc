"""Prometheus metrics. Every RAG metric carries `version` so dashboards set the baseline beside the candidate.

Under gunicorn the metrics live in `PROMETHEUS_MULTIPROC_DIR` (one file set per
worker) and `/metrics` merges them per scrape with a MultiProcessCollector built
for that scrape. Elsewhere (tests, one process) each app has its own registry,
passed in, so tests never see each other's counts.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from flags import GRADUAL_MIGRATION, V2_PERCENTAGE, FlagSnapshot

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.8, 1.2, 2.0, 5.0)
SIMILARITY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)
OVERLAP_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


ERROR_KINDS = ("embedding", "timeout", "database")


class FolderInUse(RuntimeError):
    """Another gateway's master holds the multiprocess folder."""


class MetricsFolder:
    """One gateway's `PROMETHEUS_MULTIPROC_DIR`, held by its gunicorn master for its whole life.

    A master wipes the folder when it starts (a dead worker's files would count
    forever), so two gateways sharing one would wipe each other's counts: the
    master takes an exclusive lock on `gateway.lock` first and refuses to start
    while another process holds it. The lock goes when the master's process ends.
    """

    LOCK = "gateway.lock"

    def __init__(self, path: Path):
        self.path = Path(path)
        self._handle = None

    def holder(self) -> int | None:
        """The pid of the gateway holding the folder, or None if it is free."""
        lock = self.path / self.LOCK
        if not lock.exists():
            return None
        with open(lock, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                text = handle.read().strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(handle, fcntl.LOCK_UN)
        return None

    def claim(self) -> None:
        """Lock the folder for this process and wipe what an earlier gateway left; FolderInUse if held."""
        self.path.mkdir(parents=True, exist_ok=True)
        handle = open(self.path / self.LOCK, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "?"
            handle.close()
            raise FolderInUse(self.in_use_message(pid)) from None
        for entry in self.path.iterdir():
            if entry.name != self.LOCK and entry.is_file():
                entry.unlink()
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle

    def in_use_message(self, pid) -> str:
        return (f"the metrics folder {self.path} is in use by another gateway (pid {pid}); starting here would "
                "wipe its metrics: give this gateway its own PROMETHEUS_MULTIPROC_DIR")


class Metrics:
    """All metric objects of one process, registered on `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry

        # serving
        self.requests = Counter("rag_requests", "RAG queries answered, by version that served and outcome.",
                                ["version", "outcome"], registry=r)
        self.request_duration = Histogram("rag_request_duration_seconds",
                                          "Time to answer a RAG query, by version that served.",
                                          ["version"], buckets=LATENCY_BUCKETS, registry=r)
        self.stage_duration = Histogram("rag_stage_duration_seconds",
                                        "Time of one stage (embed, search) of a version's answer.",
                                        ["version", "stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.top_similarity = Histogram("rag_top_similarity", "Cosine similarity of the best result.",
                                        ["version"], buckets=SIMILARITY_BUCKETS, registry=r)
        self.routing_decisions = Counter("rag_routing_decisions", "Routing decisions by version and reason.",
                                         ["version", "reason"], registry=r)
        self.fallbacks = Counter("rag_fallbacks", "Candidate-routed queries answered by the baseline instead, by "
                                 "cause.", ["reason"], registry=r)
        self.anonymous_requests = Counter("rag_anonymous_requests",
                                          "Queries with no user or session id (bucketed at random).",
                                          registry=r)
        self.hedged_requests = Counter("rag_hedged_requests", "Candidate-routed queries still searching at the "
                                                              "hedge delay, by candidate and who answered "
                                                              "(candidate, or baseline at the deadline).",
                                       ["version", "outcome"], registry=r)
        self.version_errors = Counter("rag_version_errors", "Failures of a version's search, by kind.",
                                      ["version", "kind"], registry=r)

        # flags
        self._roles_set: set[tuple[str, str]] = set()
        # livemax: a dead worker's series go with it (gunicorn's child_exit), so a pair no live worker
        # holds any more is not reported as a role by the alert rules' join
        self.version_role = Gauge("rollout_version_role", "1 for the rollout's baseline and candidate, by version "
                                  "name and role (the dashboard's $baseline and $candidate, the alert rules' "
                                  "candidate).", ["version", "role"], multiprocess_mode="livemax", registry=r)
        self.rollout_percentage = Gauge("rollout_percentage", "FF_NEW_EMBEDDINGS_PERCENTAGE as each worker sees it.",
                                        multiprocess_mode="mostrecent", registry=r)
        self.migration_enabled = Gauge("rollout_migration_enabled", "FF_ENABLE_GRADUAL_MIGRATION (1 on, 0 off).",
                                       multiprocess_mode="mostrecent", registry=r)
        self.flags_snapshot_age = Gauge("flags_snapshot_age_seconds",
                                        "Seconds since Redis last confirmed the local flag snapshot (worst worker).",
                                        multiprocess_mode="max", registry=r)
        self.flags_redis_up = Gauge("flags_redis_up", "1 when every worker reaches Redis, else 0.",
                                    multiprocess_mode="min", registry=r)

        # comparison: shadow queries, merged mode, query analytics
        self.shadow_duration = Histogram("rag_shadow_duration_seconds",
                                         "Time of a shadow search (the version that did not answer).",
                                         ["version"], buckets=LATENCY_BUCKETS, registry=r)
        self.shadow_top_similarity = Histogram("rag_shadow_top_similarity",
                                               "Cosine similarity of a shadow search's best result.",
                                               ["version"], buckets=SIMILARITY_BUCKETS, registry=r)
        self.shadow_overlap = Histogram("rag_shadow_overlap",
                                        "Agreement of the served list with the shadow list, by serving version and "
                                        "measure (jaccard: overlap@k of IDs; rbo: rank-biased overlap).",
                                        ["version", "measure"], buckets=OVERLAP_BUCKETS, registry=r)
        self.shadow_comparisons = Counter("rag_shadow_comparisons", "Shadow pairs compared, by serving version.",
                                          ["version"], registry=r)
        self.shadow_top1_agreement = Counter("rag_shadow_top1_agreement",
                                             "Compared shadow pairs whose first result is the same document.",
                                             ["version"], registry=r)
        self.shadow_failures = Counter("rag_shadow_failures", "Shadow searches that failed, by shadow version "
                                                              "and kind (never seen by the client).",
                                       ["version", "kind"], registry=r)
        self.shadow_skipped = Counter("rag_shadow_skipped", "Shadow searches not run: sampled_out, saturated or "
                                                            "held_off (a guard holds the candidate off).",
                                      ["version", "reason"], registry=r)
        self.shadow_fallback_served = Counter("rag_shadow_fallback_served",
                                              "Candidate failures answered by the baseline's shadow already in flight.",
                                              ["version"], registry=r)
        self.merged_requests = Counter("rag_merged_requests", "Merged-mode queries, by the versions that answered.",
                                       ["version"], registry=r)
        self.query_log_rows = Counter("rollout_query_log_rows", "query_log rows by outcome: written, dropped "
                                                                "(queue full) or failed (database error).",
                                      ["outcome"], registry=r)
        self.merged_requests.labels("both")
        for kind in (*ERROR_KINDS, "deadline"):  # zero series, so error panels show 0, not "no data"
            self.fallbacks.labels(kind)
        for outcome in ("written", "dropped", "failed"):
            self.query_log_rows.labels(outcome)

        # circuit breakers, alerts, rollbacks
        self.breaker_state = Gauge("circuit_breaker_state",
                                   "Circuit breaker state per version: 0 closed, 1 half-open, 2 open (worst worker).",
                                   ["version"], multiprocess_mode="max", registry=r)
        self.breaker_failures = Gauge("circuit_breaker_failures",
                                      "Consecutive failures counted by the shared breaker of a version.",
                                      ["version"], multiprocess_mode="max", registry=r)
        self.breaker_local_only = Gauge("circuit_breaker_local_only",
                                        "1 while a worker holds breaker state Redis has not seen (Redis down).",
                                        multiprocess_mode="max", registry=r)
        self.alerts_received = Counter("alerts_received", "Alerts received by the webhook, per alert.",
                                       ["source", "severity", "status"], registry=r)
        self.alert_repeats = Counter("alerts_repeats", "Alert notifications that repeated one already applied.",
                                     ["source"], registry=r)
        self.alerts_deferred = Counter("alerts_deferred",
                                       "Tripping alerts applied on one worker only (Redis unreachable), stored "
                                       "for replay.", registry=r)
        self.rollbacks = Counter("rollout_rollbacks", "Times the candidate's traffic was taken away, by trigger "
                                 "(alert, failures, manual).", ["trigger"], registry=r)

        # migration and the query embedding cache
        self.migration_coverage = Gauge(
            "rag_migration_coverage_ratio",
            "Share of documents embedded by the version's current model, per category (__all__: the corpus).",
            ["version", "category"], multiprocess_mode="mostrecent", registry=r)
        self.embedding_cache_hits = Counter("rag_embedding_cache_hits", "Query embeddings served from Redis.",
                                            ["version"], registry=r)
        self.embedding_cache_misses = Counter("rag_embedding_cache_misses",
                                              "Query embeddings computed (not cached, or the cache unavailable).",
                                              ["version"], registry=r)
        self.embedding_cache_errors = Counter("rag_embedding_cache_errors",
                                              "Cache reads or writes that failed (Redis down or slow).",
                                              ["version"], registry=r)

        # relevance evidence (rollout.relevance): by version name and source
        self.relevance_signals = Counter(
            "rag_relevance_signals", "Relevance evidence, by version, source (feedback, probe, judge) and outcome "
            "(positive/negative, hit/miss, win/loss/tie).", ["version", "source", "outcome"], registry=r)
        self.relevance_judge_calls = Counter(
            "rag_relevance_judge_calls", "Pairwise judge calls by judge and outcome (judged, cached, error, "
            "over_budget, sampled_out).", ["judge", "outcome"], registry=r)
        self.relevance_judge_tokens = Counter("rag_relevance_judge_tokens", "Tokens the pairwise judge spent.",
                                              ["judge"], registry=r)
        self.relevance_judge_cost = Counter("rag_relevance_judge_cost_usd", "Money the pairwise judge spent.",
                                            ["judge"], registry=r)
        self.relevance_abstentions = Counter(
            "rag_relevance_abstentions", "Answered queries that returned no result (nothing over the client's "
            "min_similarity, mapped to the version's scale), by the version that served.", ["version"], registry=r)
        self.relevance_golden_ndcg = Gauge(
            "rag_relevance_golden_ndcg", "nDCG@10 of the latest `rollout eval` of the rollout's pair, by version.",
            ["version"], multiprocess_mode="mostrecent", registry=r)

    def set_roles(self, baseline: str, candidate: str | None) -> None:
        """Which version is the baseline and which the candidate. A former pair's series drop to 0 rather
        than go away: in multiprocess mode a removed series would keep its last value in the worker's file
        (a dead worker's file goes when gunicorn marks it dead)."""
        wanted = {(baseline, "baseline")} | ({(candidate, "candidate")} if candidate is not None else set())
        for labels in self._roles_set - wanted:
            self.version_role.labels(*labels).set(0)
        for labels in wanted:
            self.version_role.labels(*labels).set(1)
        self._roles_set = wanted

    def flags_seen(self, snapshot: FlagSnapshot) -> None:
        """A flag store's listener: the rollout's percentage and master switch as gauges."""
        self.rollout_percentage.set(snapshot[V2_PERCENTAGE])
        self.migration_enabled.set(1 if snapshot[GRADUAL_MIGRATION] else 0)

    def add_versions(self, versions: Iterable[str]) -> None:
        """Zero series of each version (by its registry name), so panels show 0, not "no data"."""
        for version in versions:
            for kind in ("embedding", "timeout", "database", "internal"):
                self.shadow_failures.labels(version, kind)
            for reason in ("sampled_out", "saturated", "held_off"):
                self.shadow_skipped.labels(version, reason)
            self.shadow_comparisons.labels(version)
            self.shadow_top1_agreement.labels(version)
            self.shadow_fallback_served.labels(version)
            self.merged_requests.labels(version)
            for outcome in ("candidate", "baseline"):
                self.hedged_requests.labels(version, outcome)
            for kind in ERROR_KINDS:
                self.version_errors.labels(version, kind)
            self.relevance_abstentions.labels(version)
            for source, outcomes in (("judge", ("win", "loss", "tie")), ("feedback", ("positive", "negative"))):
                for outcome in outcomes:
                    self.relevance_signals.labels(version, source, outcome)

    def render(self) -> bytes:
        """The text exposition: merged across workers in multiprocess mode."""
        if multiprocess_mode():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
