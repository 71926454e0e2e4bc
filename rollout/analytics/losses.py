"""Lost query_log rows: what each writer could not keep, where the controller can read it.

The writer drops a row when its queue is full and a batch when the database refuses it; the
Prometheus counter says so per process, but the controller judges a stage from PostgreSQL and
must know whether its window has holes. So each writer keeps a small tally per minute and
cause, and its thread adds the tally to `query_log_losses` after each round. When the database
is down the tally waits in memory (bounded: the oldest minutes go first) and is written once it
is back, still dated to the minutes the rows were lost. Nothing here runs on the request path
except `count`, a dictionary update under a lock, and only when a row is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from rollout.identity import process_identity

log = logging.getLogger(__name__)

QUEUE_FULL = "queue_full"
DATABASE_ERROR = "database_error"
CAUSES = (QUEUE_FULL, DATABASE_ERROR)
MAX_MINUTES = 10_080  # a week of minutes kept in memory while the database is unreachable

_ADD = """
    INSERT INTO query_log_losses (writer, minute, cause, rows) VALUES (%s, %s, %s, %s)
    ON CONFLICT (writer, minute, cause) DO UPDATE SET rows = query_log_losses.rows + EXCLUDED.rows"""

_WINDOW = """
    SELECT cause, coalesce(sum(rows), 0) FROM query_log_losses
    WHERE minute >= date_trunc('minute', %(since)s::timestamptz) AND minute < %(until)s
    GROUP BY cause"""


class LossTally:
    """Lost rows per (minute, cause) not yet written to `query_log_losses`."""

    def __init__(self, writer: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.writer = writer or process_identity()  # host:pid, as the table names it
        self._now = clock
        self._lock = threading.Lock()
        self._pending: dict[tuple[int, str], int] = {}

    def count(self, cause: str, rows: int = 1) -> None:
        minute = int(self._now() // 60) * 60
        with self._lock:
            key = (minute, cause)
            self._pending[key] = self._pending.get(key, 0) + rows
            while len(self._pending) > MAX_MINUTES * len(CAUSES):
                del self._pending[min(self._pending)]

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(self._pending.values())

    def write(self, pool: ConnectionPool) -> bool:
        """Add the tally to the table; True when nothing is left to write (kept for the next round on failure)."""
        with self._lock:
            taken, self._pending = self._pending, {}
        if not taken:
            return True
        rows = [(self.writer, datetime.fromtimestamp(minute, UTC), cause, count)
                for (minute, cause), count in sorted(taken.items())]
        try:
            with pool.connection() as conn, conn.cursor() as cursor:
                cursor.executemany(_ADD, rows)
        except (psycopg.Error, PoolTimeout) as exc:
            with self._lock:
                for key, count in taken.items():
                    self._pending[key] = self._pending.get(key, 0) + count
            log.warning("query_log_losses: %d lost rows not recorded yet: %s", sum(taken.values()), str(exc).strip())
            return False
        return True


@dataclass(frozen=True)
class Losses:
    """Rows the writers lost in a window, by cause."""

    queue_full: int = 0
    database_error: int = 0

    @property
    def rows(self) -> int:
        return self.queue_full + self.database_error

    def describe(self) -> str:
        parts = [f"{count:,} {label}" for count, label in ((self.queue_full, "with the writer's queue full"),
                                                           (self.database_error, "refused by the database"))
                 if count]
        return ", ".join(parts) or "none"


def read_losses(conn: psycopg.Connection, since: datetime, until: datetime) -> Losses:
    """The rows lost from `since` (its minute included: a loss is dated to its minute) to `until`."""
    counts: dict[str, int] = dict(conn.execute(_WINDOW, {"since": since, "until": until}).fetchall())
    return Losses(queue_full=int(counts.get(QUEUE_FULL, 0)), database_error=int(counts.get(DATABASE_ERROR, 0)))
