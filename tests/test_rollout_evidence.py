"""The evidence collector: query_log rows written by the test, read back as the gates' Evidence."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from analytics_rows import NOW, insert, record
from helpers import load_and_embed, sample_documents

from rollout.alerts.payloads import Alert
from rollout.config import VERSIONS
from rollout.controller import RolloutPlan, judge
from rollout.controller.collector import EvidenceCollector
from rollout.documents import DocumentStore
from rollout.migration.backfill import backfill_for
from rollout.migration.coverage import CoverageMonitor

STAGE_START = NOW - timedelta(hours=1)
SINCE, UNTIL = STAGE_START.timestamp(), NOW.timestamp()
DAY = 24 * 3600.0


def at(minutes_after_start: float):
    return STAGE_START + timedelta(minutes=minutes_after_start)


def collector(runtime, max_samples: int = 100_000) -> EvidenceCollector:
    return EvidenceCollector(runtime.pool, runtime.breakers, runtime.coverage, max_samples=max_samples,
                             statement_timeout_ms=10_000, roles=lambda: runtime.router.roles)


def collect(runtime, percentage: float = 10.0, **kwargs):
    return collector(runtime, **kwargs).collect(percentage, SINCE, UNTIL, DAY)


def test_counts_per_routed_version_over_the_stage_window(runtime):
    rows = [
        # V2 routed: 3 answered (one a fallback answered by V1), 1 lost entirely
        record(logged_at=at(1), routed_version="v2", served_version="v2", latency_ms=20, top_similarity=0.9),
        record(logged_at=at(2), routed_version="v2", served_version="v2", latency_ms=30, top_similarity=0.8),
        record(logged_at=at(3), routed_version="v2", served_version="v1", fallback=True, fallback_reason="timeout",
               latency_ms=900, top_similarity=0.7),
        record(logged_at=at(4), routed_version="v2", served_version=None, error_kind="database", latency_ms=5,
               top_similarity=None, result_count=0),
        # V1 routed
        record(logged_at=at(5), routed_version="v1", served_version="v1", latency_ms=10, top_similarity=0.6),
        record(logged_at=at(6), routed_version="v1", served_version="v1", latency_ms=12, top_similarity=None,
               result_count=0),
        # not in the evidence: forced, merged, before the stage, after the evaluation
        record(logged_at=at(7), routed_version="v2", served_version="v2", reason="forced", latency_ms=5000),
        record(logged_at=at(8), mode="merged", routed_version="v2", served_version="merged", latency_ms=5000),
        record(logged_at=at(-10), routed_version="v2", served_version="v2", latency_ms=5000),
        record(logged_at=NOW + timedelta(seconds=5), routed_version="v2", served_version="v2", latency_ms=5000),
        # a V2 query lost before the stage began, within the critical window: a critical error, not a request
        record(logged_at=NOW - timedelta(hours=20), routed_version="v2", served_version=None, error_kind="timeout",
               top_similarity=None, result_count=0),
        record(logged_at=NOW - timedelta(hours=30), routed_version="v2", served_version=None, error_kind="timeout",
               top_similarity=None, result_count=0),
    ]
    insert(runtime.pool, rows)
    collected = collect(runtime)
    v1, v2 = collected.evidence.v1, collected.evidence.v2
    assert (v2.requests, v2.errors, v2.critical_errors) == (4, 2, 2)
    assert (v1.requests, v1.errors, v1.critical_errors) == (2, 0, 0)
    assert sorted(v2.latencies_s) == pytest.approx([0.02, 0.03, 0.9])  # the fallback's wait counts for V2
    assert sorted(v2.top_similarities) == pytest.approx([0.8, 0.9])    # V1's similarity after a fallback does not
    assert sorted(v1.latencies_s) == pytest.approx([0.01, 0.012]) and list(v1.top_similarities) == pytest.approx([0.6])
    evidence = collected.evidence
    assert (evidence.percentage, evidence.window_started_at, evidence.evaluated_at) == (10.0, SINCE, UNTIL)
    assert collected.summary["v2"] == {"requests": 4, "errors": 2, "critical_errors": 2, "answered": 3,
                                       "assigned_users": 4, "latency_samples": 3, "similarity_samples": 2,
                                       "sampled_share": 1.0}


def test_assignments_count_the_split_not_who_served(runtime):
    inside, outside = 999, 1000  # buckets just inside and outside a 10 % split
    rows = (
        # three V2 users (one of them with many requests), two V1 users
        [record(logged_at=at(1), routed_version="v2", user_hash="heavy", bucket=5) for _ in range(50)]
        + [record(logged_at=at(2), routed_version="v2", user_hash=f"v2-{n}", bucket=5) for n in range(2)]
        + [record(logged_at=at(3), routed_version="v1", user_hash=f"v1-{n}", bucket=4000) for n in range(2)]
        # a V2-bucketed user a guard sent to V1 is still a V2 assignment...
        + [record(logged_at=at(4), routed_version="v1", reason=reason, user_hash=f"guarded-{reason}", bucket=inside)
           for reason in ("breaker_open", "alert", "v2_incomplete")]
        # ...but a forced-V2 request a guard turned away (bucket outside the split) is no assignment
        + [record(logged_at=at(5), routed_version="v1", reason="breaker_open", user_hash="forced", bucket=outside)]
        # neither are forced requests, the master switch being off, or a failed decision
        + [record(logged_at=at(6), routed_version=v, reason=r, user_hash=f"other-{r}", bucket=5)
           for v, r in (("v2", "forced"), ("v1", "migration_disabled"), ("v1", "error"))]
        # rows without a user hash count one each
        + [record(logged_at=at(7), routed_version="v1", user_hash=None, bucket=5000) for _ in range(4)]
    )
    insert(runtime.pool, rows)
    evidence = collect(runtime).evidence
    assert evidence.v2.assignments == 3 + 3
    assert evidence.v1.assignments == 2 + 4
    assert evidence.v2.requests == 52 and evidence.v1.requests == 2 + 3 + 1 + 2 + 4


def test_samples_are_bounded_and_counts_stay_exact(runtime):
    rng = np.random.default_rng(7)
    rows = [record(logged_at=at(1 + n * 0.01), routed_version="v1", latency_ms=float(rng.lognormal(3, 0.3)),
                   top_similarity=0.75, overlap=0.5) for n in range(3000)]
    rows += [record(logged_at=at(40), routed_version="v2", served_version="v2", latency_ms=15.0,
                    top_similarity=0.8) for _ in range(150)]
    insert(runtime.pool, rows)
    collected = collect(runtime, max_samples=1000)
    v1, v2 = collected.evidence.v1, collected.evidence.v2
    assert v1.requests == 3000 and v2.requests == 150                 # counts are exact
    assert 800 <= len(v1.latencies_s) <= 1200                          # about max_samples (Bernoulli sample)
    assert len(v1.top_similarities) == len(v1.latencies_s)
    assert len(v2.latencies_s) == 150                                  # under the bound: all of them
    assert 800 <= len(collected.evidence.shadow_overlaps) <= 1200
    summary = collected.summary
    assert summary["v1"]["sampled_share"] == pytest.approx(1000 / 3000) and summary["v2"]["sampled_share"] == 1.0
    assert summary["shadow"]["compared"] == 3000
    median = float(np.median([r.latency_ms for r in rows[:3000]])) / 1000
    assert np.median(v1.latencies_s) == pytest.approx(median, rel=0.1)  # a uniform sample keeps the shape


def test_shadow_overlaps_of_routed_queries(runtime):
    insert(runtime.pool, [
        record(logged_at=at(1), routed_version="v1", other_version="v2", overlap=0.25),
        record(logged_at=at(2), routed_version="v2", served_version="v2", other_version="v1", overlap=1.0),
        record(logged_at=at(3), routed_version="v2", reason="forced", other_version="v1", overlap=0.0),
        record(logged_at=at(4), routed_version="v1"),
    ])
    assert sorted(collect(runtime).evidence.shadow_overlaps) == [0.25, 1.0]


def test_facts_coverage_breaker_and_alerts(runtime):
    documents = sample_documents()
    DocumentStore(runtime.pool).upsert_many(documents)
    backfill_for(runtime, "v1").run()
    runtime.coverage.refresh()
    facts = collector(runtime).facts()
    assert facts["coverage_complete"] is False
    assert "facilities 0/2" in facts["coverage_detail"] and "parking 0/1" in facts["coverage_detail"]
    assert facts["breaker_closed"] is True and facts["tripping_alerts"] == ()

    load_and_embed(runtime, documents)
    runtime.breakers.open("v2", reason="slow disks", actor="test")
    runtime.alerts.receive("alertmanager", [Alert("alertmanager", "fp-1", "RagCandidateErrorRateHigh", "firing",
                                                  "critical")])
    facts = collector(runtime).facts()
    assert facts["coverage_complete"] is True and facts["coverage_detail"] == ""
    assert facts["breaker_closed"] is False and "open" in facts["breaker_detail"]
    assert facts["tripping_alerts"] == ("RagCandidateErrorRateHigh",)
    verdict = judge(collect(runtime).evidence, RolloutPlan())
    assert verdict.outcome.value == "rollback"
    assert {g.name for g in verdict.deciding()} == {"breaker", "alerts"}


def test_coverage_not_counted_yet_is_not_complete(runtime):
    uncounted = CoverageMonitor(runtime.pool, {v: runtime.settings.version(v) for v in VERSIONS}, runtime.metrics,
                                guarded=runtime.router.roles.candidate)
    facts = EvidenceCollector(runtime.pool, runtime.breakers, uncounted, max_samples=1000,
                              statement_timeout_ms=10_000, roles=lambda: runtime.router.roles).facts()
    assert facts["coverage_complete"] is False and facts["coverage_detail"].startswith("not counted yet")
