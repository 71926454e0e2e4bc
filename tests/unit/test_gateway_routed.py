"""The gateway's routed answer, its fallback and its shadow hand-off, on in-memory parts."""

from __future__ import annotations

import threading

import pytest
from memory_gateway import BASELINE, CANDIDATE, memory_gateway

from rollout.backends import SearchFailed
from rollout.gateway import RagQuery
from rollout.routing import Reason

QUERY = RagQuery("When does the pool open on weekends?", k=3, user_key="alice", request_id="r1")


@pytest.fixture
def parts():
    made = []

    def make(**options):
        made.append(memory_gateway(**options))
        return made[-1]

    yield make
    for p in made:
        p.shadow_pool.shutdown()


def test_migration_off_answers_from_the_baseline(parts):
    p = parts(migration=False, percentage=100)
    answer = p.gateway.answer(QUERY)
    assert answer.served_by == BASELINE and answer.decision.reason is Reason.MIGRATION_DISABLED
    assert answer.result.ids[0] == "pool-hours" and not answer.fallback
    assert p.backends[CANDIDATE].searches == 0
    [record] = p.wait_for_records(1)
    assert (record.routed_version, record.served_version, record.mode) == (BASELINE, BASELINE, "routed")
    assert record.result_count == 3 and record.other_version is None and record.error_kind is None
    assert p.sample("rag_requests_total", version=BASELINE, outcome="ok") == 1


def test_everyone_on_the_candidate_is_answered_by_it(parts):
    p = parts(percentage=100)
    answer = p.gateway.answer(QUERY)
    assert answer.served_by == CANDIDATE and answer.decision.reason is Reason.PERCENTAGE
    assert p.backends[BASELINE].searches == 0
    assert p.breakers.state().record(CANDIDATE).failures == 0


def test_a_failing_candidate_is_answered_by_the_baseline_and_counted(parts):
    p = parts(percentage=100, fail_max=2)
    p.backends[CANDIDATE].fail = "embedding"
    answer = p.gateway.answer(QUERY)
    assert answer.served_by == BASELINE and answer.fallback and answer.failure.kind == "embedding"
    assert p.sample("rag_fallbacks_total", reason="embedding") == 1
    assert p.breakers.state().record(CANDIDATE).failures == 1
    [record] = p.wait_for_records(1)
    assert record.fallback and record.fallback_reason == "embedding" and record.served_version == BASELINE

    p.gateway.answer(QUERY)  # the second failure opens the breaker: the candidate is no longer routed to
    third = p.gateway.answer(QUERY)
    assert third.decision.reason is Reason.BREAKER_OPEN and not third.fallback
    assert p.backends[CANDIDATE].searches == 2


def test_when_both_fail_the_error_is_raised_and_recorded(parts):
    p = parts(percentage=100)
    for backend in p.backends.values():
        backend.fail = "database"
    with pytest.raises(SearchFailed):
        p.gateway.answer(QUERY)
    [record] = p.wait_for_records(1)
    assert record.served_version is None and record.error_kind == "database" and record.fallback
    assert p.sample("rag_requests_total", version=BASELINE, outcome="error") == 1


def test_the_shadow_is_compared_after_the_answer_in_its_own_thread(parts):
    p = parts(shadow=True)
    p.backends[CANDIDATE].release = release = threading.Event()
    answer = p.gateway.answer(QUERY)  # returns while the shadow still waits
    assert answer.served_by == BASELINE and p.records == []
    release.set()
    [record] = p.wait_for_records(1)
    assert record.other_version == CANDIDATE and record.other_error is None
    assert record.overlap is not None and record.rbo is not None
    [(paired, other, comparison)] = p.pairs
    assert paired is answer and other.version == CANDIDATE and comparison.overlap == record.overlap
    assert p.sample("rag_shadow_comparisons_total", version=BASELINE) == 1


def test_a_failing_shadow_changes_nothing_in_the_answer(parts):
    p = parts(shadow=True)
    p.backends[CANDIDATE].fail = "timeout"
    answer = p.gateway.answer(QUERY)
    assert answer.served_by == BASELINE and not answer.fallback
    [record] = p.wait_for_records(1)
    assert record.other_error == "timeout" and record.overlap is None
    assert p.sample("rag_shadow_failures_total", version=CANDIDATE, kind="timeout") == 1
    assert p.breakers.state().record(CANDIDATE).failures == 0  # a shadow is not a serving search


def test_the_baselines_shadow_in_flight_becomes_the_fallback(parts):
    p = parts(percentage=100, shadow=True)
    p.backends[CANDIDATE].fail = "embedding"
    answer = p.gateway.answer(QUERY)
    assert answer.served_by == BASELINE and answer.fallback
    assert p.backends[BASELINE].searches == 1  # the shadow's search, not a second one
    assert p.sample("rag_shadow_fallback_served_total", version=BASELINE) == 1
    [record] = p.wait_for_records(1)
    assert record.other_version is None and record.overlap is None and p.pairs == []
