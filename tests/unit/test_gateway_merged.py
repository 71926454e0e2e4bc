"""Merged mode on in-memory parts: both versions fused, one of them missing, none answering."""

from __future__ import annotations

import pytest
from memory_gateway import BASELINE, CANDIDATE, memory_gateway

from rollout.backends import SearchFailed
from rollout.gateway import RagQuery
from rollout.routing import Reason

QUERY = RagQuery("opening hours", k=4, user_key="bob", request_id="m1")


@pytest.fixture
def parts():
    p = memory_gateway(percentage=50)
    yield p
    p.shadow_pool.shutdown()


def test_both_versions_are_fused_into_one_list(parts):
    merged = parts.gateway.answer_merged(QUERY)
    assert merged.served_by == "merged" and merged.held_off is None
    assert set(merged.answered) == {BASELINE, CANDIDATE} and merged.comparison is not None
    assert len(merged.hits) == 4 and len({hit.hit.id for hit in merged.hits}) == 4
    assert {"pool-hours", "gym-hours"} <= {hit.hit.id for hit in merged.hits}
    [record] = parts.wait_for_records(1)
    assert record.mode == "merged" and record.served_version == "merged" and record.other_version == CANDIDATE
    assert parts.sample("rag_merged_requests_total", version="both") == 1


def test_a_failing_candidate_leaves_the_baselines_list(parts):
    parts.backends[CANDIDATE].fail = "embedding"
    merged = parts.gateway.answer_merged(QUERY)
    assert merged.served_by == BASELINE and merged.comparison is None
    assert merged.runs[CANDIDATE].error == "embedding"
    [record] = parts.wait_for_records(1)
    assert record.fallback and record.fallback_reason == "embedding" and record.other_error == "embedding"
    assert parts.breakers.state().record(CANDIDATE).failures == 1


def test_a_candidate_held_off_by_its_breaker_is_not_searched(parts):
    parts.breakers.open(CANDIDATE, actor="test", reason="held for the test")
    merged = parts.gateway.answer_merged(QUERY)
    assert merged.held_off is Reason.BREAKER_OPEN and merged.served_by == BASELINE
    assert parts.backends[CANDIDATE].searches == 0


def test_no_version_answering_is_an_error_with_its_record(parts):
    for backend in parts.backends.values():
        backend.fail = "database"
    with pytest.raises(SearchFailed):
        parts.gateway.answer_merged(QUERY)
    [record] = parts.wait_for_records(1)
    assert record.mode == "merged" and record.served_version is None and record.error_kind == "database"
