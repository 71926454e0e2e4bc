"""Consistency: evidence that cannot be true (more errors than requests, negative latencies, NaN).

Such evidence means the gathering is broken, so no statistic computed from it is judged:
the rollout pauses for a person. Facts from the breaker and the alerts still count.
"""

from __future__ import annotations

import numpy as np

from rollout.controller.evidence import Evidence, VersionEvidence
from rollout.controller.gates.result import GateResult, GateStatus
from rollout.controller.outcome import Outcome

NAME = "consistency"


def _version_problems(name: str, v: VersionEvidence) -> list[str]:
    problems = [f"{name} {label} is negative ({value})"
                for label, value in (("requests", v.requests), ("errors", v.errors),
                                     ("critical errors", v.critical_errors), ("assignments", v.assignments))
                if value < 0]
    if v.errors > v.requests:
        problems.append(f"{name} has more errors ({v.errors}) than requests ({v.requests})")
    if len(v.latencies_s) > max(v.requests, 0):
        problems.append(f"{name} has more latency samples ({len(v.latencies_s)}) than requests ({v.requests})")
    if len(v.top_similarities) > max(v.requests, 0):
        problems.append(f"{name} has more similarity samples ({len(v.top_similarities)}) "
                        f"than requests ({v.requests})")
    if not np.all(np.isfinite(v.latencies_s)) or np.any(v.latencies_s < 0):
        problems.append(f"{name} latencies include negative or non-finite values")
    sims = v.top_similarities
    if not np.all(np.isfinite(sims)) or np.any(np.abs(sims) > 1 + 1e-9):
        problems.append(f"{name} similarities fall outside [-1, 1]")
    return problems


def consistency_gate(evidence: Evidence) -> GateResult:
    problems = _version_problems("the baseline", evidence.v1) + _version_problems("the candidate", evidence.v2)
    overlaps = evidence.shadow_overlaps
    if not np.all(np.isfinite(overlaps)) or np.any((overlaps < 0) | (overlaps > 1)):
        problems.append("shadow overlaps fall outside [0, 1]")
    if not 0 <= evidence.percentage <= 100:
        problems.append(f"percentage {evidence.percentage} is outside 0-100")
    if not 0 <= evidence.holdback <= 100:
        problems.append(f"holdback {evidence.holdback} is outside 0-100")
    if not evidence.window_s >= 0:
        problems.append("the window ends before it starts")
    if problems:
        return GateResult(NAME, GateStatus.FAILED, Outcome.PAUSE, "; ".join(problems), {"problems": problems})
    return GateResult(NAME, GateStatus.PASSED, Outcome.PAUSE, "counts and samples are consistent", {"problems": []})
