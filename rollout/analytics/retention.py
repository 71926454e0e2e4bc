"""Retention of `query_log`: rows older than QUERY_LOG_RETENTION_DAYS are deleted on a schedule,
with the rollup's periods and the lost-row tallies (`query_log_losses`) of the same age.

The job runs in one scheduler process per host (`rollout serve` / `rollout demo`,
never a web worker; a `rollout controller` may schedule it too). When several
processes or hosts run it, a PostgreSQL advisory lock lets exactly one delete at
a time and the others skip that round. Deletes go in batches, each its own short
transaction, so a large backlog never holds long locks or a long transaction.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)

LOCK_KEY = 0x716C6F67  # "qlog"


@dataclass(frozen=True)
class RetentionRun:
    deleted: int
    skipped: bool  # another process held the lock


class QueryLogRetention:
    def __init__(self, pool: ConnectionPool, max_age_days: float, *, batch_size: int = 10000,
                 statement_timeout_ms: int = 15000):
        self.pool = pool
        self.max_age_days = max_age_days
        self.batch_size = batch_size
        self.statement_timeout_ms = statement_timeout_ms
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Make a running deletion end after its current batch."""
        self._stopping.set()

    def run_once(self) -> RetentionRun:
        with self.pool.connection() as conn:
            if not conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]:
                log.info("query_log retention: another process is running it; skipped")
                return RetentionRun(0, True)
            try:
                deleted = 0
                while True:
                    with conn.transaction():
                        conn.execute("SELECT set_config('statement_timeout', %s, true)",
                                     (f"{self.statement_timeout_ms}ms",))
                        batch = conn.execute(
                            """DELETE FROM query_log WHERE id IN (
                                   SELECT id FROM query_log
                                   WHERE logged_at < now() - make_interval(secs => %s) LIMIT %s)""",
                            (self.max_age_days * 86400, self.batch_size)).rowcount
                    deleted += batch
                    if batch < self.batch_size or self._stopping.is_set():
                        break
                # the rollup's periods that ended before the cutoff: their rows are gone
                conn.execute("DELETE FROM query_log_rollup WHERE period + make_interval(mins => grain_minutes) "
                             "<= now() - make_interval(secs => %s)", (self.max_age_days * 86400,))
                # lost-row tallies count against a window of rows: none is left to count against
                conn.execute("DELETE FROM query_log_losses WHERE minute < now() - make_interval(secs => %s)",
                             (self.max_age_days * 86400,))
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        if deleted:
            log.info("query_log retention: deleted %d rows older than %g days", deleted, self.max_age_days)
        return RetentionRun(deleted, False)
