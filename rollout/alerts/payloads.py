"""The three webhook payloads, told apart by shape, read into one `Alert` per alert.

1. the simple form: `{"type": "error_rate", "severity": "critical", "value": 0.5, "threshold": 0.1}`
   (optional `status`: firing/resolved, `fingerprint`, `message`);
2. Prometheus Alertmanager's webhook: `version: "4"`, `status`, `alerts[]` with `status`,
   `labels`, `annotations`, `startsAt`, `endsAt`, `generatorURL`, `fingerprint`;
3. Grafana unified alerting's webhook contact point: `version: "1"`, the same `alerts[]`
   plus `values`, `valueString`, and top-level `state` (alerting/ok), `orgId`, `title`.

The whole payload is read before anything is applied: one bad alert refuses the lot.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

STATUSES = ("firing", "resolved")
SEVERITIES = ("critical", "error", "warning", "info", "none")  # others count as "other" in metrics
MAX_ALERTS = 1000
_ZERO_TIME = "0001-01-01T00:00:00Z"
_FRACTION = re.compile(r"(\.\d{6})\d+")


class PayloadError(ValueError):
    """The body is not an alert payload we accept; the message says why."""


@dataclass(frozen=True)
class Alert:
    source: str
    fingerprint: str
    alertname: str
    status: str
    severity: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    value: float | None = None

    @property
    def severity_label(self) -> str:
        """A bounded metric label."""
        return self.severity if self.severity in SEVERITIES else "other"

    @property
    def starts_key(self) -> str | None:
        """What tells one firing of an alert from the next (Alertmanager keeps startsAt per firing)."""
        return self.starts_at.astimezone(UTC).isoformat() if self.starts_at else None


def parse_payload(body: object, severities: frozenset[str] = frozenset()) -> tuple[str, list[Alert]]:
    """(source, alerts) of a decoded JSON body, or PayloadError.

    `severities`: besides SEVERITIES, the ones the simple form accepts (the configured tripping ones).
    """
    if not isinstance(body, dict):
        raise PayloadError("the payload must be a JSON object")
    if "alerts" in body:
        version = body.get("version")
        if version == "4":
            return "alertmanager", _grouped(body, "alertmanager")
        if version == "1":
            return "grafana", _grouped(body, "grafana")
        raise PayloadError(f"unsupported webhook version {version!r}: expected \"4\" (Alertmanager) "
                           "or \"1\" (Grafana)")
    if "type" in body and "severity" in body:
        return "seed", [_simple(body, severities)]
    raise PayloadError("unknown payload shape: expected an Alertmanager or Grafana webhook (with alerts[]) "
                       "or {type, severity, value, threshold}")


def severity_spellings(severities) -> list[str]:
    """The spellings of the simple form's severities that are accepted (and documented): CRITICAL and
    Critical mean critical; a typo such as CRIT is refused."""
    return sorted({form for s in severities for form in (s, s.upper(), s.capitalize())})


def _simple(body: dict, severities: frozenset[str]) -> Alert:
    """The simple form names its severity itself, so a typo (`CRIT`) is refused, not recorded as "other"
    and silently left without effect; labels of Alertmanager and Grafana stay free-form."""
    kind = _text(body, "type", required=True)
    severity = _text(body, "severity", required=True).lower()
    known = sorted(set(SEVERITIES) | set(severities))
    if body["severity"] not in severity_spellings(known):
        raise PayloadError(f"severity {body['severity']!r} is unknown: use one of {', '.join(known)} "
                           "(lowercase, uppercase or capitalised)")
    status = body.get("status")
    status = "firing" if status is None else status
    if status not in STATUSES:
        raise PayloadError(f"status must be firing or resolved, not {status!r}")
    value, threshold = _number(body, "value"), _number(body, "threshold")
    annotations = {"summary": f"{kind} {value} over threshold {threshold}"}
    if _text(body, "message"):
        annotations["description"] = _text(body, "message")
    fingerprint = _text(body, "fingerprint") or f"seed:{kind}"
    return Alert("seed", fingerprint, kind, status, severity, {"alertname": kind, "severity": severity},
                 annotations, value=value)


def _grouped(body: dict, source: str) -> list[Alert]:
    alerts = body["alerts"]
    if not isinstance(alerts, list) or not alerts:
        raise PayloadError("alerts must be a non-empty list")
    if len(alerts) > MAX_ALERTS:
        raise PayloadError(f"at most {MAX_ALERTS} alerts per payload")
    return [_grouped_alert(item, source, n) for n, item in enumerate(alerts)]


def _grouped_alert(item: object, source: str, n: int) -> Alert:
    where = f"alerts[{n}]"
    if not isinstance(item, dict):
        raise PayloadError(f"{where} must be an object")
    status = item.get("status")
    if status not in STATUSES:
        raise PayloadError(f"{where}.status must be firing or resolved, not {status!r}")
    labels = _string_map(item.get("labels"), f"{where}.labels", required=True)
    annotations = _string_map(item.get("annotations"), f"{where}.annotations")
    fingerprint = item.get("fingerprint")
    if fingerprint is None:  # what Alertmanager would compute: a hash of the label set
        fingerprint = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]
    if not isinstance(fingerprint, str) or not fingerprint.strip() or len(fingerprint) > 256:
        raise PayloadError(f"{where}.fingerprint must be a non-empty string")
    value = None
    if source == "grafana":
        values = item.get("values")
        if values is not None and not isinstance(values, dict):
            raise PayloadError(f"{where}.values must be an object")
        numbers = [v for _, v in sorted((values or {}).items()) if _is_number(v)]
        value = float(numbers[0]) if numbers else None
    return Alert(source, fingerprint, labels.get("alertname", "unnamed"), status,
                 labels.get("severity", "none").lower(), labels, annotations,
                 _time(item.get("startsAt"), f"{where}.startsAt"), _time(item.get("endsAt"), f"{where}.endsAt"),
                 value)


def _text(body: dict, key: str, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 256:
        raise PayloadError(f"{key} must be a non-empty string of at most 256 characters")
    return value.strip()


def _number(body: dict, key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not _is_number(value):
        raise PayloadError(f"{key} must be a finite number")
    return float(value)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _string_map(value: object, where: str, required: bool = False) -> dict[str, str]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise PayloadError(f"{where} must be an object of strings")
    return dict(value)


def _time(value: object, where: str) -> datetime | None:
    if value in (None, "", _ZERO_TIME):
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{where} must be an RFC 3339 time")
    try:
        parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", value.replace("Z", "+00:00")))
    except ValueError:
        raise PayloadError(f"{where} is not an RFC 3339 time: {value!r}") from None
    if parsed.year <= 1:
        return None
    if parsed.tzinfo is None:
        raise PayloadError(f"{where} needs a time zone: {value!r}")
    return parsed
