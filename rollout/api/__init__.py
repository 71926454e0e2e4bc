"""The HTTP API: one blueprint per resource, JSON errors everywhere."""

from __future__ import annotations

from flask import Flask

from rollout.api import documents, errors, flags, rag, system

BLUEPRINTS = (rag.bp, flags.bp, system.bp, documents.bp)


def init_app(app: Flask) -> None:
    errors.init_app(app)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
