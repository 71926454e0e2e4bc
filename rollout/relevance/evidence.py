"""What the relevance gate judges, read from the relevance tables for one stage's window.

Judge verdicts, feedback and probes count from the stage's start (the evidence the
current percentage produced); the golden set is the latest `rollout eval` of the pair,
whenever it ran (it does not depend on traffic).
"""

from __future__ import annotations

from datetime import UTC, datetime

from rollout.controller.gates.relevance import (
    Golden,
    Proportions,
    RelevanceEvidence,
    Verdicts,
)
from rollout.relevance.feedback import EXPLICIT, POSITIVE_GRADE
from rollout.relevance.golden import NDCG_DEPTH, EvalStore

_JUDGE = """
    SELECT category, GROUPING(category), count(*) FILTER (WHERE winner = 'candidate'),
           count(*) FILTER (WHERE winner = 'baseline'), count(*) FILTER (WHERE winner = 'tie')
    FROM relevance_judgements
    WHERE judged_at >= %(since)s AND baseline = %(baseline)s AND candidate = %(candidate)s
    GROUP BY GROUPING SETS ((), (category))"""

_FEEDBACK = """
    SELECT version, category, GROUPING(category),
           count(*) FILTER (WHERE kind = 'relevant' OR (kind = 'grade' AND value >= %(positive)s)), count(*)
    FROM relevance_feedback
    WHERE received_at >= %(since)s AND kind = ANY(%(kinds)s) AND version IN (%(baseline)s, %(candidate)s)
    GROUP BY GROUPING SETS ((version), (version, category))"""

_PROBES = """
    SELECT version, category, GROUPING(category), count(rank), count(*)
    FROM relevance_probes
    WHERE probed_at >= %(since)s AND error IS NULL AND version IN (%(baseline)s, %(candidate)s)
    GROUP BY GROUPING SETS ((version), (version, category))"""


def _proportions(rows, baseline: str, candidate: str) -> dict[str, Proportions]:
    cells: dict[str, dict[str, tuple[int, int]]] = {}
    for version, category, all_categories, successes, trials in rows:
        key = "" if all_categories else (category or "(none)")
        cells.setdefault(key, {})[version] = (successes, trials)
    return {key: Proportions(*by.get(baseline, (0, 0)), *by.get(candidate, (0, 0))) for key, by in cells.items()
            if baseline in by and candidate in by}


class RelevanceCollector:
    def __init__(self, pool, baseline: str, candidate: str):
        self.pool = pool
        self.baseline = baseline
        self.candidate = candidate
        self.evals = EvalStore(pool)

    def collect(self, since: float) -> RelevanceEvidence:
        params = {"since": datetime.fromtimestamp(since, UTC), "baseline": self.baseline,
                  "candidate": self.candidate, "positive": POSITIVE_GRADE, "kinds": list(EXPLICIT)}
        with self.pool.connection() as conn:
            judged = conn.execute(_JUDGE, params).fetchall()
            feedback = conn.execute(_FEEDBACK, params).fetchall()
            probes = conn.execute(_PROBES, params).fetchall()
        verdicts = {("" if total else (category or "(none)")): Verdicts(wins, losses, ties)
                    for category, total, wins, losses, ties in judged if wins + losses + ties}
        golden = None
        latest = self.evals.latest(self.baseline, self.candidate)
        if latest is not None:
            diff = latest["report"]["difference"][f"ndcg@{NDCG_DEPTH}"]
            golden = Golden(diff["mean"], diff["low"], diff["high"], latest["queries"])
        return RelevanceEvidence(judge=verdicts, feedback=_proportions(feedback, self.baseline, self.candidate),
                                 probes=_proportions(probes, self.baseline, self.candidate), golden=golden)
