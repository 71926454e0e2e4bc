"""A/A: split real users of one version at random into two arms and judge them as a rollout would.

Both arms are the same version, so every rollback (or pause for a person) the gates decide is a
false decision. Each split draws the users' arms with its own seed (sticky per user, as routing
is), then the stage is looked at `looks` times, evenly spread over the window: each look builds
both arms' evidence from the rows before it and `rollout.controller.replay.rejudge` judges it with
the same gates as the controller. The false-decision rate is the share of splits with any false
decision; an absolute threshold the version itself misses (its error rate above the limit, say)
fails both arms alike, so the report names the gates that decided. The relevance sources are not
split by user, so `gates_for` leaves the quality gate out when the deployment judges quality by
relevance (ROLLOUT_QUALITY_GATE=relevance), rather than judge an absolute similarity floor the
controller does not use.

The rows are the controller's kind (routed, not forced) and counted by the same SQL (`ROUTED`,
`FAILED`); with more than `max_rows` rows in the window a uniform random sample is kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from psycopg_pool import ConnectionPool

from rollout.analytics.figures import FAILED, ROUTED
from rollout.controller.evidence import Evidence, VersionEvidence
from rollout.controller.gates.registry import GATES, Gate
from rollout.controller.plan import RolloutPlan
from rollout.controller.replay import Judged, Look, is_false_decision, rejudge
from rollout.database import read_snapshot

_COUNT = f"""
    SELECT count(*) FROM query_log
    WHERE logged_at >= %(since)s AND logged_at < %(until)s AND {ROUTED} AND routed_version = %(version)s"""

_ROWS = f"""
    SELECT extract(epoch FROM logged_at), coalesce(user_hash, request_id), latency_ms, {FAILED},
           served_version IS NOT NULL, CASE WHEN served_version = routed_version THEN top_similarity END, overlap
    FROM query_log
    WHERE logged_at >= %(since)s AND logged_at < %(until)s AND {ROUTED} AND routed_version = %(version)s
      AND random() < %(keep)s
    ORDER BY logged_at"""


@dataclass(frozen=True, eq=False)
class Rows:
    """One version's routed rows in a window, in time order, as arrays."""

    since: float
    until: float
    at: np.ndarray            # epoch seconds
    user: np.ndarray          # user index (0..users-1)
    latency_s: np.ndarray     # nan where nothing answered
    failed: np.ndarray        # bool
    similarity: np.ndarray    # nan where the routed version did not answer itself
    overlap: np.ndarray       # nan without a shadow comparison
    sampled_share: float = 1.0

    @property
    def users(self) -> int:
        return int(self.user.max()) + 1 if len(self.user) else 0


def read_rows(pool: ConnectionPool, version: str, since: datetime, until: datetime, *, max_rows: int,
              statement_timeout_ms: int) -> Rows:
    params: dict[str, Any] = {"since": since, "until": until, "version": version}
    with read_snapshot(pool, statement_timeout_ms) as conn:
        (available,) = conn.execute(_COUNT, params).fetchone() or (0,)
        keep = 1.0 if available <= max_rows else max_rows / available
        fetched = conn.execute(_ROWS, {**params, "keep": keep}).fetchall()
    return rows_of(fetched, since.timestamp(), until.timestamp(), keep)


def rows_of(fetched: list[tuple[Any, ...]], since: float, until: float, sampled_share: float = 1.0) -> Rows:
    """Rows from (epoch, user key, latency ms, failed, answered, similarity, overlap) tuples in time order."""
    at = np.array([float(r[0]) for r in fetched], dtype=float)
    _, user = np.unique(np.array([str(r[1]) for r in fetched], dtype=object), return_inverse=True)
    latency = np.array([r[2] / 1000 if r[4] else np.nan for r in fetched], dtype=float)
    failed = np.array([bool(r[3]) for r in fetched], dtype=bool)
    similarity = np.array([np.nan if r[5] is None else float(r[5]) for r in fetched], dtype=float)
    overlap = np.array([np.nan if r[6] is None else float(r[6]) for r in fetched], dtype=float)
    return Rows(since, until, at, np.asarray(user, dtype=int).reshape(-1), latency, failed, similarity, overlap,
                sampled_share)


