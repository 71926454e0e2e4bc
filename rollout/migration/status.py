"""How far each version is: live counts from the tables, and the run history in embedding_migration_status.

A document counts as *done* for a version when that version holds a vector of its
current text (content hash) made by the version's configured model; *embedded*
(what coverage uses) only asks for the model: a vector of an older text still
finds its document, a vector of another model finds nothing sensible.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime

import psycopg

from rollout.version_spec import VersionSettings

# A row of `documents` that this version must (re-)embed: no vector, an older text, or another model.
NEEDS_EMBEDDING = "(e.document_id IS NULL OR e.content_hash <> d.content_hash OR e.model <> %(model)s)"


@dataclass(frozen=True)
class CategoryCounts:
    category: str
    total: int      # documents
    embedded: int   # with a vector of the configured model (any text)
    done: int       # with a vector of the configured model and the current text
    failed: int     # refused by the provider for the current text, still without a current vector

    @property
    def pending(self) -> int:
        return self.total - self.done - self.failed


@dataclass(frozen=True)
class RunInfo:
    """The latest run of one (version, category), as stored."""

    category: str
    embedded_in_run: int
    rate: float | None
    started_at: datetime | None
    finished_at: datetime | None
    last_error: str | None

    def as_json(self) -> dict:
        data = asdict(self)
        for key in ("started_at", "finished_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


def table_exists(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]


def category_counts(conn: psycopg.Connection, version: VersionSettings,
                    category: str | None = None) -> list[CategoryCounts]:
    """Exact counts per category (one scan of documents joined to the version's table)."""
    if not table_exists(conn, version.table):
        rows = conn.execute("SELECT category, count(*) FROM documents "
                            "WHERE %(category)s::text IS NULL OR category = %(category)s GROUP BY 1 ORDER BY 1",
                            {"category": category}).fetchall()
        return [CategoryCounts(r[0], r[1], 0, 0, 0) for r in rows]
    rows = conn.execute(f"""
        SELECT d.category, count(*),
               count(*) FILTER (WHERE e.model = %(model)s),
               count(*) FILTER (WHERE NOT {NEEDS_EMBEDDING}),
               count(*) FILTER (WHERE {NEEDS_EMBEDDING} AND f.content_hash = d.content_hash)
        FROM documents d
        LEFT JOIN {version.table} e ON e.document_id = d.id
        LEFT JOIN embedding_failures f ON f.version = %(version)s AND f.document_id = d.id
        WHERE %(category)s::text IS NULL OR d.category = %(category)s
        GROUP BY d.category ORDER BY d.category""",
                        {"model": version.model, "version": version.version, "category": category}).fetchall()
    return [CategoryCounts(*row) for row in rows]


class MigrationStatus:
    """The rows of embedding_migration_status for one version."""

    def __init__(self, version: VersionSettings):
        self.version = version

    def start(self, conn: psycopg.Connection) -> list[CategoryCounts]:
        """Mark the migration of this version started (dual-write begins) and count where it stands."""
        conn.execute("INSERT INTO embedding_migrations (version) VALUES (%s) ON CONFLICT DO NOTHING",
                     (self.version.version,))
        return self.recount(conn)

    def recount(self, conn: psycopg.Connection, category: str | None = None) -> list[CategoryCounts]:
        """Store exact total/done/failed per category; drop rows of categories that no longer exist."""
        counts = category_counts(conn, self.version, category)
        with conn.transaction():
            for c in counts:
                conn.execute("""
                    INSERT INTO embedding_migration_status AS s (version, category, total, done, failed)
                    VALUES (%s, %s, %s, %s, %s)
                    ON CONFLICT (version, category) DO UPDATE SET total = EXCLUDED.total, done = EXCLUDED.done,
                        failed = EXCLUDED.failed, updated_at = now()""",
                             (self.version.version, c.category, c.total, c.done, c.failed))
            if category is None:
                conn.execute("DELETE FROM embedding_migration_status WHERE version = %s "
                             "AND NOT (category = ANY(%s))", (self.version.version, [c.category for c in counts]))
        return counts

    def begin_run(self, conn: psycopg.Connection, category: str | None, *, joining: bool = False) -> None:
        """Open a run's figures; `joining` (another backfill of this version is loading) keeps the run
        under way, so its start and counts go on and the two runs' rate is one."""
        self.start(conn)
        if joining:
            return
        conn.execute("""
            UPDATE embedding_migration_status SET started_at = now(), finished_at = NULL, embedded_in_run = 0,
                rate = NULL, last_error = NULL, updated_at = now()
            WHERE version = %(version)s AND (%(category)s::text IS NULL OR category = %(category)s)""",
                     {"version": self.version.version, "category": category})

    def record_batch(self, conn: psycopg.Connection, done: Counter, failed: Counter, error: str | None) -> None:
        """Move the counters by one batch, inside the batch's transaction (categories in a fixed order,
        so two workers never wait on each other's rows in opposite orders)."""
        categories = sorted(set(done) | set(failed))
        if not categories:
            return
        conn.execute("""
            INSERT INTO embedding_migration_status AS s (version, category, done, failed, embedded_in_run,
                                                          last_error, started_at)
            SELECT %(version)s, c.category, c.done, c.failed, c.done, %(error)s, now()
            FROM unnest(%(categories)s::text[], %(done)s::int[], %(failed)s::int[]) AS c(category, done, failed)
            ORDER BY c.category
            ON CONFLICT (version, category) DO UPDATE SET
                done = s.done + EXCLUDED.done, failed = s.failed + EXCLUDED.failed,
                embedded_in_run = s.embedded_in_run + EXCLUDED.embedded_in_run,
                rate = (s.embedded_in_run + EXCLUDED.embedded_in_run)
                       / greatest(extract(epoch FROM clock_timestamp() - coalesce(s.started_at, now())), 0.001),
                last_error = coalesce(EXCLUDED.last_error, s.last_error), updated_at = now()""",
                     {"version": self.version.version, "categories": categories, "error": error,
                      "done": [done[c] for c in categories], "failed": [failed[c] for c in categories]})

    def record_error(self, conn: psycopg.Connection, category: str | None, error: str) -> None:
        conn.execute("UPDATE embedding_migration_status SET last_error = %(error)s, updated_at = now() "
                     "WHERE version = %(version)s AND (%(category)s::text IS NULL OR category = %(category)s)",
                     {"version": self.version.version, "category": category, "error": error[:2000]})

    def finish_run(self, conn: psycopg.Connection, category: str | None, error: str | None = None, *,
                   others_loading: bool = False) -> None:
        """Close a run's figures; with `others_loading` only the counts and the error: the last one closes."""
        self.recount(conn, category)
        conn.execute("""
            UPDATE embedding_migration_status SET
                finished_at = CASE WHEN %(closing)s THEN now() ELSE finished_at END,
                rate = CASE WHEN %(closing)s
                            THEN embedded_in_run / greatest(extract(epoch FROM now() - coalesce(started_at, now())),
                                                            0.001)
                            ELSE rate END,
                last_error = coalesce(%(error)s, last_error), updated_at = now()
            WHERE version = %(version)s AND (%(category)s::text IS NULL OR category = %(category)s)""",
                     {"version": self.version.version, "category": category, "error": error,
                      "closing": not others_loading})

    def runs(self, conn: psycopg.Connection) -> dict[str, RunInfo]:
        rows = conn.execute("SELECT category, embedded_in_run, rate, started_at, finished_at, last_error "
                            "FROM embedding_migration_status WHERE version = %s ORDER BY category",
                            (self.version.version,)).fetchall()
        return {row[0]: RunInfo(*row) for row in rows}

    def last_rate(self, conn: psycopg.Connection, min_documents: int = 1) -> float | None:
        """Documents/s of the latest finished run that embedded at least `min_documents` (its categories
        ran side by side, so their rates add up)."""
        row = conn.execute("""
            SELECT rate FROM (
                SELECT started_at, sum(embedded_in_run) AS embedded, sum(rate) FILTER (WHERE rate > 0) AS rate
                FROM embedding_migration_status
                WHERE version = %(version)s AND finished_at IS NOT NULL
                GROUP BY started_at) runs
            WHERE embedded >= greatest(%(minimum)s, 1) AND rate > 0
            ORDER BY started_at DESC LIMIT 1""",
                           {"version": self.version.version, "minimum": min_documents}).fetchone()
        return float(row[0]) if row and row[0] else None


def migration_started(conn: psycopg.Connection, version: str) -> bool:
    """Whether a migration of `version` was set up or run."""
    return conn.execute("SELECT EXISTS (SELECT 1 FROM embedding_migrations WHERE version = %s)",
                        (version,)).fetchone()[0]
