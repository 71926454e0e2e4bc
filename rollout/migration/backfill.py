"""Backfill: embed every document a version lacks (or holds stale) and bulk-load the vectors.

A run first queues what is missing (no vector, an older text, another model) in
`embedding_queue`. Workers (threads here; more processes or hosts may run the same
command at once) each loop: in one transaction, claim a batch of queue rows with
`FOR UPDATE SKIP LOCKED`, embed the texts, COPY the vectors in, delete the claimed
rows and move the progress counters, commit. So:

- a crash at any point (SIGKILL included) rolls the open batch back: its rows are
  unlocked and claimed again by the next run, nothing is half-stored;
- two workers never hold the same row, and a row is deleted by the transaction
  that stores its vector, so no document is embedded twice in a run;
- a document the provider refuses is found by splitting its batch, recorded in
  `embedding_failures` with the reason, and skipped (until its text changes).

When a run loads a large share of the table, the version's HNSW index is dropped
first and built once at the end (see `rollout.migration.index`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool

from rollout.documents import embedding_text
from rollout.embedders import (
    Embedder,
    EmbeddingAuthError,
    EmbeddingDimensionError,
    EmbeddingError,
    EmbeddingRejected,
)
from rollout.migration.index import VectorIndex, worker_application_name
from rollout.migration.loader import EmbeddingLoader, EmbeddingRow, storable
from rollout.migration.status import NEEDS_EMBEDDING, MigrationStatus
from rollout.version_spec import VersionSettings

log = logging.getLogger(__name__)

INDEX_POLICIES = ("auto", "keep", "rebuild")
TRANSIENT_LIMIT = 3  # batches in a row that fail after the embedder's own retries: the provider is down
RETRYABLE_DB_ERRORS = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected,
                       psycopg.errors.ForeignKeyViolation)  # a document deleted under the batch: run it again


@dataclass(frozen=True)
class BackfillOptions:
    category: str | None = None
    limit: int | None = None
    batch_size: int = 500
    workers: int = 1
    index: str = "auto"            # auto: drop and rebuild when the run loads >= rebuild_share of the table
    rebuild_share: float = 0.25
    retry_failed: bool = False
    maintenance_work_mem: str = "1GB"
    maintenance_workers: int = 2
    idle_timeout_s: float = 600.0  # a worker silent this long inside a batch is cut off by the server

    def for_embedder(self, batch_size: int, max_attempts: int, timeout_s: float) -> BackfillOptions:
        """These options with the idle timeout an embedder needs: the longest a batch may spend in it is every
        provider call of `batch_size` texts, every attempt timing out and waiting the retry layer's longest
        backoff (20 s), twice over for safety (EMBEDDING_BATCH_SIZE, EMBEDDING_MAX_ATTEMPTS, EMBEDDING_TIMEOUT_S)."""
        calls = math.ceil(self.batch_size / batch_size)
        worst = calls * max_attempts * (timeout_s + 20.0)
        return replace(self, idle_timeout_s=max(600.0, 2 * worst))


@dataclass(frozen=True)
class FailedDocument:
    id: str
    category: str
    reason: str


@dataclass
class BackfillReport:
    version: str
    embedded: int
    seconds: float                       # the whole run, index build included
    load_seconds: float = 0.0            # claiming, embedding and storing only
    failed: list[FailedDocument] = field(default_factory=list)
    skipped: int = 0                     # claimed but already current, or deleted meanwhile
    queued: int = 0                      # in the queue (this run's scope) when the run started
    remaining: int = 0                   # still queued at the end (limit, other workers, errors)
    index_dropped: list[str] = field(default_factory=list)
    index_build_seconds: float | None = None
    texts_embedded: int = 0              # texts sent to the embedder (splitting a refused batch re-sends)
    tokens: int = 0                      # as the provider reported them (0 for the local embedder)
    error: str | None = None             # why the run stopped early

    @property
    def docs_per_s(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    @property
    def load_docs_per_s(self) -> float:
        return self.embedded / self.load_seconds if self.load_seconds > 0 else 0.0

    def as_json(self) -> dict:
        return {
            "version": self.version, "embedded": self.embedded, "failed": len(self.failed),
            "failures": [{"id": f.id, "category": f.category, "reason": f.reason} for f in self.failed[:100]],
            "skipped": self.skipped, "queued": self.queued, "remaining": self.remaining,
            "seconds": round(self.seconds, 3), "load_seconds": round(self.load_seconds, 3),
            "docs_per_s": round(self.docs_per_s, 1), "load_docs_per_s": round(self.load_docs_per_s, 1),
            "index_dropped": self.index_dropped,
            "index_build_seconds": None if self.index_build_seconds is None else round(self.index_build_seconds, 3),
            "texts_embedded": self.texts_embedded, "tokens": self.tokens, "error": self.error,
        }


class BackfillStopped(EmbeddingError):
    """The run cannot go on (the key is refused, the model is unknown, the provider is down)."""


@dataclass(frozen=True)
class _Claimed:
    id: str
    exists: bool
    title: str | None
    content: str | None
    content_hash: str | None
    category: str | None
    current: bool

    @property
    def text(self) -> str:
        return embedding_text(self.title, self.content)


@dataclass
class _BatchOutcome:
    stored: list[_Claimed] = field(default_factory=list)
    failed: list[FailedDocument] = field(default_factory=list)
    skipped: int = 0

    @property
    def finished(self) -> int:
        return len(self.stored) + len(self.failed) + self.skipped


class _Shared:
    """State the worker threads of one run share: the quota left under --limit, totals, the stop signal."""

    def __init__(self, limit: int | None):
        self._lock = threading.Lock()
        self._left = limit
        self.stop = threading.Event()
        self.error: str | None = None
        self.transient_in_a_row = 0
        self.embedded = 0
        self.skipped = 0
        self.failed: list[FailedDocument] = []

    def take(self, wanted: int) -> int:
        with self._lock:
            if self._left is None:
                return wanted
            granted = min(wanted, self._left)
            self._left -= granted
            return granted

    def give_back(self, count: int) -> None:
        with self._lock:
            if self._left is not None:
                self._left += count

    def add(self, outcome: _BatchOutcome) -> None:
        with self._lock:
            self.embedded += len(outcome.stored)
            self.skipped += outcome.skipped
            self.failed.extend(outcome.failed)
            self.transient_in_a_row = 0

    def transient(self) -> bool:
        """Count a batch that failed and stays queued; True when too many failed in a row."""
        with self._lock:
            self.transient_in_a_row += 1
            return self.transient_in_a_row >= TRANSIENT_LIMIT

    def halt(self, error: str) -> None:
        with self._lock:
            if self.error is None:
                self.error = error
        self.stop.set()


class Backfill:
    """Embeds what one version lacks. `backend` is anything with `.settings` (VersionSettings) and
    `.embedder`; pass `embedder=` to embed with another one (the backfill wants document-purpose
    embedders: long timeouts, many attempts, Gemini's RETRIEVAL_DOCUMENT)."""

    def __init__(self, pool: ConnectionPool, backend, batch_size: int = 500, *, embedder: Embedder | None = None,
                 options: BackfillOptions | None = None, progress: Callable[[int], None] | None = None):
        self.pool = pool
        self.version: VersionSettings = backend.settings
        self.embedder = embedder or backend.embedder
        self.options = options or BackfillOptions(batch_size=batch_size)
        if self.options.index not in INDEX_POLICIES:
            raise ValueError(f"index policy must be one of {', '.join(INDEX_POLICIES)}")
        self.table = self.version.table
        self.loader = EmbeddingLoader(self.table, self.version.model)
        self.status = MigrationStatus(self.version)
        self.index = VectorIndex(self.version)
        self.progress = progress
        self._progress_lock = threading.Lock()
        self._worker_pids: set[int] = set()  # this run's own workers' backends (see _finish_index)
        self._params = {"version": self.version.version, "model": self.version.model,
                        "category": self.options.category, "retry": self.options.retry_failed}

    # -- connections ----------------------------------------------------------------------
    def connect(self, *, worker: bool = False) -> psycopg.Connection:
        """A connection of its own (not the pool's): no statement timeout, named for pg_stat_activity
        (workers by one name, so a finishing run sees who still loads), and cut off by the server if
        it sits inside a transaction too long (a vanished host)."""
        name = worker_application_name(self.version.version)
        conn = psycopg.connect(self.pool.conninfo, autocommit=True,
                               application_name=name if worker else name.replace("migrate", "migrate-control"))
        register_vector(conn)
        # synchronous_commit off: a batch's commit does not wait for its WAL to reach the disk. A server
        # crash may then lose the last batches committed, queue deletions and status counts with their
        # vectors (one transaction), so the next run embeds them again: nothing is half-stored.
        conn.execute("SELECT set_config('statement_timeout', '0', false), "
                     "set_config('idle_in_transaction_session_timeout', %s, false), "
                     "set_config('synchronous_commit', 'off', false)",
                     (f"{int(self.options.idle_timeout_s * 1000)}ms",))
        if worker:
            self._worker_pids.add(conn.info.backend_pid)
        return conn

    # -- what is left ----------------------------------------------------------------------
    def pending(self) -> int:
        """Documents this version still has to embed (in this run's category, failures excluded)."""
        with self.pool.connection() as conn:
            return conn.execute(f"""
                SELECT count(*) FROM documents d
                LEFT JOIN {self.table} e ON e.document_id = d.id
                LEFT JOIN embedding_failures f ON f.version = %(version)s AND f.document_id = d.id
                WHERE {NEEDS_EMBEDDING}
                  AND (%(retry)s OR f.document_id IS NULL OR f.content_hash <> d.content_hash)
                  AND (%(category)s::text IS NULL OR d.category = %(category)s)""", self._params).fetchone()[0]

    def enqueue(self, conn: psycopg.Connection) -> int:
        """Queue what needs embedding (idempotent); return the queue's size in this run's scope."""
        conn.execute(f"""
            INSERT INTO embedding_queue (version, document_id)
            SELECT %(version)s, d.id FROM documents d
            LEFT JOIN {self.table} e ON e.document_id = d.id
            LEFT JOIN embedding_failures f ON f.version = %(version)s AND f.document_id = d.id
            WHERE {NEEDS_EMBEDDING}
              AND (%(retry)s OR f.document_id IS NULL OR f.content_hash <> d.content_hash)
              AND (%(category)s::text IS NULL OR d.category = %(category)s)
            ON CONFLICT DO NOTHING""", self._params)
        return self.queued(conn)

    def queued(self, conn: psycopg.Connection) -> int:
        return conn.execute("""
            SELECT count(*) FROM embedding_queue q JOIN documents d ON d.id = q.document_id
            WHERE q.version = %(version)s AND (%(category)s::text IS NULL OR d.category = %(category)s)""",
                            self._params).fetchone()[0]

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> BackfillReport:
        started = time.perf_counter()
        usage_before = self.embedder.usage.snapshot()
        report = BackfillReport(self.version.version, 0, 0.0)
        with self.connect() as conn:
            report.queued = self.enqueue(conn)
            report.index_dropped = self._maybe_drop_index(conn, report.queued)
            self.status.begin_run(conn, self.options.category, joining=self.index.others_loading(conn) > 0)
        shared = _Shared(self.options.limit)
        load_started = time.perf_counter()
        try:
            self._run_workers(shared)
        finally:
            report.load_seconds = time.perf_counter() - load_started
            report.embedded, report.skipped, report.failed = shared.embedded, shared.skipped, shared.failed
            report.error = shared.error
            with self.connect() as conn:
                # Busy ones only: closing a run early is corrected by the last one; never closing it is not.
                others = self.index.others_loading(conn, exclude=self._worker_pids, busy_only=True)
                self.status.finish_run(conn, self.options.category, shared.error, others_loading=others > 0)
                report.remaining = self.queued(conn)
                report.index_build_seconds = self._finish_index(conn)
            usage = self.embedder.usage.snapshot()
            report.texts_embedded = usage.texts - usage_before.texts
            report.tokens = usage.tokens - usage_before.tokens
            report.seconds = time.perf_counter() - started
        return report

    def _run_workers(self, shared: _Shared) -> None:
        workers = max(1, self.options.workers)
        with ThreadPoolExecutor(workers, thread_name_prefix=f"backfill-{self.version.version}") as pool:
            futures = [pool.submit(self._worker, shared) for _ in range(workers)]
            try:
                while True:
                    done, running = wait(futures, timeout=0.5)
                    if not running:
                        break
            except KeyboardInterrupt:
                shared.halt("interrupted: the batches in flight were committed, the rest stays queued")
                wait(futures)
            for future in futures:
                future.result()  # a worker's unexpected exception ends the run here

    def _worker(self, shared: _Shared) -> None:
        with self.connect(worker=True) as conn:
            while not shared.stop.is_set():
                wanted = shared.take(self.options.batch_size)
                if wanted == 0:
                    return
                try:
                    with conn.transaction():
                        batch = self._claim(conn, wanted)
                        shared.give_back(wanted - len(batch))
                        if not batch:
                            return  # nothing left that another worker does not hold
                        outcome = self._process(conn, batch)
                except (EmbeddingAuthError, EmbeddingDimensionError, BackfillStopped) as exc:
                    shared.give_back(wanted)
                    self._stop(conn, shared, str(exc))
                    return
                except EmbeddingError as exc:  # failed after the embedder's retries: the batch stays queued
                    shared.give_back(wanted)
                    log.warning("%s: a batch failed and stays queued: %s", self.version.version, exc)
                    if shared.transient():
                        self._stop(conn, shared, f"the provider keeps failing ({exc}); run again later")
                        return
                    self.status.record_error(conn, self.options.category, str(exc))
                    continue
                except RETRYABLE_DB_ERRORS as exc:
                    shared.give_back(wanted)
                    log.info("%s: a batch met a concurrent change and is run again: %s", self.version.version, exc)
                    if shared.transient():
                        self._stop(conn, shared, f"batches keep failing in the database ({exc})")
                        return
                    continue
                except BaseException:
                    shared.halt("a worker failed; see the log")
                    raise
                shared.add(outcome)
                if self.progress is not None:
                    with self._progress_lock:
                        self.progress(outcome.finished)

    def _stop(self, conn: psycopg.Connection, shared: _Shared, message: str) -> None:
        shared.halt(message)
        self.status.record_error(conn, self.options.category, message)

    def _claim(self, conn: psycopg.Connection, count: int) -> list[_Claimed]:
        # Lock queue rows first (by the queue's primary key), then read their documents: without a
        # category the documents are not needed to choose, and the join stays on `count` rows.
        by_category = ("JOIN documents d ON d.id = q.document_id AND d.category = %(category)s"
                       if self.options.category is not None else "")
        rows = conn.execute(f"""
            WITH claimed AS (
                SELECT q.document_id FROM embedding_queue q {by_category}
                WHERE q.version = %(version)s
                ORDER BY q.document_id LIMIT %(count)s
                FOR UPDATE OF q SKIP LOCKED)
            SELECT c.document_id, d.id IS NOT NULL, d.title, d.content, d.content_hash, d.category,
                   coalesce(NOT {NEEDS_EMBEDDING}, false)
            FROM claimed c
            LEFT JOIN documents d ON d.id = c.document_id
            LEFT JOIN {self.table} e ON e.document_id = c.document_id""",
                            {**self._params, "count": count}).fetchall()
        return [_Claimed(*row) for row in rows]

    def _process(self, conn: psycopg.Connection, batch: list[_Claimed]) -> _BatchOutcome:
        outcome = _BatchOutcome()
        todo = [c for c in batch if c.exists and not c.current]
        outcome.skipped = len(batch) - len(todo)
        vectors, failures = self._embed(todo)
        rows = [EmbeddingRow(c.id, vector, c.content_hash) for c, vector in vectors]
        stored_ids = set(self.loader.store(conn, rows))
        outcome.stored = [c for c, _ in vectors if c.id in stored_ids]
        outcome.failed = [FailedDocument(c.id, c.category, reason) for c, reason in failures]
        if failures:
            conn.execute("""
                INSERT INTO embedding_failures (version, document_id, content_hash, reason)
                SELECT %(version)s, f.id, f.hash, f.reason
                FROM unnest(%(ids)s::text[], %(hashes)s::text[], %(reasons)s::text[]) AS f(id, hash, reason)
                JOIN documents d ON d.id = f.id
                ON CONFLICT (version, document_id) DO UPDATE SET
                    content_hash = EXCLUDED.content_hash, reason = EXCLUDED.reason, failed_at = now()""",
                         {"version": self.version.version, "ids": [c.id for c, _ in failures],
                          "hashes": [c.content_hash for c, _ in failures],
                          "reasons": [reason[:2000] for _, reason in failures]})
        if stored_ids:
            conn.execute("DELETE FROM embedding_failures WHERE version = %s AND document_id = ANY(%s)",
                         (self.version.version, list(stored_ids)))
        # Rows embedded from a text that changed meanwhile stay queued: this run claims them again.
        finished = [c.id for c in batch if not c.exists or c.current or c.id in stored_ids]
        finished += [c.id for c, _ in failures]
        conn.execute("DELETE FROM embedding_queue WHERE version = %s AND document_id = ANY(%s)",
                     (self.version.version, finished))
        self.status.record_batch(conn, Counter(c.category for c in outcome.stored),
                                 Counter(f.category for f in outcome.failed),
                                 outcome.failed[-1].reason if outcome.failed else None)
        return outcome

    def _embed(self, docs: list[_Claimed]) -> tuple[list[tuple[_Claimed, np.ndarray]], list[tuple[_Claimed, str]]]:
        """Vectors for `docs`, and the documents refused with the reason. A refused batch is split in
        halves until the refused documents are alone (the cloud APIs refuse a request as a whole)."""
        if not docs:
            return [], []
        try:
            vectors = self.embedder.embed([c.text for c in docs])
        except EmbeddingRejected as exc:
            if exc.status == 404:  # the model (or route) does not exist: no document is to blame
                raise BackfillStopped(str(exc), status=404) from None
            if len(docs) == 1:
                return [], [(docs[0], str(exc))]
            middle = len(docs) // 2
            left, right = self._embed(docs[:middle]), self._embed(docs[middle:])
            return left[0] + right[0], left[1] + right[1]
        usable = storable(vectors)
        good = [(c, vectors[i]) for i, c in enumerate(docs) if usable[i]]
        bad = [(c, "the embedder returned a vector with NaN, infinite or only zero values")
               for i, c in enumerate(docs) if not usable[i]]
        return good, bad

    # -- the index around the load ---------------------------------------------------------
    def _maybe_drop_index(self, conn: psycopg.Connection, queued: int) -> list[str]:
        to_load = queued if self.options.limit is None else min(queued, self.options.limit)
        total = conn.execute("SELECT count(*) FROM documents").fetchone()[0]
        if not rebuilds_index(self.options, to_load, total):
            return []
        dropped = self.index.drop_for_bulk_load(conn)
        if dropped:
            log.info("%s: dropped %s for the bulk load of %d documents; built again at the end",
                     self.version.version, ", ".join(dropped), to_load)
        return dropped

    def _finish_index(self, conn: psycopg.Connection) -> float | None:
        """Build what this or an earlier run dropped, unless other workers of this version still load."""
        if self.index.state(conn).searchable:
            return None
        # A closed worker's backend lingers in pg_stat_activity for a moment: not another loader.
        others = self.index.others_loading(conn, exclude=self._worker_pids)
        if others:
            log.info("%s: %d other backfill connection(s) still loading; the last one builds the index",
                     self.version.version, others)
            return None
        return self.index.ensure(conn, maintenance_work_mem=self.options.maintenance_work_mem,
                                 maintenance_workers=self.options.maintenance_workers)


def rebuilds_index(options: BackfillOptions, to_load: int, total: int) -> bool:
    """Whether a run loading `to_load` of `total` documents drops the HNSW index and builds it after.

    Measured on 2 cores (768-d): inserting into the graph costs 1 ms a row and more as it grows, a
    build from scratch 0.2 to 0.5 ms a row of the whole table, so a rebuild pays from about a quarter.
    """
    if options.index == "keep" or to_load == 0:
        return False
    return options.index == "rebuild" or (total > 0 and to_load / total >= options.rebuild_share)


def backfill_for(runtime, version: str, options: BackfillOptions | None = None,
                 progress: Callable[[int], None] | None = None) -> Backfill:
    """A Backfill of `version` on the runtime's database, with the runtime's document-purpose embedder and,
    by default, its configured options (`Runtime.document_embedder`, `Runtime.backfill_options`)."""
    return Backfill(runtime.pool, runtime.backends[version],
                    embedder=runtime.document_embedder(runtime.version(version)),
                    options=options or runtime.backfill_options(), progress=progress)
