"""The PostgreSQL connection pool, each connection prepared for vector search.

Following pgvector-python: `register_vector` on every pooled connection (via the
pool's `configure`), so vectors travel as numpy arrays in binary. Connections are
autocommit: a search is one round trip, with no BEGIN/COMMIT around it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool

from rollout.config import Settings


def pgvector_version(conn: psycopg.Connection) -> tuple[int, ...] | None:
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    return tuple(int(p) for p in row[0].split(".")) if row else None


def open_pool(database_url: str, settings: Settings, *, name: str = "rollout",
              min_size: int | None = None, max_size: int | None = None) -> ConnectionPool:
    """A pool that connects in the background: opening it never blocks or fails."""

    def configure(conn: psycopg.Connection) -> None:
        version = pgvector_version(conn)
        if version is not None:
            register_vector(conn)
            conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(settings.hnsw_ef_search),))
            if version >= (0, 8):  # iterative index scans: a filtered search still returns k rows
                conn.execute("SELECT set_config('hnsw.iterative_scan', 'strict_order', false)")
        conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{settings.search_timeout_ms}ms",))

    return ConnectionPool(
        database_url,
        min_size=settings.db_pool_min_size if min_size is None else min_size,
        max_size=settings.db_pool_max_size if max_size is None else max_size,
        kwargs={"autocommit": True},
        configure=configure,
        name=name,
        timeout=10.0,
        open=True,
    )


def one_row(row: tuple[Any, ...] | None, what: str) -> tuple[Any, ...]:
    """The row a statement always yields (an aggregate, a row inserted just before, INSERT ... RETURNING)."""
    if row is None:
        raise RuntimeError(f"{what}: the statement returned no row")
    return row


@contextmanager
def read_snapshot(pool: ConnectionPool, statement_timeout_ms: int) -> Iterator[psycopg.Connection]:
    """A read-only REPEATABLE READ transaction: every query in it sees the same rows, each bounded in time
    (analytics reads run longer than the pool's search timeout allows)."""
    with pool.connection() as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{statement_timeout_ms}ms",))
        yield conn
