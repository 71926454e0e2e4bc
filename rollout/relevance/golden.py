"""The golden set: a labelled query file run against the baseline and the candidate.

The file is JSON Lines, one query a line: `{"query": "...", "relevant": {"doc_id": grade},
"category": "..."}` with grades 0-3 (category optional, used for per-category figures).
Both versions answer every query, so each query gives a paired difference; the intervals
resample whole queries (paired bootstrap). The candidate passes when the lower bound of
its nDCG@10 difference is above minus the margin (non-inferiority).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import psycopg
from prometheus_client import Gauge
from psycopg.types.json import Jsonb
from psycopg_pool import PoolTimeout

from rollout.errors import RolloutError
from rollout.relevance.ranking import bootstrap_interval, ndcg, recall, reciprocal_rank

Search = Callable[[str, int], Sequence[str]]  # (query, k) -> ranked document ids
log = logging.getLogger(__name__)

NDCG_DEPTH = 10


def demo_qrels_path() -> Path:
    """The labelled query set shipped for the demo corpus."""
    return Path(str(resources.files("rollout") / "data" / "demo_qrels.jsonl"))


class QrelsError(RolloutError):
    """The labelled query file cannot be read (says which line and why)."""


@dataclass(frozen=True)
class LabelledQuery:
    query: str
    relevant: Mapping[str, int]
    category: str | None = None


def parse_qrels(text: str, source: str = "qrels") -> list[LabelledQuery]:
    queries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QrelsError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("query"), str) or not row["query"].strip():
            raise QrelsError(f'{where}: expected {{"query": "...", "relevant": {{"doc_id": grade}}}}')
        relevant = row.get("relevant")
        if not isinstance(relevant, dict) or not relevant:
            raise QrelsError(f"{where}: relevant must be a non-empty object of document id to grade")
        for doc, grade in relevant.items():
            if isinstance(grade, bool) or not isinstance(grade, int) or not 0 <= grade <= 3:
                raise QrelsError(f"{where}: the grade of {doc!r} must be an integer 0-3, not {grade!r}")
        category = row.get("category")
        if category is not None and not isinstance(category, str):
            raise QrelsError(f"{where}: category must be a string")
        queries.append(LabelledQuery(row["query"], dict(relevant), category))
    if not queries:
        raise QrelsError(f"{source}: no queries")
    return queries


def read_qrels(path: Path) -> tuple[list[LabelledQuery], str]:
    """The queries and the file's SHA-256 (which set an eval ran on)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise QrelsError(f"cannot read {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise QrelsError(f"{path}: not UTF-8") from None
    return parse_qrels(text, str(path)), hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Measure:
    """One measure's mean over the queries, with its bootstrap interval."""

    mean: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float], **bootstrap) -> Measure:
        low, high = bootstrap_interval(values, **bootstrap)
        return cls(float(np.mean(values)), low, high)

    def as_json(self) -> dict:
        return {"mean": round(self.mean, 6), "low": round(self.low, 6), "high": round(self.high, 6)}


@dataclass(frozen=True)
class EvalReport:
    baseline: str
    candidate: str
    k: int
    margin: float
    queries: int
    versions: Mapping[str, Mapping[str, Measure]]      # version -> measure name -> Measure
    difference: Mapping[str, Measure]                  # candidate minus baseline, paired
    categories: Mapping[str, Mapping[str, float]]      # category -> version -> mean nDCG@10
    per_query: list[dict] = field(default_factory=list)

    @property
    def measure_names(self) -> list[str]:
        return [f"recall@{self.k}", f"ndcg@{NDCG_DEPTH}", "mrr"]

    @property
    def passed(self) -> bool:
        return self.difference[f"ndcg@{NDCG_DEPTH}"].low >= -self.margin

    def as_json(self) -> dict:
        return {"baseline": self.baseline, "candidate": self.candidate, "k": self.k, "margin": self.margin,
                "queries": self.queries, "passed": self.passed,
                "versions": {v: {m: x.as_json() for m, x in ms.items()} for v, ms in self.versions.items()},
                "difference": {m: x.as_json() for m, x in self.difference.items()},
                "categories": {c: {v: round(x, 6) for v, x in vs.items()} for c, vs in self.categories.items()},
                "per_query": self.per_query}


