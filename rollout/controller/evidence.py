"""Evidence: what the gates judge, as plain data the controller gathers for one evaluation.

Everything covers the current stage's window (from the moment the percentage was set to
the evaluation), except `critical_errors`, which covers the plan's critical window (the
seed's "zero critical errors in the last 24 hours"). The gates never fetch anything: the
caller reads query_log, the breaker and the alerts, builds an `Evidence`, and hands it
over, so every verdict can be replayed from what it was given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rollout.controller.gates.relevance import RelevanceEvidence
    from rollout.controller.sources.reading import Reading


def _array(values: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=float).reshape(-1)


@dataclass(frozen=True, eq=False)
class VersionEvidence:
    """One version's traffic in the window (routed queries only: leave out those an admin forced).

    requests: queries this version served (or failed) in the window.
    errors: those that failed on this version (a candidate failure answered by the baseline's fallback
        counts for the candidate).
    critical_errors: failures the user saw (no answer at all), over the plan's critical window.
    latencies_s: one latency per answered request, in seconds (all of them, or a random sample).
    top_similarities: the best result's cosine similarity per answered request (or a random sample).
    assigned: randomisation units the percentage split sent to this version, for the sample ratio
        check; count distinct users (the unit the split is sticky on), or requests when users are
        unknown. None: use `requests`. Count the split's assignment, not who served: a candidate-bucketed
        query that a guard (breaker, alert, incomplete coverage) sent to the baseline is still a candidate
        assignment.
    """

    requests: int = 0
    errors: int = 0
    critical_errors: int = 0
    latencies_s: np.ndarray = field(default_factory=lambda: np.empty(0))
    top_similarities: np.ndarray = field(default_factory=lambda: np.empty(0))
    assigned: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "latencies_s", _array(self.latencies_s))
        object.__setattr__(self, "top_similarities", _array(self.top_similarities))

    @property
    def assignments(self) -> int:
        return self.requests if self.assigned is None else self.assigned


@dataclass(frozen=True, eq=False)
class Evidence:
    """All a verdict rests on: both versions' traffic, the shadow comparisons, and the caller's facts.

    percentage: FF_NEW_EMBEDDINGS_PERCENTAGE during the window (the target share of the candidate).
    window_started_at / evaluated_at: epoch seconds; the window starts when the stage did.
    shadow_overlaps: per shadow-compared query, the overlap (0-1, Jaccard, as query_log keeps it) of
        the baseline's and the candidate's top-k documents; empty when shadow queries are off.
    coverage_complete: the candidate has embedded every category the rollout routes to it (detail says which not).
    breaker_closed: the candidate's circuit breaker is closed (open or half-open: False).
    tripping_alerts: names of firing alerts that hold the candidate off.
    analytics_enabled: FF_ENABLE_QUERY_ANALYTICS is on (off: query_log gets no rows to judge).
    users_seen / users_on_both: distinct users routed in the window, and those routed to both
        versions (sticky routing should make that almost none).
    rows_logged / rows_lost: query_log rows written in the window, and rows the writers lost in it
        (queue full, database refusing a batch; `lost_detail` says which), for the writer check.
    holdback: the share of users (percent) kept on the baseline whatever the percentage, until the
        rollout completes: at "100 %" the candidate gets 100 - holdback (see `candidate_share`).
    relevance: the relevance sources' evidence for the window; when given, the relevance gate is the
        quality gate (None: the similarity floor and shadow overlap, as before relevance evidence).
    readings: the plan's custom gates' metric readings by gate name (`rollout.controller.gates.metric`).
    """

    percentage: float
    window_started_at: float
    evaluated_at: float
    v1: VersionEvidence
    v2: VersionEvidence
    shadow_overlaps: np.ndarray = field(default_factory=lambda: np.empty(0))
    coverage_complete: bool = True
    coverage_detail: str = ""
    breaker_closed: bool = True
    breaker_detail: str = ""
    tripping_alerts: tuple[str, ...] = ()
    analytics_enabled: bool = True
    users_seen: int = 0
    users_on_both: int = 0
    rows_logged: int = 0
    rows_lost: int = 0
    lost_detail: str = ""
    holdback: float = 0.0
    relevance: RelevanceEvidence | None = None
    readings: Mapping[str, Reading] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shadow_overlaps", _array(self.shadow_overlaps))
        object.__setattr__(self, "tripping_alerts", tuple(self.tripping_alerts))

    @property
    def baseline(self) -> VersionEvidence:
        """The version the rollout moves away from (today `v1`)."""
        return self.v1

    @property
    def candidate(self) -> VersionEvidence:
        """The version the rollout moves to (today `v2`)."""
        return self.v2

    @property
    def candidate_share(self) -> float:
        """The percentage of users the split sends to the candidate: the flag's, less the holdback."""
        return min(self.percentage, 100.0 - self.holdback)

    @property
    def window_s(self) -> float:
        """Time in the stage so far."""
        return self.evaluated_at - self.window_started_at
