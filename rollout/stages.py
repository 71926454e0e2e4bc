"""The stages of a rollout: the percentages it climbs and where a rollback may land.

The controller's plan (`rollout.controller.plan.RolloutPlan`), its plan files and the settings
(ROLLOUT_STAGES, ROLLOUT_ROLLBACK_TO) all read them from here: a module of its own, which
imports only the flags package, so the settings adapter and the controller both depend on it
and not on each other.
"""

from __future__ import annotations

from typing import Literal

from flags import V2_PERCENTAGE, FlagError, definition

RollbackTarget = Literal["zero", "previous"]
DEFAULT_STAGES = (10.0, 25.0, 50.0, 75.0, 100.0)


def parse_stages(value: str | object) -> tuple[float, ...]:
    """The rollout's percentages ("10,25,50,75,100"): strictly increasing, above 0, ending at 100.

    Each is a valid FF_NEW_EMBEDDINGS_PERCENTAGE (0.01 % steps). Raises ValueError saying what is wrong.
    """
    if isinstance(value, str):
        raw: list[object] = [part.strip() for part in value.split(",")]
    elif isinstance(value, (list, tuple)):
        raw = list(value)
    else:
        raise ValueError(f"stages are a comma-separated list such as 10,25,50,75,100, not {value!r}")
    if not raw or raw == [""]:
        raise ValueError("give at least one stage, e.g. 10,25,50,75,100")
    stages: list[float] = []
    for item in raw:
        try:
            stage = definition(V2_PERCENTAGE).parse(item)
        except FlagError:
            raise ValueError(f"stage {item!r} is not a percentage from 0 to 100 in 0.01 steps") from None
        if stage <= 0:
            raise ValueError("stages must be above 0 (0 % is where a rollout starts and rolls back to)")
        if stages and stage <= stages[-1]:
            raise ValueError(f"stages must increase strictly: {stage:g} comes after {stages[-1]:g}")
        stages.append(stage)
    if stages[-1] != 100.0:
        raise ValueError(f"the last stage must be 100 (all traffic on the candidate), not {stages[-1]:g}")
    return tuple(stages)

