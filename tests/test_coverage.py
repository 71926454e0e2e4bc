"""Coverage per version and category; the router refuses V2 where V2 is incomplete (from local counts)."""

from __future__ import annotations

import time

import pytest
from helpers import load_and_embed, sample_documents, settings_for

from flags import GRADUAL_MIGRATION, V2_PERCENTAGE
from rollout.documents import Document, DocumentStore
from rollout.migration.backfill import BackfillOptions, backfill_for
from rollout.routing import Reason

pytestmark = pytest.mark.timeout(60)


def all_on_v2(runtime):
    runtime.flags.set(GRADUAL_MIGRATION, True, actor="test")
    runtime.flags.set(V2_PERCENTAGE, 100, actor="test")


def gauge(runtime, version, category):
    return runtime.metrics.registry.get_sample_value("rag_migration_coverage_ratio",
                                                     {"version": version, "category": category})


def test_v2_is_refused_where_it_is_incomplete(runtime):
    all_on_v2(runtime)
    DocumentStore(runtime.pool).upsert_many(sample_documents(extra=12))
    backfill_for(runtime, "v1", BackfillOptions()).run()
    backfill_for(runtime, "v2", BackfillOptions(category="pricing")).run()
    runtime.coverage.refresh()

    assert runtime.router.decide("u1", category="pricing").version == "v2"
    blocked = runtime.router.decide("u1", category="events")
    assert blocked.version == "v1" and blocked.reason is Reason.V2_INCOMPLETE
    assert runtime.router.decide("u1").reason is Reason.V2_INCOMPLETE  # the corpus as a whole is incomplete
    assert runtime.router.decide("u1", category="no-such-category").version == "v2"  # nothing to miss
    assert gauge(runtime, "v2", "pricing") == 1.0 and gauge(runtime, "v2", "events") == 0.0
    assert 0 < gauge(runtime, "v2", "__all__") < 1 and gauge(runtime, "v1", "__all__") == 1.0


def test_the_guard_reads_local_counts_refreshed_off_the_request_path(runtime):
    all_on_v2(runtime)
    load_and_embed(runtime)
    assert runtime.router.decide("u2").version == "v2"
    DocumentStore(runtime.pool).upsert_many([Document("late", "Late", "Not in V2 yet.", "events")])
    assert runtime.router.decide("u2", category="events").version == "v2"  # no query on the way
    runtime.coverage.refresh()  # what the refresher thread does every COVERAGE_REFRESH_S
    assert runtime.router.decide("u2", category="events").reason is Reason.V2_INCOMPLETE
    assert runtime.router.decide("u2", category="facilities").version == "v2"


def test_the_threshold_is_a_setting(make_runtime, services):
    runtime = make_runtime(settings_for(services, V2_MIN_COVERAGE_PERCENT="50"))
    all_on_v2(runtime)
    DocumentStore(runtime.pool).upsert_many(sample_documents())
    backfill_for(runtime, "v1", BackfillOptions()).run()
    backfill_for(runtime, "v2", BackfillOptions(limit=3)).run()
    runtime.coverage.refresh()
    assert runtime.router.decide("u3").version == "v2"  # 3 of 6 = 50 %


def test_the_refresher_thread_catches_up_by_itself(make_runtime, services):
    runtime = make_runtime(settings_for(services, COVERAGE_REFRESH_S="0.1"))
    all_on_v2(runtime)
    DocumentStore(runtime.pool).upsert_many(sample_documents())
    deadline = time.monotonic() + 10
    while runtime.router.decide("u4").version == "v2" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runtime.router.decide("u4").reason is Reason.V2_INCOMPLETE


def test_counts_unknown_means_refused_and_a_database_outage_keeps_the_last_counts(runtime):
    all_on_v2(runtime)
    load_and_embed(runtime)
    runtime.coverage._snapshot = None
    assert runtime.router.decide("u5").reason is Reason.V2_INCOMPLETE
    runtime.coverage.refresh()
    runtime.pool.close()  # the database is gone for this process
    assert runtime.coverage.refresh() is False and runtime.coverage.last_error
    assert runtime.router.decide("u5").version == "v2"


def test_a_forced_v2_is_served_where_v2_is_incomplete_but_an_open_breaker_still_wins(runtime):
    all_on_v2(runtime)
    DocumentStore(runtime.pool).upsert_many(sample_documents(extra=12))
    backfill_for(runtime, "v1", BackfillOptions()).run()
    backfill_for(runtime, "v2", BackfillOptions(category="pricing")).run()
    runtime.coverage.refresh()
    forced = runtime.router.decide("u1", category="events", forced="v2")
    assert (forced.version, forced.reason) == ("v2", Reason.FORCED)
    runtime.rollback.open("v2", actor="test", reason="drill", source="test")
    held = runtime.router.decide("u1", category="events", forced="v2")
    assert (held.version, held.reason) == ("v1", Reason.BREAKER_OPEN)


def test_migrate_status_has_a_header_a_total_and_never_says_complete_with_documents_pending(runtime):
    from click.testing import CliRunner

    from rollout.cli import command_group

    cli = command_group()

    DocumentStore(runtime.pool).upsert_many(sample_documents(extra=12))
    backfill_for(runtime, "v2", BackfillOptions(category="pricing")).run()
    result = CliRunner().invoke(cli, ["migrate", "status", "--version", "v2"], obj=runtime.settings)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["version", "category", "embedded", "total", "failed", "pending", "state", "last",
                                "run"]
    rows = {line.split()[1]: line.split() for line in lines[1:]}
    assert rows["pricing"][2] == rows["pricing"][3] and rows["pricing"][6] == "complete"
    assert int(rows["events"][5]) > 0 and rows["events"][6] == "pending"
    total = rows["(all)"]
    assert int(total[3]) == sum(int(r[3]) for name, r in rows.items() if name != "(all)") and total[6] == "pending"
