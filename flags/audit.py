"""The `flag_audit` table: who changed which flag, from what to what, when and why."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from psycopg_pool import ConnectionPool

from flags.store import FlagChange


class FlagAudit:
    def __init__(self, pool: ConnectionPool):
        self.pool = pool

    @contextmanager
    def recording(self, change: FlagChange) -> Iterator[None]:
        """Insert the change's row in a transaction committed when the block ends (FlagStore's audit sink):
        the flag is written inside the block, so a row that cannot be written refuses the change."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO flag_audit (flag, old_value, new_value, actor, reason) "
                "VALUES (%s, %s::jsonb, %s::jsonb, %s, %s)",
                (change.flag, json.dumps(change.old), json.dumps(change.new), change.actor, change.reason),
            )
            yield

    def last_values(self) -> dict[str, object]:
        """Each flag's value after its last audited change (what Redis held, if it lost it)."""
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT DISTINCT ON (flag) flag, new_value FROM flag_audit "
                                "ORDER BY flag, changed_at DESC, id DESC").fetchall()
        return {flag: value for flag, value in rows}

    def recent(self, limit: int = 50, flag: str | None = None) -> list[dict[str, object]]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT flag, old_value, new_value, actor, reason, changed_at FROM flag_audit "
                "WHERE %(flag)s::text IS NULL OR flag = %(flag)s "
                "ORDER BY changed_at DESC, id DESC LIMIT %(limit)s",
                {"flag": flag, "limit": limit},
            ).fetchall()
        return [
            {"flag": r[0], "old": r[1], "new": r[2], "actor": r[3], "reason": r[4],
             "changed_at": r[5].isoformat()}
            for r in rows
        ]
