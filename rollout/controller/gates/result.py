"""GateResult: one gate's answer, with the values it looked at and the thresholds it used.

Values are kept JSON-ready (plain Python numbers, NaN and infinities as None) so a verdict
goes into `rollout_decisions` and back without loss.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeAlias

import numpy as np

from rollout.controller.outcome import Outcome
from rollout.formatting import change_percent, rate_percent

JSONValue: TypeAlias = "None | bool | int | float | str | list[JSONValue]"


class GateStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_ENOUGH_DATA = "not_enough_data"   # neither proven fine nor proven broken yet
    SKIPPED = "skipped"                   # does not apply here (e.g. untrusted data)
    WARNING = "warning"                   # fine to go on, but a person should look (said in the reason)


def plain(value: object) -> JSONValue:
    """A JSON-safe copy: numpy scalars to Python, non-finite floats to None, sequences to lists."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(item) for item in value]
    raise TypeError(f"gate values must be numbers, strings or lists, not {type(value).__name__}")


@dataclass(frozen=True)
class GateResult:
    name: str
    status: GateStatus
    on_failure: Outcome
    reason: str
    values: Mapping[str, object] = field(default_factory=dict)       # JSONValue once built (see `plain`)
    thresholds: Mapping[str, object] = field(default_factory=dict)
    statistic: float | None = None   # the gate's headline figure (e.g. the candidate's error rate)
    bound: float | None = None       # its confidence-sequence bound on the rollback side
    limit: float | None = None       # the threshold that bound is held against

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", {k: plain(v) for k, v in self.values.items()})
        object.__setattr__(self, "thresholds", {k: plain(v) for k, v in self.thresholds.items()})
        for name in ("statistic", "bound", "limit"):
            object.__setattr__(self, name, plain(getattr(self, name)))

    @property
    def outcome(self) -> Outcome:
        """What this gate alone asks for."""
        if self.status is GateStatus.FAILED:
            return self.on_failure
        if self.status is GateStatus.NOT_ENOUGH_DATA:
            return Outcome.HOLD
        return Outcome.ADVANCE   # passed, skipped, or a warning (which the verdict's reason repeats)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status.value, "on_failure": self.on_failure.value,
                "reason": self.reason, "values": dict(self.values), "thresholds": dict(self.thresholds),
                "statistic": self.statistic, "bound": self.bound, "limit": self.limit}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateResult:
        return cls(name=data["name"], status=GateStatus(data["status"]), on_failure=Outcome(data["on_failure"]),
                   reason=data["reason"], values=data.get("values", {}), thresholds=data.get("thresholds", {}),
                   statistic=data.get("statistic"), bound=data.get("bound"), limit=data.get("limit"))


@dataclass
class Findings:
    """What a gate with several checks found: any failure fails it, else anything unproven holds it."""

    failed: list[str] = field(default_factory=list)
    unproven: list[str] = field(default_factory=list)
    fine: list[str] = field(default_factory=list)

    def result(self, name: str, on_failure: Outcome, values: Mapping[str, object],
               thresholds: Mapping[str, object], **headline: float | None) -> GateResult:
        """The gate's result; `headline` is its statistic, bound and limit."""
        if self.failed:
            status, reasons = GateStatus.FAILED, self.failed
        elif self.unproven:
            status, reasons = GateStatus.NOT_ENOUGH_DATA, self.unproven
        else:
            status, reasons = GateStatus.PASSED, self.fine
        return GateResult(name, status, on_failure, "; ".join(reasons), values, thresholds, **headline)


percent = rate_percent  # the gates' names for rollout.formatting's
signed_percent = change_percent
