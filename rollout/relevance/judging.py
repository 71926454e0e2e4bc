"""The pairwise judge on shadow disagreements: which version's list served the query better?

Only pairs that disagree are worth a verdict: a shadow pair whose rank-biased overlap is
under RELEVANCE_JUDGE_MAX_RBO is sampled (RELEVANCE_JUDGE_SAMPLE_RATE) into a bounded
queue, and a background thread asks the judge. The judge sees the query and both lists,
anonymised (titles and snippets; no ids, scores or version names), twice, the second time
with the lists swapped: a verdict that follows the position instead of the content splits,
and a split is a tie. A daily cap on tokens and money (spent today, from the stored
verdicts) stops judging until the next UTC day; a verdict for the same query and lists is
taken from the cache (the stored row with the same hash) instead of paid again. A judge
error is counted and the pair is dropped: nothing here runs on a query's path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rollout.backends import Hit
from rollout.metrics import Metrics
from rollout.relevance.judges.base import Judge, JudgeError, Listed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    """One query answered by both versions (a shadow pair)."""

    query: str
    baseline: str
    candidate: str
    baseline_hits: Sequence[Hit]
    candidate_hits: Sequence[Hit]
    rbo: float | None = None
    category: str | None = None
    request_id: str | None = None

    @property
    def key(self) -> str:
        """The cache key: the query and both ranked id lists."""
        material = json.dumps([self.query, [h.id for h in self.baseline_hits], [h.id for h in self.candidate_hits]])
        return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class Budget:
    tokens_per_day: int
    usd_per_day: float
    usd_per_1k_tokens: float

    def cost(self, tokens: int) -> float:
        return tokens / 1000 * self.usd_per_1k_tokens


def combine(forward: str, backward: str) -> str:
    """The verdict of two asks: forward with the baseline as list A, backward with it as list B.

    The same version preferred both times wins; anything else (a split, a tie) is a tie.
    """
    first = {"first": "baseline", "second": "candidate", "tie": "tie"}[forward]
    second = {"first": "candidate", "second": "baseline", "tie": "tie"}[backward]
    return first if first == second else "tie"


def judge_lists(judge: Judge, query: str, baseline_hits: Sequence[Hit],
                candidate_hits: Sequence[Hit]) -> tuple[str, int]:
    """Ask twice, the order swapped: ('baseline' | 'candidate' | 'tie', tokens spent). JudgeError passes up."""
    base, cand = listed(baseline_hits), listed(candidate_hits)
    forward = judge.prefer(query, base, cand)    # A = baseline
    backward = judge.prefer(query, cand, base)   # A = candidate
    return combine(forward.choice, backward.choice), forward.tokens + backward.tokens


def listed(hits: Sequence[Hit]) -> list[Listed]:
    return [Listed(h.title, h.snippet) for h in hits]


class PairwiseJudging:
    def __init__(self, pool, judge: Judge, budget: Budget, metrics: Metrics | None = None, *,
                 sample_rate: float = 0.1, max_rbo: float = 0.7, queue_size: int = 1000,
                 rng: random.Random | None = None):
        self.pool = pool
        self.judge = judge
        self.budget = budget
        self.metrics = metrics
        self.sample_rate = sample_rate
        self.max_rbo = max_rbo
        self.random = rng or random.Random()
        self._queue: queue.Queue[Pair | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None

    # -- the shadow's side: decide and enqueue, never wait -------------------------------------
    def offer(self, pair: Pair) -> str:
        """Queue a disagreeing pair for judging (sampled); returns what happened to it."""
        if pair.rbo is not None and pair.rbo >= self.max_rbo:
            return "agrees"
        if self.random.random() >= self.sample_rate:
            return self._count("sampled_out")
        try:
            self._queue.put_nowait(pair)
        except queue.Full:
            return self._count("dropped")
        return "queued"

    def start(self) -> PairwiseJudging:
        self._thread = threading.Thread(target=self._run, name="pairwise-judge", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop after the pair being judged; pairs still queued are dropped."""
        if self._thread is None:
            return
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)
        self._thread.join(timeout_s)
        self._thread = None

    def _run(self) -> None:
        while (pair := self._queue.get()) is not None:
            try:
                self.judge_pair(pair)
            except Exception:  # a database outage or a bug: this pair is lost, judging goes on
                log.exception("pairwise judge: a pair could not be judged")

    # -- judging ---------------------------------------------------------------------------------
    def judge_pair(self, pair: Pair) -> str:
        """Judge one pair now: 'baseline', 'candidate' or 'tie', or why not (cached verdicts included)."""
        key = pair.key
        cached = self._cached(key)
        if cached is not None:
            self._count("cached")
            return cached
        if self._over_budget():
            return self._count("over_budget")
        try:
            winner, tokens = judge_lists(self.judge, pair.query, pair.baseline_hits, pair.candidate_hits)
        except JudgeError as exc:
            log.warning("pairwise judge %s: %s", self.judge.name, exc)
            return self._count("error")
        cost = self.budget.cost(tokens)
        self._store(pair, key, winner, tokens, cost)
        self._count("judged")
        if self.metrics is not None:
            self.metrics.relevance_judge_tokens.labels(self.judge.name).inc(tokens)
            self.metrics.relevance_judge_cost.labels(self.judge.name).inc(cost)
            for version, role in ((pair.baseline, "baseline"), (pair.candidate, "candidate")):
                outcome = "tie" if winner == "tie" else ("win" if winner == role else "loss")
                self.metrics.relevance_signals.labels(version, "judge", outcome).inc()
        return winner

    def spent_today(self) -> tuple[int, float]:
        with self.pool.connection() as conn:
            tokens, cost = conn.execute(
                "SELECT coalesce(sum(tokens), 0), coalesce(sum(cost_usd), 0) FROM relevance_judgements "
                "WHERE judged_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'").fetchone()
        return int(tokens), float(cost)

    def _over_budget(self) -> bool:
        tokens, cost = self.spent_today()
        return tokens >= self.budget.tokens_per_day or cost >= self.budget.usd_per_day

    def _cached(self, key: str) -> str | None:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT winner FROM relevance_judgements WHERE pair_hash = %s AND judge = %s "
                               "ORDER BY judged_at DESC LIMIT 1", (key, self.judge.name)).fetchone()
        return row[0] if row else None

    def _store(self, pair: Pair, key: str, winner: str, tokens: int, cost: float) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO relevance_judgements (request_id, pair_hash, baseline, candidate, category, judge, "
                "winner, rbo, tokens, cost_usd) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (pair.request_id, key, pair.baseline, pair.candidate, pair.category, self.judge.name, winner,
                 pair.rbo, tokens, cost))

    def _count(self, outcome: str) -> str:
        if self.metrics is not None:
            self.metrics.relevance_judge_calls.labels(self.judge.name, outcome).inc()
        return outcome


