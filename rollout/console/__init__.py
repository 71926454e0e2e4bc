"""The operator console: `GET /console`, one page over the same HTTP API the CLI uses.

`init_app(app)` registers it unless ROLLOUT_CONSOLE=off. The page itself holds no
figures: its script polls the JSON endpoints (status, dashboard, series, breakers,
gates, and the history of /api/history/* that needs no login) and posts changes to
the same admin endpoints as `rollout stage ...` and `rollout breaker ...`, with the
console's session cookie and CSRF token in place of the bearer token.
"""

from __future__ import annotations

from flask import Flask

from rollout.console.sessions import ConsoleSessions
from rollout.console.views import bp


def init_app(app: Flask) -> None:
    settings = app.extensions["rollout"].settings
    if not settings.console:
        return
    app.extensions["console_sessions"] = ConsoleSessions(settings.admin_token, settings.console_session_s)
    app.register_blueprint(bp)
