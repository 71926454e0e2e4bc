"""The `alert_events` table: every alert received and every action taken, newest first."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from rollout.alerts.payloads import Alert

_COLUMNS = ("id, received_at, kind, source, fingerprint, alertname, status, severity, trips, outcome, actions, "
            "actor, detail, labels, annotations, starts_at, ends_at, value, pending")


@dataclass(frozen=True)
class AlertEvent:
    """One row to write."""

    kind: str                 # alert | action
    source: str
    outcome: str
    alert: Alert | None = None
    trips: bool = False
    actions: Sequence[str] = field(default_factory=list)
    actor: str | None = None
    detail: str | None = None
    pending: bool = False


MarkDone = Callable[[int, str, Sequence[str]], None]  # (event id, outcome, actions)


@dataclass(frozen=True)
class PendingAlert:
    id: int
    alert: Alert
    trips: bool


class AlertEventStore:
    def __init__(self, pool: ConnectionPool):
        self.pool = pool

    def record(self, events: Sequence[AlertEvent]) -> list[int]:
        """Write the rows of one delivery in one transaction; return their ids."""
        if not events:
            return []
        with self.pool.connection() as conn, conn.transaction():
            return [self._insert(conn, event) for event in events]

    def recent(self, limit: int = 50, severity: str | None = None, kind: str | None = None) -> list[dict]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM alert_events "
                "WHERE (%(severity)s::text IS NULL OR severity = %(severity)s) "
                "AND (%(kind)s::text IS NULL OR kind = %(kind)s) "
                "ORDER BY received_at DESC, id DESC LIMIT %(limit)s",
                {"severity": severity, "kind": kind, "limit": limit}).fetchall()
        return [_as_json(row) for row in rows]

    def last_alert(self, fingerprint: str) -> tuple[str, datetime | None] | None:
        """(status, starts_at) of the last delivery of this alert, if any."""
        with self.pool.connection() as conn:
            row = conn.execute("SELECT status, starts_at FROM alert_events WHERE kind = 'alert' "
                               "AND fingerprint = %s AND NOT pending ORDER BY id DESC LIMIT 1",
                               (fingerprint,)).fetchone()
        return (row[0], row[1]) if row else None

    def pending(self) -> list[PendingAlert]:
        """Alerts applied on one worker only (Redis was unreachable), oldest first."""
        with self.pool.connection() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM alert_events WHERE pending ORDER BY id").fetchall()
        return [PendingAlert(row[0], _alert(row), row[8]) for row in rows]

    @contextmanager
    def claim_pending(self, limit: int = 100) -> Iterator[tuple[list[PendingAlert], MarkDone]]:
        """Lock pending rows (other workers skip them); `done(id, outcome, actions)` marks one applied.

        Nothing is marked unless the block completes: an error leaves the rows pending.
        """
        with self.pool.connection() as conn, conn.transaction():
            rows = conn.execute(f"SELECT {_COLUMNS} FROM alert_events WHERE pending ORDER BY id "
                                "LIMIT %s FOR UPDATE SKIP LOCKED", (limit,)).fetchall()

            def done(event_id: int, outcome: str, actions: Sequence[str]) -> None:
                conn.execute("UPDATE alert_events SET pending = false, outcome = %s, "
                             "actions = actions || %s WHERE id = %s", (outcome, Jsonb(list(actions)), event_id))

            yield [PendingAlert(row[0], _alert(row), row[8]) for row in rows], done

    @staticmethod
    def _insert(conn: psycopg.Connection, event: AlertEvent) -> int:
        alert = event.alert
        row = conn.execute(
            "INSERT INTO alert_events (kind, source, fingerprint, alertname, status, severity, trips, outcome, "
            "actions, actor, detail, labels, annotations, starts_at, ends_at, value, pending) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (event.kind, event.source, alert and alert.fingerprint, alert and alert.alertname,
             alert and alert.status, alert and alert.severity, event.trips, event.outcome,
             Jsonb(list(event.actions)), event.actor, event.detail, Jsonb(dict(alert.labels) if alert else {}),
             Jsonb(dict(alert.annotations) if alert else {}), alert and alert.starts_at, alert and alert.ends_at,
             alert and alert.value, event.pending)).fetchone()
        return row[0]


def _alert(row) -> Alert:
    return Alert(source=row[3], fingerprint=row[4], alertname=row[5], status=row[6], severity=row[7],
                 labels=row[13], annotations=row[14], starts_at=row[15], ends_at=row[16], value=row[17])


def _as_json(row) -> dict:
    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {"id": row[0], "received_at": when(row[1]), "kind": row[2], "source": row[3], "fingerprint": row[4],
            "alertname": row[5], "status": row[6], "severity": row[7], "trips": row[8], "outcome": row[9],
            "actions": row[10], "actor": row[11], "detail": row[12], "labels": row[13],
            "annotations": row[14], "starts_at": when(row[15]), "ends_at": when(row[16]), "value": row[17],
            "pending": row[18]}