def shadow_listener(judging: PairwiseJudging, pair: Callable[[], tuple[str, str]]):
    """A gateway pair listener: each answer and its shadow, as a baseline/candidate pair (`pair()`, the
    registry's as the router sees it now), offered to the judge."""

    def offer(answer, shadow, comparison) -> None:
        baseline, candidate = pair()
        served = answer.result
        by_version = {served.version: served.hits, shadow.version: shadow.hits}
        if baseline not in by_version or candidate not in by_version:
            return
        judging.offer(Pair(answer.query.text, baseline, candidate, by_version[baseline], by_version[candidate],
                           comparison.rbo, answer.query.category, answer.query.request_id))

    return offer


def judge_summary(pool, since_s: float) -> dict[str, dict]:
    """Per category ('' : all), over the last `since_s` seconds: candidate wins, losses, ties."""
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT category, GROUPING(category), count(*) FILTER (WHERE winner = 'candidate'), "
            "count(*) FILTER (WHERE winner = 'baseline'), count(*) FILTER (WHERE winner = 'tie') "
            "FROM relevance_judgements WHERE judged_at >= now() - make_interval(secs => %s) "
            "GROUP BY GROUPING SETS ((), (category))", (since_s,)).fetchall()
    return {("" if total else (category or "(none)")): {"wins": wins, "losses": losses, "ties": ties}
            for category, total, wins, losses, ties in rows}
