"""The rollout's durable state (`rollout_state`, one row) and its history (`rollout_decisions`).

Every change runs inside `locked()`: a transaction holding the state row FOR UPDATE, so
the controller and people's commands (any worker, host or CLI) apply one after another,
each on the state the previous one left. The state lives only here, so a controller that
is killed resumes at the same stage with the same stage start.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from rollout.controller.state import RolloutState, Status, Transition
from rollout.database import one_row
from rollout.moments import epoch, iso, moment

_ENSURE = "INSERT INTO rollout_state (id) VALUES (1) ON CONFLICT (id) DO NOTHING"
_STATE = """SELECT percentage, status, stage_started_at, reason, last_evaluated_at, next_evaluation_at
            FROM rollout_state WHERE id = 1"""
_DECISION_COLUMNS = ("id, decided_at, kind, action, actor, controller, reason, stage, percentage_before, "
                     "percentage_after, status_before, status_after, window_started_at, verdict, transition, evidence, "
                     "plan, flag_changes, error, notification")

Row = dict[str, Any]   # a decision or evaluation as JSON-ready columns (what the API and CLI show)


@dataclass(frozen=True)
class StoredState:
    state: RolloutState
    last_evaluated_at: float | None = None
    next_evaluation_at: float | None = None


@dataclass
class DecisionRecord:
    """One row of `rollout_decisions`."""

    kind: str                       # evaluation | command | flag_change
    actor: str
    transition: Transition
    plan: Row
    controller: str | None = None   # evaluations: the identity of the controller process
    stage: int | None = None
    verdict: Row | None = None
    evidence: Row | None = None
    flag_changes: list[str] = field(default_factory=list)
    error: str | None = None
    notification: Row | None = None

    @property
    def action(self) -> str:
        return self.transition.action

    @property
    def reason(self) -> str:
        return self.transition.reason


class RolloutStore:
    def __init__(self, pool: ConnectionPool):
        self.pool = pool

    # -- state ---------------------------------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[tuple[psycopg.Connection, StoredState]]:
        """The state, locked until the block ends (committed on success, rolled back on error)."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(_ENSURE)
            yield conn, _stored(one_row(conn.execute(_STATE + " FOR UPDATE").fetchone(), "the rollout state"))

    def read(self) -> StoredState:
        with self.pool.connection() as conn:
            row = conn.execute(_STATE).fetchone()
        return _stored(row) if row else StoredState(RolloutState())

    @staticmethod
    def save(conn: psycopg.Connection, stored: StoredState) -> None:
        state = stored.state
        conn.execute(
            """UPDATE rollout_state SET percentage = %s, status = %s, stage_started_at = %s, reason = %s,
                   last_evaluated_at = %s, next_evaluation_at = %s, updated_at = now()
               WHERE id = 1""",
            (state.percentage, state.status.value, moment(state.stage_started_at), state.reason,
             moment(stored.last_evaluated_at), moment(stored.next_evaluation_at)))

    # -- decisions -------------------------------------------------------------------------
    @staticmethod
    def record(conn: psycopg.Connection, decision: DecisionRecord) -> tuple[int, datetime]:
        """Insert the decision; its id and time."""
        t = decision.transition
        row = conn.execute(
            """INSERT INTO rollout_decisions (kind, action, actor, controller, reason, stage, percentage_before,
                   percentage_after, status_before, status_after, window_started_at, verdict, transition, evidence,
                   plan, flag_changes, error, notification)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               RETURNING id, decided_at""",
            (decision.kind, decision.action, decision.actor, decision.controller, decision.reason, decision.stage,
             t.before.percentage, t.after.percentage, t.before.status.value, t.after.status.value,
             moment(t.before.stage_started_at),
             _json(decision.verdict), Jsonb(t.to_dict()), _json(decision.evidence), Jsonb(decision.plan),
             Jsonb(decision.flag_changes), decision.error, _json(decision.notification))).fetchone()
        decision_id, decided_at = one_row(row, "recording a decision")
        return decision_id, decided_at

    def set_notification(self, decision_id: int, notification: Mapping[str, object]) -> None:
        with self.pool.connection() as conn:
            conn.execute("UPDATE rollout_decisions SET notification = %s WHERE id = %s",
                         (Jsonb(notification), decision_id))

    def undelivered(self, older_than_s: float, limit: int = 20) -> list[Row]:
        """Decisions whose notification is still `pending` after `older_than_s`, oldest first, in full."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {_DECISION_COLUMNS} FROM rollout_decisions "
                "WHERE notification->>'status' = 'pending' AND decided_at < now() - make_interval(secs => %s) "
                "ORDER BY id LIMIT %s", (older_than_s, limit)).fetchall()
        return [_decision(row, True) for row in rows]

    def decisions(self, limit: int = 20, *, kinds: Sequence[str] | None = None, details: bool = False) -> list[Row]:
        """The latest decisions, newest first (`details`: with verdict, evidence and plan)."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {_DECISION_COLUMNS} FROM rollout_decisions "
                "WHERE %(kinds)s::text[] IS NULL OR kind = ANY(%(kinds)s) "
                "ORDER BY decided_at DESC, id DESC LIMIT %(limit)s",
                {"kinds": list(kinds) if kinds else None, "limit": limit}).fetchall()
        return [_decision(row, details) for row in rows]

    def gate_history(self, since: datetime, step: timedelta) -> list[Row]:
        """The evaluations since `since`, the latest of each `step`, oldest first: verdict and gates (values,
        thresholds)."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT DISTINCT ON (date_bin(%(step)s, decided_at, %(since)s)) "
                "       id, decided_at, action, percentage_before, verdict->'gates' "
                "FROM rollout_decisions WHERE kind = 'evaluation' AND decided_at >= %(since)s "
                "AND verdict IS NOT NULL "
                "ORDER BY date_bin(%(step)s, decided_at, %(since)s), decided_at DESC, id DESC",
                {"since": since, "step": step}).fetchall()
        return [{"id": decision_id, "decided_at": decided_at.isoformat(), "action": action,
                 "percentage": percentage, "gates": gates or []}
                for decision_id, decided_at, action, percentage, gates in rows]

    def decision(self, decision_id: int) -> Row | None:
        with self.pool.connection() as conn:
            row = conn.execute(f"SELECT {_DECISION_COLUMNS} FROM rollout_decisions WHERE id = %s",
                               (decision_id,)).fetchone()
        return _decision(row, True) if row else None

    @staticmethod
    def last_flag_change(conn: psycopg.Connection, flags: Sequence[str]) -> tuple[str, float, object] | None:
        """Who last changed one of `flags` (flag_audit): (actor, when, new value)."""
        row = conn.execute("SELECT actor, changed_at, new_value FROM flag_audit WHERE flag = ANY(%s) "
                           "ORDER BY changed_at DESC, id DESC LIMIT 1", (list(flags),)).fetchone()
        return (row[0], row[1].timestamp(), row[2]) if row else None


def _json(value: Row | None) -> Jsonb | None:
    return Jsonb(value) if value is not None else None


def _stored(row: tuple[Any, ...]) -> StoredState:
    percentage, status, started, reason, evaluated, next_at = row
    return StoredState(RolloutState(percentage=float(percentage), status=Status(status),
                                    stage_started_at=started.timestamp(), reason=reason),
                       epoch(evaluated), epoch(next_at))


def _decision(row: tuple[Any, ...], details: bool) -> Row:
    (decision_id, decided_at, kind, action, actor, controller, reason, stage, before, after, status_before,
     status_after, window, verdict, transition, evidence, plan, flag_changes, error, notification) = row
    decision = {"id": decision_id, "decided_at": decided_at.isoformat(), "kind": kind, "action": action,
                "actor": actor, "controller": controller, "reason": reason, "stage": stage, "percentage_before": before,
                "percentage_after": after, "status_before": status_before, "status_after": status_after,
                "window_started_at": iso(window), "flag_changes": flag_changes, "error": error,
                "notification": notification}
    if verdict is not None:
        decision["gates"] = [{"name": g["name"], "status": g["status"], "reason": g["reason"]}
                             for g in verdict.get("gates", [])]
    if details:
        decision.update(verdict=verdict, transition=transition, evidence=evidence, plan=plan)
    return decision

