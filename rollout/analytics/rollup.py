"""`query_log_rollup`: query_log summed per minute (and per quarter hour) and version, kept by the query-log writer.

The writer COPYs a batch into a temporary table, moves it to `query_log` and adds it to the
rollup (`query_log_rollup_add`, sql/009) in one transaction: the rollup holds exactly the rows
that are in `query_log`, whatever fails. Latency is a histogram of log-spaced buckets (eight per
doubling from 0.1 ms, each 9.05 % wide), so the buckets of any minutes add up, and a percentile
read from them lies in the bucket of the exact one: it is reported as that bucket's geometric
middle, within 4.4 % of PostgreSQL's `percentile_cont`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import psycopg

BUCKET_BASE_MS = 0.1   # the first bucket's lower edge (every faster query counts in bucket 0)
BUCKETS_PER_DOUBLING = 8
BATCH_TABLE = "query_log_batch"
GRAINS_MIN = (15, 1)  # the periods the rollup keeps, in minutes, coarsest first


def grain_for(step_s: float) -> int:
    """The coarsest grain whose periods fit a whole number of times in a point of `step_s` seconds."""
    return next(g for g in GRAINS_MIN if step_s % (g * 60) == 0)


def bucket_middle(bucket: int) -> float:
    """The geometric middle of a bucket, in ms (the value a percentile in it is reported as)."""
    return BUCKET_BASE_MS * 2 ** ((bucket + 0.5) / BUCKETS_PER_DOUBLING)


def quantile(q: float, total: int, low_bucket: int, high_bucket: int) -> float:
    """Quantile `q` of `total` samples as `percentile_cont` takes it (rank q·(n−1), between the two nearest
    samples), each sample standing at its bucket's middle: `low_bucket` holds the sample at rank floor(q·(n−1)),
    `high_bucket` the one at ceil(q·(n−1))."""
    rank = q * (total - 1)
    lower, upper = bucket_middle(low_bucket), bucket_middle(high_bucket)
    return lower + (upper - lower) * (rank - math.floor(rank))


def write_batch(conn: psycopg.Connection, columns: Sequence[str], rows: Iterable[tuple]) -> None:
    """Append `rows` to query_log and add them to the rollup, in the caller's transaction.

    The batch goes through a temporary table (emptied at commit), so the rollup reads exactly
    these rows and not others that writers of other processes add meanwhile.
    """
    names = ", ".join(columns)
    conn.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {BATCH_TABLE} ON COMMIT DELETE ROWS AS "
                 f"SELECT {names} FROM query_log WITH NO DATA")
    with conn.cursor() as cursor, cursor.copy(f"COPY {BATCH_TABLE} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    conn.execute(f"INSERT INTO query_log ({names}) SELECT {names} FROM {BATCH_TABLE}")
    conn.execute(f"SELECT query_log_rollup_add('pg_temp.{BATCH_TABLE}')")


def rebuild(conn: psycopg.Connection) -> None:
    """Sum every query_log row into the rollup again (after rows were loaded around the writer, e.g. by COPY)."""
    with conn.transaction():
        conn.execute("LOCK TABLE query_log_rollup IN EXCLUSIVE MODE")
        conn.execute("DELETE FROM query_log_rollup")
        conn.execute("SELECT query_log_rollup_add('query_log')")
