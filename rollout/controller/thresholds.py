"""Thresholds: the numbers the gates judge against, and how sure they must be.

Two confidence levels shape every statistical gate:
- `rollback_alpha` (default 0.01): the chance that any statistical gate rolls back a healthy
  candidate during a stage, however often the controller looks. The gates' confidence
  sequences share it out (see `rollout.controller.gates.registry`).
- `advance_confidence` (default 0.95): a gate passes only when the bound on the right side of
  the threshold holds at this level. Everything between the two is "not enough data": hold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from rollout.errors import ConfigError


@dataclass(frozen=True)
class Thresholds:
    min_samples: int = 8000                # per version, before latency is judged and anything passes
    min_samples_to_roll_back: int = 250    # per version, before latency or a clear quality drop may roll back
    latency_margin: float = 0.10           # the candidate may be this much slower than the baseline
                                           # (p95 and typical request)
    max_p95_s: float = 0.8                 # the candidate's own p95 ceiling
    latency_quantile: float = 0.95
    min_similarity: float = 0.7            # the candidate's mean top similarity must stay above (its own scale)
    min_shadow_overlap: float = 0.5        # mean overlap (Jaccard) of the baseline's and the candidate's
                                           # top-k on shadow queries
    min_shadow_samples: int = 200
    max_error_rate: float = 0.001
    max_critical_errors: int = 0
    rollback_alpha: float = 0.01           # per stage, shared by the statistical guardrails
    advance_confidence: float = 0.95
    srm_alpha: float = 0.001
    max_crossover_share: float = 0.01      # users seen on both versions, as a share of users, before a warning
    max_lost_row_share: float = 0.01      # rows the query_log writers lost, as a share of the window's, before a hold
    bootstrap_draws: int = 20_000
    relevance_margin: float = 0.05        # δ of the relevance gate: how much worse the candidate may be
    relevance_sources: tuple[str, ...] = ("feedback", "probes")  # configured (the settings' defaults): they share
                                                                 # the relevance gate's alpha, see relevance_sources
    seed: int = 0                          # the bootstrap's: the same evidence always gets the same verdict

    def __post_init__(self) -> None:
        problems = []
        if self.min_samples < 20:
            problems.append("min_samples must be at least 20")
        if not 20 <= self.min_samples_to_roll_back <= self.min_samples:
            problems.append("min_samples_to_roll_back must be from 20 to min_samples")
        if not 0 <= self.latency_margin <= 1:
            problems.append("latency_margin is a fraction from 0 to 1")
        if self.max_p95_s <= 0:
            problems.append("max_p95_s must be positive")
        if not 0.5 <= self.latency_quantile < 1:
            problems.append("latency_quantile must be in [0.5, 1)")
        if not 0 < self.max_error_rate < 1:
            problems.append("max_error_rate must be in (0, 1)")
        for name in ("rollback_alpha", "srm_alpha"):
            if not 0 < getattr(self, name) < 0.5:
                problems.append(f"{name} must be in (0, 0.5)")
        if not 0 <= self.max_crossover_share <= 1:
            problems.append("max_crossover_share is a fraction from 0 to 1")
        if not 0 <= self.max_lost_row_share <= 1:
            problems.append("max_lost_row_share is a fraction from 0 to 1")
        if not 0.5 <= self.advance_confidence < 1:
            problems.append("advance_confidence must be in [0.5, 1)")
        from rollout.controller.gates.relevance import SOURCES  # here: the gates import this module

        unknown = sorted(set(self.relevance_sources) - set(SOURCES))
        if unknown:
            problems.append(f"relevance_sources may name only {', '.join(SOURCES)} (not {', '.join(unknown)})")
        if problems:
            raise ConfigError("invalid rollout thresholds: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
