"""Who may post alerts: anyone holding ALERT_WEBHOOK_SECRET, in one of three forms.

- `Authorization: Bearer <secret>` (Alertmanager's `http_config.authorization`,
  Grafana's `authorization_credentials`);
- HTTP basic with the secret as password (any user name);
- Grafana's HMAC: lowercase hex HMAC-SHA256 of `"{timestamp}:{body}"` in the signature
  header, the Unix-seconds timestamp in the timestamp header, refused when it is more
  than ALERT_HMAC_MAX_AGE_S away from now (a captured request cannot be replayed later).

Every comparison is constant-time. Kept apart from Flask: it reads a header mapping.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
from collections.abc import Mapping
from dataclasses import dataclass


class WebhookAuthError(Exception):
    """Missing or wrong credentials (HTTP 401); the message says which."""


@dataclass(frozen=True)
class WebhookAuth:
    secret: str
    signature_header: str = "X-Grafana-Alerting-Signature"
    timestamp_header: str = "X-Grafana-Alerting-Timestamp"
    max_age_s: float = 300.0

    def authenticate(self, headers: Mapping[str, str], body: bytes, now: float) -> str:
        """The method that matched (bearer, basic, hmac), or WebhookAuthError."""
        signature = headers.get(self.signature_header)
        if signature is not None:
            return self._hmac(signature, headers.get(self.timestamp_header), body, now)
        scheme, _, credentials = (headers.get("Authorization") or "").strip().partition(" ")
        scheme, credentials = scheme.lower(), credentials.strip()
        if scheme == "bearer" and credentials:
            if not _same(credentials, self.secret):
                raise WebhookAuthError("the bearer token is wrong")
            return "bearer"
        if scheme == "basic" and credentials:
            try:
                _user, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise WebhookAuthError("the basic credentials are not valid base64 of user:password") from None
            if not _same(password, self.secret):
                raise WebhookAuthError("the basic password is wrong")
            return "basic"
        raise WebhookAuthError("send Authorization: Bearer <ALERT_WEBHOOK_SECRET>, HTTP basic with it as "
                               f"password, or a Grafana HMAC signature ({self.signature_header})")

    def sign(self, body: bytes, timestamp: str) -> str:
        """What Grafana sends in the signature header (tests and the benchmark use it too)."""
        return hmac.new(self.secret.encode(), timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()

    def _hmac(self, signature: str, timestamp: str | None, body: bytes, now: float) -> str:
        if not timestamp:
            raise WebhookAuthError(f"a signed request needs its timestamp in {self.timestamp_header} "
                                   "(set the timestamp header in Grafana's HMAC settings)")
        try:
            sent_at = float(timestamp.strip())
        except ValueError:
            raise WebhookAuthError(f"{self.timestamp_header} must be Unix seconds") from None
        if not math.isfinite(sent_at):  # abs(now - nan) > max_age is always false: replayable forever
            raise WebhookAuthError(f"{self.timestamp_header} must be a finite number of Unix seconds")
        if abs(now - sent_at) > self.max_age_s:
            raise WebhookAuthError(f"the signature timestamp is {abs(now - sent_at):.0f} s from now; "
                                   f"at most {self.max_age_s:.0f} s are accepted")
        if not _same(signature.strip().lower(), self.sign(body, timestamp.strip())):
            raise WebhookAuthError("the HMAC signature does not match the body")
        return "hmac"


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
