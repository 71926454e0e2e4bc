"""Lost rows: did the query_log writers keep (nearly) every row of this stage's window?

A writer drops rows when its queue is full (the database slower than the traffic) and loses
whole batches when the database refuses them (`rollout.analytics.losses` tallies both). The
other gates would judge what is left as if it were all the traffic, yet what is lost is not a
random sample: a database outage loses a stretch of time, a full queue the busiest moments. So
beyond `max_lost_row_share` of the window's rows the stage holds and says why; it goes on once
the share falls back (more rows arrive) or a person restarts the stage after fixing the writer.
"""

from __future__ import annotations

from rollout.controller.evidence import Evidence
from rollout.controller.gates.result import GateResult, GateStatus, JSONValue, percent
from rollout.controller.outcome import Outcome
from rollout.controller.thresholds import Thresholds

NAME = "lost_rows"


def lost_rows_gate(evidence: Evidence, thresholds: Thresholds) -> GateResult:
    lost, logged, allowed = evidence.rows_lost, evidence.rows_logged, thresholds.max_lost_row_share
    share = lost / (lost + logged) if lost + logged else 0.0
    values: dict[str, JSONValue] = {"rows_logged": logged, "rows_lost": lost, "share": share,
                                    "detail": evidence.lost_detail}
    limits: dict[str, JSONValue] = {"max_lost_row_share": allowed}
    headline = {"statistic": share, "bound": share, "limit": allowed}
    if lost and share > allowed:
        return GateResult(NAME, GateStatus.FAILED, Outcome.HOLD,
                          f"the query_log writers lost {lost:,} of {lost + logged:,} rows in this stage "
                          f"({percent(share, 2)}, more than {percent(allowed, 2)}; {evidence.lost_detail or 'lost'}):"
                          " the evidence has holes; check the writers' queue (QUERY_LOG_QUEUE_SIZE) and the database",
                          values, limits, **headline)
    reason = (f"{lost:,} of {lost + logged:,} rows lost ({percent(share, 2)})" if lost
              else "no query_log row lost in this stage")
    return GateResult(NAME, GateStatus.PASSED, Outcome.HOLD, reason, values, limits, **headline)
