"""The console's routes: the page, its assets, login and logout, and its SVG charts.

Every response carries a strict Content-Security-Policy (scripts, styles and images from
the gateway only; no inline script) and is kept out of frames and caches.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from importlib import resources

from flask import Blueprint, Response, current_app, redirect, render_template, request

from rollout.analytics.figures import RANGES, InvalidRange, parse_range
from rollout.analytics.series import STEPS
from rollout.api.auth import tokens_match
from rollout.api.errors import ApiError, bad_request
from rollout.api.openapi import operation, query_parameter
from rollout.console.charts import MAX_WIDTH, MIN_WIDTH, WIDTH, Line, line_chart
from rollout.console.roles import version_roles
from rollout.console.sessions import CSRF_FIELD, ConsoleSessions
from rollout.controller.gates.registry import threshold_of

log = logging.getLogger(__name__)
bp = Blueprint("console", __name__, template_folder="templates")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
ASSETS = {"console.js": "text/javascript", "console.css": "text/css", "favicon.svg": "image/svg+xml"}
LOGIN_MESSAGES = {"failed": "The admin token is wrong.", "expired": "The form expired; try again.",
                  "disabled": "ROLLOUT_ADMIN_TOKEN is not set on the server: nobody can log in."}
# chart name -> (title, field of a series point, unit)
CHARTS = {
    "requests": ("Requests per second", "rate_per_s", "/s"),
    "p50": ("Latency p50", "p50_ms", "ms"),
    "p95": ("Latency p95", "p95_ms", "ms"),
    "p99": ("Latency p99", "p99_ms", "ms"),
    "errors": ("Error rate", "error_rate", "%"),
    "fallbacks": ("Fallback rate", "fallback_rate", "%"),
    "cache": ("Query cache hit rate", "cache_hit_rate", "%"),
    "similarity": ("Mean top similarity (each in its own space)", "mean_top_similarity", ""),
    "overlap": ("Shadow overlap (Jaccard of the top k)", "mean_overlap", "%"),
    "cost": ("Query embedding cost per point (served and shadow)", "cost_usd", "$"),
}
_RANGE = query_parameter("range", {"enum": list(RANGES), "default": "24h"}, "The window.")
_WIDTH = query_parameter("width", {"type": "integer", "minimum": MIN_WIDTH, "maximum": MAX_WIDTH, "default": WIDTH},
                         "The chart's width in pixels (the space the page has for it).")
_STAMP = query_parameter("t", {"type": "string"},
                         "Ignored: the page changes it to ask for a fresh picture rather than a cached one.")
_SVG = {"type": "string", "description": "An SVG document."}
_HTML = {"type": "string", "description": "An HTML page."}


class RecentValues:
    """Keeps a computed value for a short time, so the charts of one refresh share one query."""

    def __init__(self, ttl_s: float):
        self.ttl_s = ttl_s
        self._values: dict[tuple, tuple[float, object]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple, compute):
        now = time.monotonic()
        with self._lock:
            hit = self._values.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        value = compute()
        with self._lock:
            self._values = {k: v for k, v in self._values.items() if v[0] > now}
            self._values[key] = (now + self.ttl_s, value)
        return value


def _runtime():
    return current_app.extensions["rollout"]


def _sessions() -> ConsoleSessions:
    return current_app.extensions["console_sessions"]


def _recent() -> RecentValues:
    return current_app.extensions.setdefault(
        "console_recent", RecentValues(min(2.0, _runtime().settings.console_refresh_s / 2)))


def _width() -> int:
    raw = request.args.get("width", str(WIDTH))
    if not raw.isdigit() or not MIN_WIDTH <= int(raw) <= MAX_WIDTH:
        raise bad_request(f"width must be a whole number of pixels from {MIN_WIDTH} to {MAX_WIDTH}")
    return int(raw)


def _range() -> str:
    name = request.args.get("range", "24h")
    try:
        parse_range(name)
    except InvalidRange as exc:
        raise bad_request(str(exc), "invalid_range") from None
    return name


@bp.after_request
def _protect(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/console")
@operation("The operator console: the rollout now, baseline beside candidate, gates, history and (for a "
           "logged-in admin) the controls.", tags=("console",), content_type="text/html", ok=_HTML)
def page():
    sessions, settings = _sessions(), _runtime().settings
    session = sessions.read(request)
    response = Response(mimetype="text/html")
    if session is None:
        session = sessions.issue(request, response)
    response.set_data(render_template(
        "console.html", session=session, csrf_field=CSRF_FIELD, roles=version_roles(_runtime().router.roles),
        refresh_s=settings.console_refresh_s, ranges=list(RANGES), login_enabled=bool(settings.admin_token),
        login_message=LOGIN_MESSAGES.get(request.args.get("login", ""))))
    return response


@bp.get("/console/assets/<name>")
@operation("The console's script, style sheet and icon (served by the gateway: the page needs no other site).",
           tags=("console",), content_type="text/plain", ok={"type": "string"}, errors=(404,))
def asset(name: str):
    if name not in ASSETS:
        raise ApiError(404, "not_found", f"no console asset {name!r}")
    body = resources.files("rollout.console").joinpath("assets", name).read_bytes()
    response = Response(body, mimetype=ASSETS[name])
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.post("/console/login")
@operation("Log in with ROLLOUT_ADMIN_TOKEN (form fields token, name and csrf_token); sets the session cookie "
           "and goes back to the console.", tags=("console",), ok_status=303, content_type="text/html", ok=_HTML)
def login():
    sessions, expected = _sessions(), _runtime().settings.admin_token
    session = sessions.read(request)
    if session is None or not sessions.csrf_matches(session, request):
        return redirect("/console?login=expired", 303)
    if not expected:
        return redirect("/console?login=disabled", 303)
    if not tokens_match(request.form.get("token", ""), expected):
        log.warning("console login refused: wrong admin token from %s", request.remote_addr)
        return redirect("/console?login=failed", 303)
    name = " ".join(request.form.get("name", "").split())[:64]
    response = redirect("/console", 303)
    sessions.issue(request, response, admin=True, actor=f"console:{name}" if name else "console")
    log.info("console login as %s from %s", name or "console", request.remote_addr)
    return response


@bp.post("/console/logout")
@operation("Log out (form field csrf_token): the session cookie becomes a visitor's.", tags=("console",),
           ok_status=303, content_type="text/html", ok=_HTML)
def logout():
    sessions = _sessions()
    session = sessions.read(request)
    response = redirect("/console", 303)
    if session is not None and sessions.csrf_matches(session, request):
        sessions.issue(request, response)
    return response


@bp.get("/console/charts/<name>.svg")
@operation("A chart of /api/monitoring/series: the baseline and the candidate on the same axes.",
           tags=("console",), content_type="image/svg+xml", ok=_SVG, errors=(400, 404, 503),
           parameters=[_RANGE, _WIDTH, _STAMP], path={"name": {"enum": list(CHARTS)}})
def chart(name: str):
    if name not in CHARTS:
        raise ApiError(404, "not_found", f"no chart {name!r}; expected one of {', '.join(CHARTS)}")
    range_name = _range()
    series = _recent().get(("series", range_name), lambda: _runtime().figures.series(range_name))
    title, field, unit = CHARTS[name]
    roles = version_roles(_runtime().router.roles)
    lines = [Line(f"{version} ({role})", [(datetime.fromisoformat(p["at"]), p[field])
                                          for p in series["versions"].get(version, []) if p[field] is not None])
             for role, version in roles.items()]
    return _svg(line_chart(title, lines, datetime.fromisoformat(series["since"]),
                           datetime.fromisoformat(series["until"]), unit=unit, width=_width()))


@bp.get("/console/charts/gates/<gate>/<statistic>.svg")
@operation("A gate's statistic over time from /api/rollout/gates: its interval as a band, and the threshold the gate "
           "registry names for it.",
           tags=("console",), content_type="image/svg+xml", ok=_SVG, errors=(400, 503),
           parameters=[_RANGE, _WIDTH, _STAMP])
def gate_chart(gate: str, statistic: str):
    range_name = _range()
    since = datetime.now().astimezone() - parse_range(range_name)
    history = _recent().get(("gates", range_name),
                            lambda: _runtime().stages.store.gate_history(since, STEPS[range_name]))
    points, band, threshold = [], [], None
    for evaluation in history:
        at = datetime.fromisoformat(evaluation["decided_at"])
        for result in evaluation["gates"]:
            if result.get("name") != gate:
                continue
            values = result.get("values", {})
            value = values.get(statistic)
            if isinstance(value, int | float):
                points.append((at, float(value)))
                lower, upper = (values.get(bound_name(statistic, side)) for side in ("lower", "upper"))
                if isinstance(lower, int | float) and isinstance(upper, int | float):
                    band.append((at, float(lower), float(upper)))
            limit = threshold_of(gate, statistic, result.get("thresholds", {}))
            threshold = threshold if limit is None else limit
    unit = "ms" if statistic.endswith("_ms") else ("%" if "rate" in statistic else "")
    return _svg(line_chart(f"{gate}: {statistic}", [Line(statistic, points, band)], since,
                           datetime.now().astimezone(), unit=unit, threshold=threshold, width=_width()))


def bound_name(statistic: str, side: str) -> str:
    """The gates' naming of an interval: p95_v2_ms -> p95_v2_lower_ms, error_rate_v2 -> error_rate_v2_lower."""
    stem, unit = (statistic[:-3], "_ms") if statistic.endswith("_ms") else (statistic, "")
    return f"{stem}_{side}{unit}"


def _svg(document: str) -> Response:
    response = Response(document, mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "no-store"
    return response