def _arm(rows: Rows, mask: np.ndarray, first_seen: np.ndarray, users_in_arm: np.ndarray, cut: float,
         critical_since: float) -> VersionEvidence:
    latency, similarity = rows.latency_s[mask], rows.similarity[mask]
    return VersionEvidence(
        requests=int(mask.sum()), errors=int(rows.failed[mask].sum()),
        critical_errors=int((np.isnan(rows.latency_s) & mask & (rows.at >= critical_since)).sum()),
        latencies_s=latency[~np.isnan(latency)], top_similarities=similarity[~np.isnan(similarity)],
        assigned=int(((first_seen < cut) & users_in_arm).sum()))


def split_looks(rows: Rows, plan: RolloutPlan, seed: int, looks: int, label: str = "") -> Iterator[Look]:
    """The looks of one random split: arm A as the baseline, arm B as the candidate, at a 50 % target."""
    in_b = np.random.default_rng(seed).random(rows.users) < 0.5
    first_seen = np.full(rows.users, np.inf)
    np.minimum.at(first_seen, rows.user, rows.at)
    arm_b = in_b[rows.user]
    for j in range(1, looks + 1):
        cut = rows.since + (rows.until - rows.since) * j / looks
        before = rows.at < cut
        critical_since = cut - plan.critical_window_s
        overlaps = rows.overlap[before]
        evidence = Evidence(
            percentage=50.0, window_started_at=rows.since, evaluated_at=cut,
            v1=_arm(rows, before & ~arm_b, first_seen, ~in_b, cut, critical_since),
            v2=_arm(rows, before & arm_b, first_seen, in_b, cut, critical_since),
            shadow_overlaps=overlaps[~np.isnan(overlaps)], users_seen=int((first_seen < cut).sum()),
            rows_logged=int(before.sum()))
        yield Look(f"{label}look {j}/{looks}", evidence, plan)


@dataclass
class SplitOutcome:
    seed: int
    looks: int = 0
    false_looks: int = 0
    first_false: Judged | None = None
    deciding_gates: Counter[str] = field(default_factory=Counter)

    @property
    def false_decision(self) -> bool:
        return self.first_false is not None


@dataclass
class AAReport:
    version: str
    rows: int
    users: int
    sampled_share: float
    splits: list[SplitOutcome]

    @property
    def false_decision_rate(self) -> float:
        return sum(s.false_decision for s in self.splits) / len(self.splits) if self.splits else 0.0

    @property
    def false_look_rate(self) -> float:
        looks = sum(s.looks for s in self.splits)
        return sum(s.false_looks for s in self.splits) / looks if looks else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "rows": self.rows, "users": self.users, "sampled_share": self.sampled_share,
                "splits": len(self.splits), "false_decision_rate": self.false_decision_rate,
                "false_look_rate": self.false_look_rate,
                "per_split": [{"seed": s.seed, "looks": s.looks, "false_looks": s.false_looks,
                               "first_false": s.first_false.to_dict() if s.first_false else None,
                               "deciding_gates": dict(s.deciding_gates)} for s in self.splits]}


def gates_for(quality_gate: str, gates: tuple[Gate, ...] = GATES) -> tuple[Gate, ...]:
    """The gates an A/A split is judged by: the controller's, less the quality gates it does not run."""
    left_out = {"relevance"} | ({"quality"} if quality_gate == "relevance" else set())
    return tuple(gate for gate in gates if gate.name not in left_out)


def run_aa(rows: Rows, version: str, plan: RolloutPlan, *, splits: int, looks: int, seed: int = 0,
           gates: tuple[Gate, ...] = GATES) -> AAReport:
    """`splits` random splits of `rows`' users, each judged at `looks` looks by `gates` under `plan`."""
    outcomes = []
    for n in range(splits):
        outcome = SplitOutcome(seed + n)
        for judged in rejudge(split_looks(rows, plan, seed + n, looks, f"split {n + 1} "), gates):
            outcome.looks += 1
            if is_false_decision(judged.verdict.outcome):
                outcome.false_looks += 1
                outcome.first_false = outcome.first_false or judged
                outcome.deciding_gates.update(g.name for g in judged.verdict.deciding())
        outcomes.append(outcome)
    return AAReport(version, len(rows.at), rows.users, rows.sampled_share, outcomes)
