"""Outcome: what one evaluation tells the controller to do, ordered from harmless to drastic."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Outcome(StrEnum):
    ADVANCE = "advance"    # every gate passed: go to the next stage (or complete at 100 %)
    HOLD = "hold"          # not enough data yet, or a condition to wait out: stay, look again later
    PAUSE = "pause"        # the data cannot be trusted (sample ratio mismatch, inconsistent counts): a person decides
    ROLLBACK = "rollback"  # a gate clearly failed: back to 0 % or to the previous stage

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Outcome.ADVANCE: 0, Outcome.HOLD: 1, Outcome.PAUSE: 2, Outcome.ROLLBACK: 3}


def most_severe(outcomes: Iterable[Outcome]) -> Outcome:
    """The safe choice among several: rollback beats pause beats hold beats advance."""
    return max(outcomes, key=lambda outcome: outcome.severity, default=Outcome.ADVANCE)
