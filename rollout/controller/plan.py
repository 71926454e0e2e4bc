"""The plan: the stages a rollout climbs, how long each lasts at least, and where a rollback lands.

The composition root builds the configured plan from the settings (`rollout.runtime.rollout_plan`);
a plan file (`rollout.controller.planfile`) starts from that one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, get_args

from rollout.controller.thresholds import Thresholds
from rollout.errors import ConfigError
from rollout.stages import DEFAULT_STAGES, RollbackTarget, parse_stages

ROLLBACK_TARGETS: tuple[str, ...] = get_args(RollbackTarget)


@dataclass(frozen=True)
class RolloutPlan:
    stages: tuple[float, ...] = DEFAULT_STAGES
    min_stage_s: float = 72 * 3600             # the seed's schedule: about three days a stage
    evaluation_interval_s: float = 300
    rollback_to: RollbackTarget = "zero"
    complete_after_s: float = 48 * 3600        # at 100 %, stable this long: complete, the baseline may be retired
    critical_window_s: float = 24 * 3600       # critical errors are counted over this window
    traffic_grace_s: float = 1800              # a stage with no traffic this long holds with the reason
    thresholds: Thresholds = field(default_factory=Thresholds)

    @staticmethod
    def parse_stages(value: str | object) -> tuple[float, ...]:
        """A plan's stages from a list or "10,25,50,75,100"; ValueError says what is wrong."""
        return parse_stages(value)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "stages", parse_stages(self.stages))
        except ValueError as exc:
            raise ConfigError(f"invalid rollout stages: {exc}") from None
        if self.rollback_to not in ROLLBACK_TARGETS:
            raise ConfigError(f"rollback target must be zero or previous, not {self.rollback_to!r}")
        for name in ("min_stage_s", "complete_after_s", "traffic_grace_s"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be 0 or more seconds")
        for name in ("evaluation_interval_s", "critical_window_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be more than 0 seconds")

    @property
    def final(self) -> float:
        return self.stages[-1]

    def next_stage(self, percentage: float) -> float | None:
        """The first stage above `percentage` (None at 100 %)."""
        return next((stage for stage in self.stages if stage > percentage), None)

    def previous_stage(self, percentage: float) -> float:
        """The last stage below `percentage`, or 0."""
        return max((stage for stage in self.stages if stage < percentage), default=0.0)

    def rollback_target(self, percentage: float, to: RollbackTarget | None = None) -> float:
        return self.previous_stage(percentage) if (to or self.rollback_to) == "previous" else 0.0

    def stage_number(self, percentage: float) -> int | None:
        """1-based position of `percentage` among the stages, None when it is not one (set by hand, or 0)."""
        return self.stages.index(percentage) + 1 if percentage in self.stages else None

    def required_time_s(self, percentage: float) -> float:
        """How long a stage must last before it may end: at 100 % the stability time before completion."""
        return self.complete_after_s if percentage >= self.final else self.min_stage_s

    def to_dict(self) -> dict[str, Any]:
        return {"stages": list(self.stages), "min_stage_s": self.min_stage_s,
                "evaluation_interval_s": self.evaluation_interval_s, "rollback_to": self.rollback_to,
                "complete_after_s": self.complete_after_s, "critical_window_s": self.critical_window_s,
                "traffic_grace_s": self.traffic_grace_s,
                "thresholds": self.thresholds.to_dict()}
