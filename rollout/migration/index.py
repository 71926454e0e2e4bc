"""A version's HNSW index around bulk loads: drop it before a big load, build it once after.

Inserting into an HNSW graph row by row is the expensive part of loading; pgvector
advises building the index after a bulk load, when the whole graph can be built
in `maintenance_work_mem` with parallel workers. Dropping an index and noting its
definition in `embedding_index_rebuilds` commit together, and so do the rebuild
and the note's removal, so a run killed anywhere leaves either the index or the
note, and the next run (or `migrate setup`) rebuilds it. Both take a transaction
advisory lock per version, so two processes never drop or build at once.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass

import psycopg

from rollout.version_spec import VersionSettings
from rollout.versions import index_definition


@dataclass(frozen=True)
class IndexState:
    indexes: list[str]      # HNSW indexes on the table
    invalid: list[str]      # of those, left invalid (a failed CREATE INDEX CONCURRENTLY)
    awaiting_rebuild: list[str]  # dropped for a bulk load, not rebuilt yet

    @property
    def searchable(self) -> bool:
        return bool(self.indexes) and not self.invalid and not self.awaiting_rebuild


def worker_application_name(version: str) -> str:
    """What every backfill connection of `version` calls itself in pg_stat_activity."""
    return f"rollout-migrate:{version}"


class VectorIndex:
    def __init__(self, version: VersionSettings):
        self.version = version.version
        self.table = version.table
        self.vector_type = version.vector_type

    def state(self, conn: psycopg.Connection) -> IndexState:
        rows = conn.execute("""
            SELECT c.relname, i.indisvalid FROM pg_index i
            JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
            WHERE i.indrelid = to_regclass(%s) AND a.amname = 'hnsw' ORDER BY 1""", (self.table,)).fetchall()
        pending = conn.execute("SELECT index_name FROM embedding_index_rebuilds WHERE version = %s ORDER BY 1",
                               (self.version,)).fetchall()
        return IndexState([r[0] for r in rows], [r[0] for r in rows if not r[1]], [r[0] for r in pending])

    def _lock(self, conn: psycopg.Connection) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"rollout:index:{self.version}",))

    def drop_for_bulk_load(self, conn: psycopg.Connection) -> list[str]:
        """Drop the table's HNSW indexes, noting their definitions; return the names dropped."""
        with conn.transaction():
            self._lock(conn)
            rows = conn.execute("""
                SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i
                JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
                WHERE i.indrelid = to_regclass(%s) AND a.amname = 'hnsw' AND i.indisvalid""",
                                (self.table,)).fetchall()
            for name, definition in rows:
                conn.execute("INSERT INTO embedding_index_rebuilds (version, index_name, definition) "
                             "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING", (self.version, name, definition))
                conn.execute(f'DROP INDEX "{name}"')
        return [name for name, _ in rows]

    def others_loading(self, conn: psycopg.Connection, exclude: Collection[int] = (), *,
                       busy_only: bool = False) -> int:
        """Backfill connections of this version in other sessions (other processes, hosts), leaving out
        this session and the backends in `exclude` (a run's own workers, closed or closing).
        `busy_only`: only those inside a statement or a batch's transaction, not idle ones (which
        include another run's workers that have closed but not yet left pg_stat_activity)."""
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                            "AND pid <> pg_backend_pid() AND NOT pid = ANY(%s) "
                            "AND (NOT %s OR state IS DISTINCT FROM 'idle')",
                            (worker_application_name(self.version), list(exclude), busy_only)).fetchone()[0]

    def ensure(self, conn: psycopg.Connection, *, maintenance_work_mem: str = "1GB",
               maintenance_workers: int = 2) -> float | None:
        """Build what is missing (noted rebuilds, or any HNSW index at all); return the seconds it took.

        One transaction: a kill during the build leaves the note, and the next call builds again.
        """
        with conn.transaction():
            self._lock(conn)
            state = self.state(conn)
            definitions = conn.execute("SELECT index_name, definition FROM embedding_index_rebuilds "
                                       "WHERE version = %s ORDER BY 1", (self.version,)).fetchall()
            if not definitions and state.indexes and not state.invalid:
                return None
            started = time.perf_counter()
            conn.execute("SELECT set_config('maintenance_work_mem', %s, true), "
                         "set_config('max_parallel_maintenance_workers', %s, true), "
                         "set_config('statement_timeout', '0', true)",
                         (maintenance_work_mem, str(maintenance_workers)))
            restore = self._ask_parallel_workers(conn, maintenance_workers)
            for name in state.invalid:
                conn.execute(f'DROP INDEX "{name}"')
            built = False
            for name, definition in definitions:
                if name not in state.indexes or name in state.invalid:
                    conn.execute(definition)
                    built = True
            conn.execute("DELETE FROM embedding_index_rebuilds WHERE version = %s", (self.version,))
            valid = [name for name in state.indexes if name not in state.invalid]
            if not definitions and not valid:
                conn.execute(index_definition(self.table, self.vector_type))
                built = True
            conn.execute(restore)
            return time.perf_counter() - started if built else None

    def _ask_parallel_workers(self, conn: psycopg.Connection, workers: int) -> str:
        """Make the build use `workers` parallel workers; return the statement that undoes it.

        PostgreSQL sizes a parallel index build by the heap's pages, and the vectors live out of
        line (TOAST), so it would plan none; the table's `parallel_workers` asks for them (about
        twice as fast on 2 cores). Set and undone inside the build's transaction.
        """
        previous = conn.execute("SELECT option_value FROM pg_options_to_table("
                                "(SELECT reloptions FROM pg_class WHERE oid = to_regclass(%s))) "
                                "WHERE option_name = 'parallel_workers'", (self.table,)).fetchone()
        conn.execute(f"ALTER TABLE {self.table} SET (parallel_workers = {int(workers)})")
        if previous:
            return f"ALTER TABLE {self.table} SET (parallel_workers = {int(previous[0])})"
        return f"ALTER TABLE {self.table} RESET (parallel_workers)"
