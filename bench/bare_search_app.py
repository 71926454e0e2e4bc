"""The baseline of bench/gateway.py: a bare Flask endpoint doing only the search.

Same database, same pool settings, same VersionBackend search as the gateway; no
routing, flags, breaker, validation or metrics. Served by the same gunicorn config.
"""

from flask import Flask, jsonify, request

from rollout.backends import VersionBackend
from rollout.config import Settings
from rollout.database import open_pool
from rollout.embedders import build_embedder


def create_app() -> Flask:
    settings = Settings.load()
    version = settings.version("v2")
    backend = VersionBackend(version, build_embedder(version, settings, purpose="query"),
                             open_pool(settings.database_url, settings))
    app = Flask("bare-search")

    @app.post("/search")
    def search():
        body = request.get_json()
        result = backend.search(body["query"], body.get("k", 10))
        return jsonify({"results": [hit.as_json() for hit in result.hits]})

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    return app
