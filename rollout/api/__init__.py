"""The HTTP API: one blueprint per resource, JSON errors everywhere."""

from __future__ import annotations

from flask import Flask

from rollout.api import alerts, breaker, documents, errors, feedback, flags, history, monitoring, rag, stages, system
from rollout.api.validation import check_request

BLUEPRINTS = (rag.bp, flags.bp, system.bp, monitoring.bp, alerts.bp, breaker.bp, documents.bp, stages.bp,
              feedback.bp, history.bp)


def init_app(app: Flask) -> None:
    errors.init_app(app)
    app.before_request(check_request)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
