"""The per-minute rollup behind the console's series (sql/009, rollout.analytics.rollup), on the embedded
PostgreSQL: it equals query_log's own aggregates whether rows came through the writer or the upgrade's backfill,
and a batch the database refuses leaves neither table changed."""

from __future__ import annotations

import math
import shutil
from datetime import timedelta

import numpy as np
import psycopg
import pytest
from analytics_rows import NOW, record
from helpers import settings_for

from flags import QUERY_ANALYTICS
from rollout import schema
from rollout.analytics.querylog import COPY_SQL
from rollout.analytics.record import COLUMNS
from rollout.analytics.rollup import BUCKETS_PER_DOUBLING, GRAINS_MIN, bucket_middle, quantile, rebuild
from rollout.analytics.series import grid

# query_log's figures per minute and version, computed straight from the rows (the oracle)
EXPECTED = """
    SELECT minute, version, sum(requests)::bigint, sum(errors)::bigint, sum(fallbacks)::bigint,
           sum(latency), sum(cache_hits)::bigint, sum(cache_samples)::bigint,
           sum(similarity), sum(similarity_samples)::bigint, sum(overlap),
           sum(overlap_samples)::bigint, sum(tokens)::bigint
    FROM (
        SELECT date_bin(make_interval(mins => %(grain)s), logged_at, timestamptz '2000-01-01 00:00:00+00') AS minute,
               routed_version AS version, 1 AS requests, (fallback OR served_version IS NULL)::int AS errors,
               fallback::int AS fallbacks, latency_ms::float8 AS latency,
               coalesce((served_version = routed_version AND cache_hit)::int, 0) AS cache_hits,
               coalesce((served_version = routed_version AND cache_hit IS NOT NULL)::int, 0) AS cache_samples,
               CASE WHEN served_version = routed_version THEN coalesce(top_similarity, 0)::float8 ELSE 0 END
                   AS similarity,
               coalesce((served_version = routed_version AND top_similarity IS NOT NULL)::int, 0)
                   AS similarity_samples,
               coalesce(overlap, 0)::float8 AS overlap, (overlap IS NOT NULL)::int AS overlap_samples, 0 AS tokens
        FROM query_log WHERE mode = 'routed'
        UNION ALL
        SELECT date_bin(make_interval(mins => %(grain)s), logged_at, timestamptz '2000-01-01 00:00:00+00'),
               served_version, 0, 0, 0, 0,
               0, 0, 0, 0, 0, 0, embed_tokens
        FROM query_log WHERE mode = 'routed' AND served_version IS NOT NULL AND embed_tokens IS NOT NULL
        UNION ALL
        SELECT date_bin(make_interval(mins => %(grain)s), logged_at, timestamptz '2000-01-01 00:00:00+00'),
               other_version, 0, 0, 0, 0,
               0, 0, 0, 0, 0, 0, other_embed_tokens
        FROM query_log WHERE mode = 'routed' AND other_version IS NOT NULL AND other_embed_tokens IS NOT NULL
    ) facts GROUP BY minute, version ORDER BY minute, version"""
ROLLUP = """
    SELECT period, version, requests, errors, fallbacks, latency_ms_sum, cache_hits, cache_samples, similarity_sum,
           similarity_samples, overlap_sum, overlap_samples, embed_tokens
    FROM query_log_rollup WHERE grain_minutes = %(grain)s ORDER BY period, version"""


