"""Alert webhooks: payloads (seed, Alertmanager, Grafana), authentication, policy, events, rollback."""

from rollout.alerts.actions import ActionResult, RollbackActions
from rollout.alerts.auth import WebhookAuth, WebhookAuthError
from rollout.alerts.events import AlertEvent, AlertEventStore
from rollout.alerts.payloads import Alert, PayloadError, parse_payload
from rollout.alerts.policy import AlertPolicy
from rollout.alerts.service import AlertService, Delivery

__all__ = [
    "ActionResult", "Alert", "AlertEvent", "AlertEventStore", "AlertPolicy", "AlertService", "Delivery",
    "PayloadError", "RollbackActions", "WebhookAuth", "WebhookAuthError", "parse_payload",
]
