"""`query_log_minutes`: query_log summed per minute and version, kept by the query-log writer.

The writer COPYs a batch into a temporary table, moves it to `query_log` and adds it to the
rollup (`query_log_minutes_add`, sql/009) in one transaction: the rollup holds exactly the rows
that are in `query_log`, whatever fails. Latency is a histogram of log-spaced buckets (eight per
doubling from 0.1 ms, each 9.05 % wide), so the buckets of any minutes add up, and a percentile
read from them lies in the bucket of the exact one: it is reported as that bucket's geometric
middle, within 4.4 % of PostgreSQL's `percentile_cont`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import psycopg

BUCKET_BASE_MS = 0.1   # the first bucket's lower edge (every faster query counts in bucket 0)
BUCKETS_PER_DOUBLING = 8
BATCH_TABLE = "query_log_batch"


def bucket_middle(bucket: int) -> float:
    """The geometric middle of a bucket, in ms (the value a percentile in it is reported as)."""
    return BUCKET_BASE_MS * 2 ** ((bucket + 0.5) / BUCKETS_PER_DOUBLING)


def add_histograms(histograms: Iterable[Mapping[str, int]]) -> dict[int, int]:
    """Bucket counts summed over `histograms` (as stored: {"bucket": count})."""
    total: dict[int, int] = {}
    for histogram in histograms:
        for bucket, count in histogram.items():
            total[int(bucket)] = total.get(int(bucket), 0) + int(count)
    return total


def percentiles(histogram: Mapping[int, int], quantiles: Sequence[float]) -> list[float | None]:
    """Each quantile as `percentile_cont` takes it (rank q·(n−1), between the two nearest samples), with each
    sample standing at its bucket's middle; None without samples."""
    ordered = sorted((b, c) for b, c in histogram.items() if c > 0)
    n = sum(c for _, c in ordered)
    if n == 0:
        return [None for _ in quantiles]

    def value(index: int) -> float:
        seen = 0
        for bucket, count in ordered:
            seen += count
            if index < seen:
                return bucket_middle(bucket)
        return bucket_middle(ordered[-1][0])

    out = []
    for q in quantiles:
        rank = q * (n - 1)
        low, high = math.floor(rank), math.ceil(rank)
        lower, upper = value(low), value(high)
        out.append(lower + (upper - lower) * (rank - low))
    return out


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
    conn.execute(f"SELECT query_log_minutes_add('pg_temp.{BATCH_TABLE}')")


def rebuild(conn: psycopg.Connection) -> None:
    """Sum every query_log row into the rollup again (after rows were loaded around the writer, e.g. by COPY)."""
    with conn.transaction():
        conn.execute("LOCK TABLE query_log_minutes IN EXCLUSIVE MODE")
        conn.execute("DELETE FROM query_log_minutes")
        conn.execute("SELECT query_log_minutes_add('query_log')")
