"""Health checks: is there evidence to judge at all, and is it what the split should produce?

- analytics: with FF_ENABLE_QUERY_ANALYTICS off, query_log gets no rows and every
  statistical gate would wait forever for data; hold and say why (starting a rollout turns
  analytics on, so this means someone turned it off since). Rows arriving in the window
  prove the gateway writes them, whatever this process reads for a flag left at its default.
- traffic: a version with no request after the plan's grace period means routing or the
  analytics writer is broken, not that the candidate is slow to prove itself; hold and say so.
- crossover: routing is sticky per user, so a user seen on both versions in one stage window
  is a guard diverting them or a bucketing change; beyond the expected share it is a warning
  (the stage may still go on, but a person should look).
"""

from __future__ import annotations

from rollout.controller.evidence import Evidence
from rollout.controller.gates.result import GateResult, GateStatus, percent
from rollout.controller.outcome import Outcome
from rollout.controller.thresholds import Thresholds


def analytics_gate(evidence: Evidence) -> GateResult:
    values = {"analytics_enabled": evidence.analytics_enabled}
    rows = evidence.baseline.requests + evidence.candidate.requests
    if not evidence.analytics_enabled and rows:
        # a flag left at its default is read from each process's environment: the gateway's rows are the proof
        return GateResult("analytics", GateStatus.PASSED, Outcome.HOLD,
                          f"{rows} query_log rows in the window, although this process reads "
                          "FF_ENABLE_QUERY_ANALYTICS off (set the flag, so every process agrees)", values)
    if not evidence.analytics_enabled:
        return GateResult("analytics", GateStatus.FAILED, Outcome.HOLD,
                          "query analytics is off (FF_ENABLE_QUERY_ANALYTICS): no evidence is recorded; "
                          "turn it on with `rollout flags set FF_ENABLE_QUERY_ANALYTICS true`", values)
    return GateResult("analytics", GateStatus.PASSED, Outcome.HOLD, "query analytics is on", values)


def traffic_gate(evidence: Evidence, grace_s: float) -> GateResult:
    versions = [("candidate", evidence.candidate.requests)]
    if evidence.candidate_share < 100:  # at 100 % the baseline gets traffic only from a holdback
        versions.append(("baseline", evidence.baseline.requests))
    values = {f"requests_{name}": count for name, count in versions} | {"window_s": evidence.window_s}
    limits = {"traffic_grace_s": grace_s}
    silent = [name for name, count in versions if count == 0]
    if silent and evidence.window_s >= grace_s:
        return GateResult("traffic", GateStatus.FAILED, Outcome.HOLD,
                          f"no {' and no '.join(silent)} requests in {evidence.window_s / 60:.0f} min (grace "
                          f"{grace_s / 60:.0f} min): is the gateway routing, and is query_log written?",
                          values, limits)
    if silent:
        return GateResult("traffic", GateStatus.PASSED, Outcome.HOLD,
                          f"no {' and no '.join(silent)} requests yet, within the grace period", values, limits)
    return GateResult("traffic", GateStatus.PASSED, Outcome.HOLD, "both versions have traffic"
                      if len(versions) == 2 else "the candidate has traffic", values, limits)


def crossover_gate(evidence: Evidence, thresholds: Thresholds) -> GateResult:
    seen, both, allowed = evidence.users_seen, evidence.users_on_both, thresholds.max_crossover_share
    share = both / seen if seen else 0.0
    values = {"users_seen": seen, "users_on_both": both, "share": share}
    limits = {"max_crossover_share": allowed}
    headline = {"statistic": share, "bound": share, "limit": allowed}
    if share > allowed:
        return GateResult("crossover", GateStatus.WARNING, Outcome.HOLD,
                          f"{both} of {seen} users ({percent(share, 2)}) were routed to both versions, more than "
                          f"{percent(allowed, 2)}: a guard is diverting users or the bucketing changed",
                          values, limits, **headline)
    return GateResult("crossover", GateStatus.PASSED, Outcome.HOLD,
                      f"{both} of {seen} users on both versions", values, limits, **headline)
