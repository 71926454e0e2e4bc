"""Console logins: a signed session cookie, and a CSRF token that every change must carry.

The cookie is signed with a key derived from ROLLOUT_ADMIN_TOKEN, so every gunicorn
worker accepts it and rotating the token ends every session. It holds no token, only
whether the visitor logged in, the name they gave for the audit, and their CSRF token;
it is HttpOnly, SameSite=Strict, and Secure when the request came over HTTPS.
A change (any method but GET/HEAD/OPTIONS) made with the cookie must send the CSRF
token in the X-CSRF-Token header (or the csrf_token form field), else it is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from flask import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from rollout.api.errors import ApiError

COOKIE = "rollout_console"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Session:
    csrf: str
    admin: bool = False
    actor: str = ""


class ConsoleSessions:
    def __init__(self, admin_token: str | None, max_age_s: float):
        key = (hmac.new(admin_token.encode(), b"rollout console session", hashlib.sha256).digest()
               if admin_token else secrets.token_bytes(32))  # no token: nobody can log in anyway
        self._signer = URLSafeTimedSerializer(key, salt="rollout-console")
        self.max_age_s = max_age_s

    def read(self, request: Request) -> Session | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data = self._signer.loads(raw, max_age=self.max_age_s)
        except BadSignature:
            return None
        return Session(data["csrf"], bool(data.get("admin")), data.get("actor", ""))

    def issue(self, request: Request, response: Response, *, admin: bool = False, actor: str = "") -> Session:
        """A new session (a new CSRF token too) in the response's cookie."""
        session = Session(secrets.token_urlsafe(32), admin, actor)
        value = self._signer.dumps({"csrf": session.csrf, "admin": admin, "actor": actor})
        response.set_cookie(COOKIE, value, max_age=int(self.max_age_s), path="/", httponly=True,
                            samesite="Strict", secure=request.is_secure)
        return session

    @staticmethod
    def csrf_matches(session: Session, request: Request) -> bool:
        given = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
        return hmac.compare_digest(given.encode(), session.csrf.encode())

    def admin_actor(self, request: Request) -> str | None:
        """The logged-in admin's actor name; None without a login; 403 for a change without the CSRF token."""
        session = self.read(request)
        if session is None or not session.admin:
            return None
        if request.method not in SAFE_METHODS and not self.csrf_matches(session, request):
            raise ApiError(403, "csrf_failed", f"a change from the console must send its {CSRF_HEADER} header")
        return session.actor