def varied_records(n: int, seed: int = 5) -> list:
    """Routed and merged queries over 40 minutes: fallbacks, failures, cache hits and misses, shadows, tokens."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        version = "v2" if rng.random() < 0.5 else "v1"
        failed, fell_back = rng.random() < 0.05, version == "v2" and rng.random() < 0.08
        served = None if failed else ("v1" if fell_back else version)
        shadow = rng.random() < 0.4
        out.append(record(
            logged_at=NOW - timedelta(seconds=float(rng.uniform(0, 2400))), request_id=f"r{i}",
            mode="merged" if rng.random() < 0.05 else "routed", routed_version=version, served_version=served,
            latency_ms=float(rng.lognormal(np.log(80), 0.9)), fallback=fell_back and not failed,
            error_kind="database" if failed else None,
            cache_hit=None if rng.random() < 0.3 else bool(rng.random() < 0.6),
            top_similarity=None if served is None else float(rng.uniform(0.3, 0.95)),
            other_version=("v1" if version == "v2" else "v2") if shadow else None,
            overlap=float(rng.uniform(0, 1)) if shadow else None,
            embed_tokens=None if served is None else int(rng.integers(0, 30)),
            other_embed_tokens=int(rng.integers(1, 30)) if shadow else None))
    return out


def rollup_matches(conn) -> None:
    for grain in GRAINS_MIN:
        expected = conn.execute(EXPECTED, {"grain": grain}).fetchall()
        assert expected, "no rows to compare"
        got = conn.execute(ROLLUP, {"grain": grain}).fetchall()
        assert [row[:2] for row in got] == [row[:2] for row in expected]
        for have, want in zip(got, expected, strict=True):
            assert have == pytest.approx(want, rel=1e-9, abs=1e-6), (have, want)  # float sums in another order


def test_the_writer_keeps_the_rollup_equal_to_query_log(runtime):
    runtime.flags.set(QUERY_ANALYTICS, True, actor="test")
    records = varied_records(600)
    for start in range(0, len(records), 130):  # several batches: minutes are added to, not replaced
        for r in records[start:start + 130]:
            runtime.query_log.record(r)
        assert runtime.query_log.flush()
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM query_log").fetchone()[0] == 600
        rollup_matches(conn)
        histograms = conn.execute("SELECT latency_buckets FROM query_log_rollup WHERE grain_minutes = 1").fetchall()
    assert sum(sum(h.values()) for (h,) in histograms) == sum(r.mode == "routed" for r in records)


@pytest.mark.parametrize("range_name", ["1h", "24h"])  # read from the minutes, and from the quarter hours
def test_series_percentiles_are_exact_to_a_bucket(runtime, range_name):
    runtime.flags.set(QUERY_ANALYTICS, True, actor="test")
    for r in varied_records(800, seed=9):
        runtime.query_log.record(r)
    assert runtime.query_log.flush()
    series = runtime.figures.series(range_name, until=NOW + timedelta(seconds=1))
    width = 2 ** (1 / BUCKETS_PER_DOUBLING)
    step = timedelta(seconds=series["step_s"])
    checked = 0
    with runtime.pool.connection() as conn:
        for version, points in series["versions"].items():
            for point in points:
                start = grid(datetime_of(point["at"]), step)
                exact = conn.execute(
                    "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms), count(*) "
                    "FROM query_log WHERE mode = 'routed' AND routed_version = %s AND logged_at >= %s "
                    "AND logged_at < %s", (version, start, start + step)).fetchone()
                assert exact[1] == point["requests"]
                if not exact[1]:  # only the shadow's tokens fell in this point
                    assert point["p50_ms"] is None and point["embed_tokens"] > 0
                    continue
                for q, value in zip(exact[0], (point["p50_ms"], point["p95_ms"], point["p99_ms"]), strict=True):
                    assert q / width <= value <= q * width, (version, point["at"], q, value)
                checked += 1
    assert checked >= (40 if range_name == "1h" else 6)


def datetime_of(text: str):
    from datetime import datetime
    return datetime.fromisoformat(text)


def test_quantiles_follow_percentile_cont_over_bucket_middles():
    middle = bucket_middle(40)
    assert quantile(0.5, 3, 40, 40) == middle and quantile(0.99, 1, 40, 40) == middle
    low, high = bucket_middle(10), bucket_middle(20)
    assert math.isclose(quantile(0.5, 2, 10, 20), (low + high) / 2)  # halfway between the two samples
    assert math.isclose(quantile(0.75, 3, 10, 20), (low + high) / 2)  # rank 1.5
    assert bucket_middle(0) < 0.11 and math.isclose(bucket_middle(8) / bucket_middle(0), 2.0)


def test_a_refused_batch_changes_neither_table(runtime, services):
    """The rollup step fails after the rows reached query_log: both roll back, and later batches add up."""
    runtime.flags.set(QUERY_ANALYTICS, True, actor="test")
    kept = varied_records(50, seed=1)
    for r in kept:
        runtime.query_log.record(r)
    assert runtime.query_log.flush()
    with psycopg.connect(services.database_url, autocommit=True) as admin:
        admin.execute("ALTER TABLE query_log_rollup ADD CONSTRAINT no_refused CHECK (version <> 'refused')")
        try:
            runtime.query_log.record(record(request_id="lost-1", routed_version="refused", served_version=None,
                                            error_kind="database"))
            runtime.query_log.record(record(request_id="lost-2"))
            assert runtime.query_log.flush()
        finally:
            admin.execute("ALTER TABLE query_log_rollup DROP CONSTRAINT no_refused")
    for r in varied_records(50, seed=2):
        runtime.query_log.record(r)
    assert runtime.query_log.flush()
    with runtime.pool.connection() as conn:
        ids = [row[0] for row in conn.execute("SELECT request_id FROM query_log")]
        assert "lost-1" not in ids and "lost-2" not in ids and len(ids) == 100
        rollup_matches(conn)


def test_rows_loaded_around_the_writer_are_summed_by_a_rebuild(runtime):
    with runtime.pool.connection() as conn:
        with conn.cursor() as cursor, cursor.copy(COPY_SQL) as copy:
            for r in varied_records(300, seed=3):
                copy.write_row(r.row())
        assert conn.execute("SELECT count(*) FROM query_log_rollup").fetchone()[0] == 0
        rebuild(conn)
        rollup_matches(conn)
        rebuild(conn)  # again: the same, not doubled
        rollup_matches(conn)


def test_the_upgrade_backfills_the_rollup_from_rows_already_logged(fresh_database, services, tmp_path):
    settings = settings_for(services)
    before = tmp_path / "sql"
    before.mkdir()
    for migration in schema.migrations():
        if migration.version < 9:
            shutil.copy(migration.path, before / migration.path.name)
    schema.upgrade(fresh_database, settings, folder=before)
    old_columns = [c for c in COLUMNS if c not in ("embed_tokens", "other_embed_tokens")]
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        with conn.cursor() as cursor, cursor.copy(f"COPY query_log ({', '.join(old_columns)}) FROM STDIN") as copy:
            for r in varied_records(250, seed=4):
                copy.write_row(tuple(getattr(r, c) for c in old_columns))
        assert conn.execute("SELECT to_regclass('query_log_rollup')").fetchone()[0] is None
    assert "009_query_log_rollup.sql" in schema.upgrade(fresh_database, settings)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        rollup_matches(conn)
        assert conn.execute("SELECT sum(embed_tokens) FROM query_log_rollup").fetchone()[0] == 0


@pytest.mark.parametrize("latency_ms", [0.0, 0.05, 0.1, 1.0, 123.4, 8000.0, 1e9])
def test_the_bucket_of_a_latency_holds_it(runtime, latency_ms):
    with runtime.pool.connection() as conn:
        bucket = conn.execute("SELECT latency_bucket(%s)", (latency_ms,)).fetchone()[0]
    width = 2 ** (1 / BUCKETS_PER_DOUBLING)
    if 0.1 <= latency_ms < bucket_middle(255):
        assert bucket_middle(bucket) / width ** 0.5 <= latency_ms * (1 + 1e-9)
        assert latency_ms < bucket_middle(bucket) * width ** 0.5 * (1 + 1e-9)
    else:
        assert bucket in (0, 255)


def test_writers_of_several_processes_add_the_same_minutes_at_once(runtime):
    """Batches over the same minutes and versions from two connections at once: none is refused (rows are locked
    in one order, so no deadlock), and the rollup still equals query_log."""
    import threading

    from rollout.analytics.rollup import write_batch

    failures: list[Exception] = []

    def writer(seed: int) -> None:
        for round_ in range(15):
            rows = [r.row() for r in varied_records(60, seed=seed * 100 + round_)]
            try:
                with runtime.pool.connection() as conn, conn.transaction():
                    write_batch(conn, COLUMNS, rows)
            except psycopg.Error as exc:
                failures.append(exc)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM query_log").fetchone()[0] == 3 * 15 * 60
        rollup_matches(conn)
