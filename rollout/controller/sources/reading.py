"""What a metric source hands a custom gate: each version's measurement, or why there is none.

A source measures a version either as counts (events of trials, e.g. errors of requests),
which the gate judges with the anytime-valid rate sequence, or as a plain value, which it can
only compare with its threshold. A source that fails, times out or finds nothing raises
`NoData` with its reason; `Reading.missing` keeps that reason, so a gate holds (or does what
its plan says) and says why, instead of passing on silence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rollout.errors import RolloutError


class NoData(RolloutError):
    """A source could not give a measurement; the message is the reason a person reads."""


@dataclass(frozen=True)
class Window:
    """What a reading is about: the rollout's two versions (registry names) and the stage's window."""

    baseline: str
    candidate: str
    since: float   # epoch seconds
    until: float

    @property
    def seconds(self) -> float:
        return max(self.until - self.since, 1.0)

    def params(self) -> dict[str, object]:
        """The named parameters of an SQL query about this window."""
        return {"baseline": self.baseline, "candidate": self.candidate, "window_s": self.seconds,
                "since": datetime.fromtimestamp(self.since, UTC), "until": datetime.fromtimestamp(self.until, UTC)}

    def versions(self) -> dict[str, str]:
        """role -> registry name."""
        return {"baseline": self.baseline, "candidate": self.candidate}


@dataclass(frozen=True)
class Measurement:
    """Counts (`events` of `trials`) or a plain `value`; exactly one of the two."""

    value: float | None = None
    events: int | None = None
    trials: int | None = None

    def __post_init__(self) -> None:
        counted = self.events is not None and self.trials is not None
        if counted == (self.value is not None) or (self.events is None) != (self.trials is None):
            raise ValueError("a measurement is counts (events and trials) or a value, not both or neither")
        if counted and not 0 <= (self.events or 0) <= (self.trials or 0):
            raise ValueError(f"counts must satisfy 0 <= events <= trials, not {self.events} of {self.trials}")
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError(f"a value must be a finite number, not {self.value}")

    @classmethod
    def counts(cls, events: float, trials: float) -> Measurement:
        """Counts from numbers a source may give as floats (Prometheus' increase() extrapolates): rounded."""
        e, t = _whole(events, "events"), _whole(trials, "trials")
        if e > t:
            raise NoData(f"more events ({e}) than trials ({t}): the two queries do not count the same things")
        return cls(events=e, trials=t)

    @property
    def counted(self) -> bool:
        return self.events is not None

    def to_dict(self) -> dict[str, Any]:
        if self.counted:
            return {"events": self.events, "trials": self.trials}
        return {"value": self.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        if "events" in data:
            return cls(events=int(data["events"]), trials=int(data["trials"]))
        return cls(value=float(data["value"]))


def _whole(number: float, name: str) -> int:
    if not math.isfinite(number) or number < 0:
        raise NoData(f"{name} must be a count (0 or more), not {number}")
    return round(number)


def number(raw: object, what: str) -> float:
    """A finite float from a source's raw answer (a JSON number or a numeric string), else NoData."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str, Decimal)):
        raise NoData(f"{what} is not a number: {raw!r}"[:300])
    try:
        value = float(raw)
    except (ValueError, ArithmeticError):
        raise NoData(f"{what} is not a number: {raw!r}"[:300]) from None
    if not math.isfinite(value):
        raise NoData(f"{what} is {value} (no data in the window, e.g. 0/0)")
    return value


@dataclass(frozen=True)
class Reading:
    """One custom gate's data for one evaluation, kept with the decision so it can be judged again."""

    source: str
    versions: Mapping[str, str]                                   # role -> registry name
    measurements: Mapping[str, Measurement] = field(default_factory=dict)   # by role
    missing: str | None = None                                    # why there is no data (None: there is)

    @property
    def candidate(self) -> Measurement | None:
        return None if self.missing else self.measurements.get("candidate")

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "versions": dict(self.versions), "missing": self.missing,
                "measurements": {role: m.to_dict() for role, m in self.measurements.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reading:
        return cls(source=data["source"], versions=dict(data["versions"]), missing=data.get("missing"),
                   measurements={role: Measurement.from_dict(m) for role, m in data["measurements"].items()})
