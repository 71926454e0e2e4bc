"""How the rollout's status reads: the one-line summary and the warnings `rollout stage status`, the
status API and the console show, and the percent and duration words every message uses."""

from __future__ import annotations

from typing import Any

from rollout.controller.plan import RolloutPlan
from rollout.controller.state import WATCHED, Status
from rollout.controller.store import StoredState
from rollout.formatting import share_percent

pct = share_percent  # this module's short name


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def status_warnings(report: dict[str, Any], stored: StoredState, share: float, plan: RolloutPlan,
                    now: float) -> list[str]:
    """What a person should know beside the status: flags out of step, no controller, an overdue look."""
    warnings = []
    if not report["flags"]["in_sync"]:
        warnings.append(f"the flags give the candidate {pct(share)} but the rollout is at "
                        f"{pct(stored.state.percentage)}: the change is taken as a person's at the next look")
    if stored.state.status in WATCHED:
        if report["controller"]["active"] is False:
            warnings.append(report["controller"]["detail"])
        late = stored.next_evaluation_at is not None and now - stored.next_evaluation_at > \
            2 * plan.evaluation_interval_s
        if late and report["controller"]["active"] and stored.next_evaluation_at is not None:
            warnings.append(f"the last evaluation is overdue by {duration(now - stored.next_evaluation_at)}")
    return warnings


def status_summary(report: dict[str, Any], plan: RolloutPlan) -> str:
    """The status in one line: where the rollout is, how long it has been there, and what comes next."""
    status, at = report["status"], pct(report["percentage"])
    if report["v1_retirable"]:
        return (f"complete: the candidate serves {at}, stable for {duration(report['time_in_stage_s'] or 0)}; "
                "the baseline can be retired (nothing is dropped automatically)")
    if status == Status.IDLE.value:
        return f"idle at {at}: `rollout stage advance` starts the first stage ({pct(plan.stages[0])})"
    where = f"stage {report['stage']} of {len(plan.stages)}" if report["stage"] else "not a plan stage"
    line = f"{status} at {at} ({where}), {duration(report['time_in_stage_s'] or 0)} in the stage"
    if report["required_time_s"] is not None:
        line += f" of at least {duration(report['required_time_s'])}"
    return line
