"""Notification payloads: what ROLLOUT_NOTIFY_URL receives when a rollout rolls back or pauses.

Pure functions of a recorded decision (and its verdict), so a payload sent again after a restart
(`RolloutService.resend_undelivered`) is the one first built; `Notifier` delivers them.
"""

from __future__ import annotations

from typing import Any

from rollout.controller.presentation import pct
from rollout.controller.state import Status, Transition


def notification_event(transition: Transition) -> str | None:
    """rollback (the percentage went down by a rollback) or pause (the data needs a person), else None."""
    if transition.rolled_back:
        return "rollback"
    if transition.after.status is Status.PAUSED and transition.before.status is not Status.PAUSED:
        return "pause"
    return None


def notification(event: str, decision: dict[str, Any], verdict: dict[str, Any] | None) -> dict[str, Any]:
    before, after = decision["percentage_before"], decision["percentage_after"]
    if event == "rollback":
        headline = f"candidate rolled back from {pct(before)} to {pct(after)} by {decision['actor']}"
    else:
        headline = f"rollout paused at {pct(before)}: a person must decide (`rollout stage resume`)"
    failed = [{"name": g["name"], "reason": g["reason"]} for g in (verdict or {}).get("gates", [])
              if g["status"] == "failed"]
    return {"event": event, "text": f"rag-rollout: {headline}: {decision['reason']}",
            "decision_id": decision["id"], "kind": decision["kind"], "actor": decision["actor"],
            "from_percentage": before, "to_percentage": after, "status": decision["status_after"],
            "reason": decision["reason"], "failed_gates": failed, "decided_at": decision["decided_at"],
            "verdict": verdict["outcome"] if verdict else None}
