"""Lost query_log rows: each writer tallies what it drops into `query_log_losses`, the collector reads the
stage window's share, and the lost-rows check holds the stage beyond ROLLOUT_MAX_LOST_ROW_SHARE."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from analytics_rows import NOW, insert, record
from test_rollout_evidence import DAY, SINCE, STAGE_START, UNTIL, collector

from flags import QUERY_ANALYTICS
from rollout.analytics.losses import DATABASE_ERROR, QUEUE_FULL, LossTally, read_losses
from rollout.analytics.querylog import QueryLogWriter
from rollout.controller import GateStatus, Outcome, RolloutPlan, judge


def losses_table(runtime) -> list[tuple]:
    with runtime.pool.connection() as conn:
        return conn.execute("SELECT writer, minute, cause, rows FROM query_log_losses ORDER BY cause").fetchall()


def test_a_full_queue_is_tallied_where_the_controller_reads_it(runtime):
    runtime.flags.set(QUERY_ANALYTICS, True, actor="test")
    writer = QueryLogWriter(runtime.pool, runtime.flags, runtime.metrics, queue_size=2)  # not started: no drain
    for n in range(5):
        writer.record(record(request_id=f"q{n}", logged_at=NOW - timedelta(minutes=1)))
    writer.start()
    try:
        assert writer.flush()
    finally:
        writer.close()
    [(name, minute, cause, rows)] = losses_table(runtime)
    assert (name, cause, rows) == (writer.losses.writer, QUEUE_FULL, 3)
    assert abs((datetime.now(UTC) - minute).total_seconds()) < 120 and minute.second == 0
    # the tally is stamped with the wall clock's minute, which may be well after this module's NOW
    until = max(UNTIL, minute.timestamp()) + 120
    evidence = collector(runtime).collect(10.0, SINCE, until, DAY).evidence
    assert (evidence.rows_logged, evidence.rows_lost) == (2, 3)
    assert evidence.lost_detail == "3 with the writer's queue full"


def test_a_refused_batch_is_tallied_as_a_database_error(runtime, services):
    runtime.flags.set(QUERY_ANALYTICS, True, actor="test")
    with psycopg.connect(services.database_url, autocommit=True) as admin:
        admin.execute("ALTER TABLE query_log RENAME TO query_log_away")
        try:
            for n in range(4):
                runtime.query_log.record(record(request_id=f"lost{n}"))
            assert runtime.query_log.flush()
        finally:
            admin.execute("ALTER TABLE query_log_away RENAME TO query_log")
    assert [(cause, rows) for _, _, cause, rows in losses_table(runtime)] == [(DATABASE_ERROR, 4)]


def test_the_tally_waits_while_its_table_is_unreachable_and_keeps_the_minute(runtime, services):
    clock = [STAGE_START.timestamp() + 600]
    tally = LossTally("host:1", clock=lambda: clock[0])
    tally.count(QUEUE_FULL, 7)
    with psycopg.connect(services.database_url, autocommit=True) as admin:
        admin.execute("ALTER TABLE query_log_losses RENAME TO query_log_losses_away")
        try:
            assert tally.write(runtime.pool) is False
        finally:
            admin.execute("ALTER TABLE query_log_losses_away RENAME TO query_log_losses")
    assert tally.pending == 7
    clock[0] += 3600
    tally.count(QUEUE_FULL, 2)
    assert tally.write(runtime.pool) is True and tally.pending == 0
    assert tally.write(runtime.pool) is True   # nothing left: no row added twice
    with runtime.pool.connection() as conn:
        assert read_losses(conn, STAGE_START, STAGE_START + timedelta(minutes=11)).queue_full == 7
        assert read_losses(conn, STAGE_START, STAGE_START + timedelta(hours=2)).rows == 9
        assert read_losses(conn, STAGE_START + timedelta(minutes=11), STAGE_START + timedelta(hours=2)).rows == 2


def test_a_stage_that_lost_rows_holds_with_the_reason(runtime):
    insert(runtime.pool, [record(request_id=f"r{n}", routed_version="v2" if n % 10 == 0 else "v1",
                                 served_version="v2" if n % 10 == 0 else "v1", user_hash=f"u{n}")
                          for n in range(300)])
    tally = LossTally("host:2", clock=lambda: NOW.timestamp() - 300)
    tally.count(DATABASE_ERROR, 20)
    assert tally.write(runtime.pool)
    verdict = judge(collector(runtime).collect(10.0, SINCE, UNTIL, DAY).evidence, RolloutPlan())
    gate = verdict.gate("lost_rows")
    assert gate.status is GateStatus.FAILED and verdict.outcome is Outcome.HOLD
    assert "lost 20 of 320 rows in this stage (6.25 %" in verdict.reason
    assert "20 refused by the database" in verdict.reason