def evaluate(queries: Sequence[LabelledQuery], baseline: tuple[str, Search], candidate: tuple[str, Search], *,
             k: int = 10, margin: float = 0.05, draws: int = 2000, seed: int = 0) -> EvalReport:
    """Run every query on both versions and measure them side by side."""
    depth = max(k, NDCG_DEPTH)
    names = [baseline[0], candidate[0]]
    scores: dict[str, dict[str, list[float]]] = {v: {f"recall@{k}": [], f"ndcg@{NDCG_DEPTH}": [], "mrr": []}
                                                  for v in names}
    per_query = []
    for labelled in queries:
        row: dict = {"query": labelled.query, "category": labelled.category}
        for name, search in (baseline, candidate):
            ranked = list(search(labelled.query, depth))
            values = {f"recall@{k}": recall(ranked, labelled.relevant, k),
                      f"ndcg@{NDCG_DEPTH}": ndcg(ranked, labelled.relevant, NDCG_DEPTH),
                      "mrr": reciprocal_rank(ranked, labelled.relevant)}
            for measure, value in values.items():
                scores[name][measure].append(value)
            row[name] = {"ranked": ranked[:k], **{m: round(v, 6) for m, v in values.items()}}
        per_query.append(row)
    bootstrap = {"draws": draws, "seed": seed}
    versions = {v: {m: Measure.of(values, **bootstrap) for m, values in scores[v].items()} for v in names}
    difference = {m: Measure.of(np.subtract(scores[names[1]][m], scores[names[0]][m]), **bootstrap)
                  for m in scores[names[0]]}
    categories: dict[str, dict[str, float]] = {}
    ndcgs = {v: scores[v][f"ndcg@{NDCG_DEPTH}"] for v in names}
    for category in sorted({q.category for q in queries if q.category}):
        picked = [i for i, q in enumerate(queries) if q.category == category]
        categories[category] = {v: float(np.mean([ndcgs[v][i] for i in picked])) for v in names}
    return EvalReport(names[0], names[1], k, margin, len(queries), versions, difference, categories, per_query)


class EvalStore:
    """Eval runs in `relevance_evals`; the latest for a pair is what the first stage asks for."""

    def __init__(self, pool):
        self.pool = pool

    def record(self, report: EvalReport, qrels_sha256: str) -> int:
        with self.pool.connection() as conn:
            return conn.execute(
                "INSERT INTO relevance_evals (baseline, candidate, qrels_sha256, queries, passed, report) "
                "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (report.baseline, report.candidate, qrels_sha256, report.queries, report.passed,
                 Jsonb({k: v for k, v in report.as_json().items() if k != "per_query"}))).fetchone()[0]

    def latest(self, baseline: str, candidate: str) -> dict | None:
        try:
            with self.pool.connection() as conn:
                row = conn.execute(
                    "SELECT id, evaluated_at, passed, queries, report FROM relevance_evals "
                    "WHERE baseline = %s AND candidate = %s ORDER BY evaluated_at DESC, id DESC LIMIT 1",
                    (baseline, candidate)).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        if row is None:
            return None
        return {"id": row[0], "evaluated_at": row[1].isoformat(), "passed": row[2], "queries": row[3],
                "report": row[4]}

    def start_refusal(self, baseline: str, candidate: str) -> str | None:
        """Why the first stage may not start (ROLLOUT_REQUIRE_EVAL), or None."""
        latest = self.latest(baseline, candidate)
        if latest is None:
            return (f"ROLLOUT_REQUIRE_EVAL is set and no `rollout eval` of {candidate} against {baseline} "
                    "is recorded: run `rollout eval --qrels FILE.jsonl` first")
        if not latest["passed"]:
            diff = latest["report"]["difference"][f"ndcg@{NDCG_DEPTH}"]
            return (f"ROLLOUT_REQUIRE_EVAL is set and the latest eval (#{latest['id']}, {latest['evaluated_at']}) "
                    f"failed: {candidate} nDCG@{NDCG_DEPTH} differs by {diff['mean']:+.3f} "
                    f"(lower bound {diff['low']:+.3f})")
        return None


class GoldenGauge:
    """The latest eval's nDCG@10 per version as a gauge, so the dashboard shows it beside the live sources.

    Read from relevance_evals on the runtime's background tick every `refresh_s`, on a thread of its
    own (a slow database never holds the tick, and never a query).
    """

    def __init__(self, store: EvalStore, gauge: Gauge, pair: Callable[[], tuple[str, str]], refresh_s: float = 600):
        self.store = store
        self.gauge = gauge
        self.pair = pair
        self.refresh_s = refresh_s
        self._read_at = -math.inf
        self._lock = threading.Lock()

    def refresh_if_due(self) -> None:
        if time.monotonic() - self._read_at < self.refresh_s or not self._lock.acquire(blocking=False):
            return
        self._read_at = time.monotonic()
        threading.Thread(target=self._refresh, name="golden-gauge", daemon=True).start()

    def _refresh(self) -> None:
        try:
            self.refresh()
        except (psycopg.Error, PoolTimeout) as exc:
            log.warning("golden-set gauge not refreshed: %s", exc)
        finally:
            self._lock.release()

    def refresh(self) -> None:
        """Set each version's nDCG@10 from the latest eval of the rollout's pair (nothing before one ran)."""
        baseline, candidate = self.pair()
        latest = self.store.latest(baseline, candidate)
        if latest is None:
            return
        for version, metrics in latest["report"]["versions"].items():
            self.gauge.labels(version).set(metrics[f"ndcg@{NDCG_DEPTH}"]["mean"])
