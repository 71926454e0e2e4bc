"""Which alerts roll the candidate back, and what a rollback and its release do.

The composition root reads it from the settings (`rollout.runtime.alert_policy`).
"""

from __future__ import annotations

from dataclasses import dataclass

from rollout.alerts.payloads import Alert


@dataclass(frozen=True)
class AlertPolicy:
    trip_severities: frozenset[str] = frozenset({"critical"})
    trip_label: tuple[str, str] | None = ("rollout_action", "rollback")
    set_percentage_zero: bool = True  # a trip also sets FF_NEW_EMBEDDINGS_PERCENTAGE to 0
    auto_release: bool = False        # all resolved: half-open at once (else wait for a re-arm)
    restore_percentage: bool = True   # on release or re-arm: restore the percentage saved by the trip

    def trips(self, alert: Alert) -> bool:
        if alert.severity in self.trip_severities:
            return True
        return self.trip_label is not None and alert.labels.get(self.trip_label[0]) == self.trip_label[1]
