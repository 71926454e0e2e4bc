"""The Flask app factory, as in Flask's tutorial: `create_app(config=None)`.

gunicorn calls `rollout.app:create_app()` in each worker (no preload), so every
worker builds its own pool, Redis client and replicator thread after the fork.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from flask import Flask

from rollout import api, console
from rollout.api import context
from rollout.config import Settings
from rollout.errors import ConfigError
from rollout.runtime import Runtime

MAX_BODY_BYTES = 1024 * 1024  # endpoints may lower it; alert payloads may use all of it


def create_app(config: Settings | Mapping[str, str] | None = None, *, runtime: Runtime | None = None) -> Flask:
    """Build the gateway. `config`: Settings, or env-style overrides over the environment and .env."""
    settings = config if isinstance(config, Settings) else Settings.load(overrides=config)
    if runtime is None:
        if settings.database_url is None or settings.redis_url is None:
            raise ConfigError("DATABASE_URL and REDIS_URL must be set for the app; `rollout serve` sets them "
                              "(starting the embedded services when they are unset)")
        runtime = Runtime(settings, settings.database_url, settings.redis_url).start()
    app = Flask("rollout")
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, JSON_SORT_KEYS=False)
    context.install(app, runtime)
    api.init_app(app)
    console.init_app(app)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return app
