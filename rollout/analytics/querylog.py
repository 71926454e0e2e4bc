"""The `query_log` writer: a bounded queue filled by the gateway, emptied in batches by one thread.

`record()` runs on the query's thread (or the shadow pool's): it reads the flag
snapshot and puts a tuple on the queue without waiting. A full queue drops the
row and counts it (`rollout_query_log_rows_total{outcome="dropped"}`); a request
never blocks on analytics. The writer thread wakes every `flush_interval_s` (or
when a batch is full) and COPYs what is queued, up to `batch_size` rows per round
trip. Each batch goes to `query_log` and to its per-minute rollup in one transaction
(rollout.analytics.rollup). A database error drops that batch from both (counted as `failed`)
and the writer goes on with the next. Both losses are also tallied per minute into
`query_log_losses` (`rollout.analytics.losses`), where the controller reads whether a stage's
evidence has holes.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from dataclasses import dataclass, field

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from flags import QUERY_ANALYTICS, FlagStore
from rollout.analytics.losses import DATABASE_ERROR, QUEUE_FULL, LossTally
from rollout.analytics.record import COLUMNS, QueryRecord
from rollout.analytics.rollup import write_batch
from rollout.metrics import Metrics

log = logging.getLogger(__name__)

COPY_SQL = f"COPY query_log ({', '.join(COLUMNS)}) FROM STDIN"  # rows loaded around the writer (no rollup)


class QueryText:
    """What of a query's text is kept: always a hash (to group equal queries), the text only if configured.

    The hash is BLAKE2b keyed with QUERY_LOG_HASH_KEY when set, so short queries
    cannot be recovered by hashing guesses without the key.
    """

    def __init__(self, store_text: bool, hash_key: str | None = None):
        self.store_text = store_text
        self.key = hashlib.sha256(hash_key.encode()).digest() if hash_key else b""

    def __call__(self, text: str) -> tuple[str, str | None]:
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16, key=self.key).hexdigest()
        return digest, text if self.store_text else None


@dataclass
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)


class QueryLogWriter:
    def __init__(self, pool: ConnectionPool, flags: FlagStore, metrics: Metrics, *, queue_size: int = 10000,
                 batch_size: int = 500, flush_interval_s: float = 1.0):
        self.pool = pool
        self.flags = flags
        self.metrics = metrics
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._written = metrics.query_log_rows.labels("written")
        self._dropped = metrics.query_log_rows.labels("dropped")
        self._failed = metrics.query_log_rows.labels("failed")
        self.losses = LossTally()

    # -- the request side: never blocks ------------------------------------------------
    def record(self, record: QueryRecord) -> None:
        if not self.flags.snapshot()[QUERY_ANALYTICS]:
            return
        try:
            self._queue.put_nowait(record.row())
        except queue.Full:
            self._dropped.inc()
            self.losses.count(QUEUE_FULL)
            return
        if self._queue.qsize() >= self.batch_size:
            self._wake.set()  # a full batch is waiting: no need to wait for the interval

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> QueryLogWriter:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="query-log-writer", daemon=True)
            self._thread.start()
        return self

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Write every row queued so far; False if that did not happen within `timeout_s`."""
        if self._thread is None or not self._thread.is_alive():
            return self.pending == 0
        marker = _Flush()
        try:
            self._queue.put(marker, timeout=timeout_s)
        except queue.Full:
            return False
        self._wake.set()
        return marker.done.wait(timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued (within `timeout_s`), then stop the thread."""
        if self._thread is None:
            return
        self.flush(timeout_s)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)
        self._thread = None

    # -- the writer thread -------------------------------------------------------------------
    def _run(self) -> None:
        """Sleep until the interval ends, a batch is full or a flush is asked, then drain the queue.

        The thread does not wake for each row (a blocking get per row would cost a thread switch
        and a GIL hand-off per query); the request side only takes the queue's lock.
        """
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            self._drain()
        self._drain()

    def _drain(self) -> None:
        while True:
            batch, markers = [], []
            while len(batch) < self.batch_size and not markers:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                (markers if isinstance(item, _Flush) else batch).append(item)
            self._write(batch)
            if self.losses.pending:  # before a flush returns, so a flushed writer's losses are readable
                self.losses.write(self.pool)
            for marker in markers:
                marker.done.set()
            if not batch and not markers:
                return

    def _write(self, rows: list[tuple]) -> None:
        if not rows:
            return
        try:
            with self.pool.connection() as conn, conn.transaction():
                write_batch(conn, COLUMNS, rows)
        except (psycopg.Error, PoolTimeout) as exc:
            self._failed.inc(len(rows))
            self.losses.count(DATABASE_ERROR, len(rows))
            log.warning("query_log: %d rows lost, the database refused them: %s", len(rows), str(exc).strip())
            return
        self._written.inc(len(rows))
