"""Admin authentication: `Authorization: Bearer $ROLLOUT_ADMIN_TOKEN`, compared in constant time.

401 when no bearer token is sent, 403 when the token is wrong, 503 when the
server has no token configured (changes are refused rather than left open).
Without a bearer token, a console login (`app.extensions["console_sessions"]`,
a session cookie plus a CSRF token on changes) stands in for it.
"""

from __future__ import annotations

import hmac
from functools import wraps

from flask import current_app, request

from rollout.api.context import current_runtime
from rollout.api.errors import ApiError


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def tokens_match(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def check_admin() -> str:
    """Raise unless the request carries the admin token; return the actor for audit rows."""
    expected = current_runtime().settings.admin_token
    if not expected:
        raise ApiError(503, "admin_disabled", "ROLLOUT_ADMIN_TOKEN is not set on the server; "
                                              "changes through the API are refused")
    given = bearer_token()
    sessions = current_app.extensions.get("console_sessions")
    if given is None and sessions is not None:
        actor = sessions.admin_actor(request)  # None without a session; 403 for a change without its CSRF token
        if actor is not None:
            return actor
    if given is None:
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <ROLLOUT_ADMIN_TOKEN>")
    if not tokens_match(given, expected):
        raise ApiError(403, "forbidden", "the admin token is wrong")
    return request.headers.get("X-Rollout-Actor", "").strip()[:128] or "api"


def admin_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        check_admin()
        return view(*args, **kwargs)
    return wrapper
