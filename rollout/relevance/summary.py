"""The relevance evidence of a window, for people: each source's figures and the gate's reading.

`GET /api/monitoring/dashboard` and `rollout monitor` show the same dictionary.
"""

from __future__ import annotations

from datetime import datetime

from rollout.controller.evidence import Evidence, VersionEvidence
from rollout.controller.gates.registry import alpha_share
from rollout.controller.gates.relevance import RelevanceEvidence, RelevancePolicy, relevance_gate
from rollout.controller.thresholds import Thresholds
from rollout.formatting import rate_percent
from rollout.relevance.evidence import RelevanceCollector
from rollout.relevance.versions import baseline_and_candidate


def _rate(successes: int, trials: int) -> float | None:
    return successes / trials if trials else None


def abstain_rates(pool, since: datetime) -> dict[str, dict]:
    """Per serving version: the share of answered routed queries that returned no result (nothing cleared
    the client's min_similarity). Calibrated, the candidate's stays within about a point of the baseline's."""
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT served_version, count(*) FILTER (WHERE result_count = 0), count(*) FROM query_log "
            "WHERE logged_at >= %s AND mode = 'routed' AND served_version IS NOT NULL GROUP BY served_version",
            (since,)).fetchall()
    return {version: {"empty": empty, "answered": answered, "rate": _rate(empty, answered)}
            for version, empty, answered in rows}


def relevance_summary(pool, since: datetime, baseline: str, candidate: str,
                      policy: RelevancePolicy | None = None, calibration=None) -> dict:
    evidence = RelevanceCollector(pool, baseline, candidate).collect(since.timestamp())
    judge = evidence.judge.get("")
    sources: dict[str, dict] = {}
    if judge is not None:
        sources["judge"] = {"wins": judge.wins, "losses": judge.losses, "ties": judge.ties,
                            "candidate_win_rate": _rate(judge.wins + judge.ties / 2, judge.trials)}
    for name in ("feedback", "probes"):
        cell = getattr(evidence, name).get("")
        if cell is not None:
            sources[name] = {baseline: {"positive": cell.baseline_successes, "total": cell.baseline_trials,
                                        "rate": _rate(cell.baseline_successes, cell.baseline_trials)},
                             candidate: {"positive": cell.candidate_successes, "total": cell.candidate_trials,
                                         "rate": _rate(cell.candidate_successes, cell.candidate_trials)}}
    if evidence.golden is not None:
        g = evidence.golden
        sources["golden"] = {"ndcg_difference": g.difference, "low": g.low, "high": g.high, "queries": g.queries}
    gate = relevance_gate(evidence, policy or RelevancePolicy())
    summary = {"baseline": baseline, "candidate": candidate, "since": since.isoformat(), "sources": sources,
               "abstain_rate": abstain_rates(pool, since),
               "gate": {"status": gate.status.value, "reason": gate.reason, "decided_by": gate.values["decided_by"],
                        "statistic": gate.statistic, "bound": gate.bound, "limit": gate.limit}}
    if calibration is not None:
        summary["calibration"] = calibration.describe()
    return summary


def relevance_policy(thresholds: Thresholds) -> RelevancePolicy:
    """The relevance gate's policy as the controller's verdict applies it: the gate's share of the rollback alpha."""
    evidence = Evidence(percentage=0, window_started_at=0, evaluated_at=0, v1=VersionEvidence(), v2=VersionEvidence(),
                        relevance=RelevanceEvidence())  # only which gates apply matters: relevance is the quality gate
    return RelevancePolicy.of(thresholds, alpha_share("relevance", thresholds.rollback_alpha, evidence))


def runtime_relevance(runtime, since: datetime) -> dict:
    """The summary for a running gateway or command: its pool, thresholds and calibration."""
    return relevance_summary(runtime.pool, since, *baseline_and_candidate(runtime.router.roles),
                             relevance_policy(runtime.thresholds), calibration=runtime.calibration)


def render_relevance(summary: dict) -> str:
    """The terminal lines of `rollout monitor`: one per source, then the gate's reading."""
    b, c = summary["baseline"], summary["candidate"]
    sources = summary["sources"]

    lines = ["", f"relevance, {c} (candidate) against {b} (baseline):"]
    if "judge" in sources:
        j = sources["judge"]
        lines.append(f"  judge     {c} wins {j['wins']}, loses {j['losses']}, ties {j['ties']}: "
                     f"win rate {rate_percent(j['candidate_win_rate'])}")
    for name, label in (("feedback", "positive"), ("probes", "hit@k")):
        if name in sources:
            cells = sources[name]
            lines.append(f"  {name:<9} {label} {b} {rate_percent(cells[b]['rate'])} ({cells[b]['total']}), "
                         f"{c} {rate_percent(cells[c]['rate'])} ({cells[c]['total']})")
    if "golden" in sources:
        g = sources["golden"]
        lines.append(f"  golden    nDCG@10 difference {g['ndcg_difference']:+.3f} "
                     f"[{g['low']:+.3f}, {g['high']:+.3f}] over {g['queries']} queries")
    if not sources:
        lines.append("  no relevance evidence in this window (feedback, judge, probes) and no `rollout eval` yet")
    abstain = summary.get("abstain_rate") or {}
    if abstain:
        lines.append("  abstain   " + ", ".join(f"{v} {rate_percent(a['rate'])} ({a['empty']} of {a['answered']})"
                                              for v, a in sorted(abstain.items())) + " returned nothing")
    for version, scale in (summary.get("calibration") or {}).items():
        lines.append(f"  scale     {version}: best score p10 {scale['p10']:.3f}, p50 {scale['p50']:.3f}, "
                     f"p90 {scale['p90']:.3f} ({scale['samples']} from {scale['source']})")
    gate = summary["gate"]
    decided = f" (decided by {', '.join(gate['decided_by'])})" if gate["decided_by"] else ""
    lines.append(f"  gate      {gate['status']}{decided}: {gate['reason']}")
    return "\n".join(lines)
