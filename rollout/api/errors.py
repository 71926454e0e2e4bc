"""Every error leaves as JSON `{error, detail}`: never an HTML page, never a traceback."""

from __future__ import annotations

import logging

import psycopg
import redis
from flask import Flask, jsonify
from psycopg_pool import PoolTimeout
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error meant for the client: HTTP status, a stable code, a readable detail."""

    def __init__(self, status: int, error: str, detail: str, *, headers: dict[str, str] | None = None, **extra):
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    def response(self):
        body = {"error": self.error, "detail": self.detail, **self.extra}
        return jsonify(body), self.status, self.headers


def bad_request(detail: str, error: str = "invalid_request", **extra) -> ApiError:
    return ApiError(400, error, detail, **extra)


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return exc.response()

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        detail = exc.description or exc.name
        if exc.code == 413:
            detail = "the request body is larger than this endpoint accepts"
        response = jsonify({"error": code, "detail": detail})
        if exc.code == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response, exc.code

    @app.errorhandler(psycopg.OperationalError)
    @app.errorhandler(PoolTimeout)
    def _database_down(exc: Exception):
        log.warning("database unavailable: %s", exc)
        return jsonify({"error": "database_unavailable", "detail": "PostgreSQL is unreachable; retry later"}), 503

    @app.errorhandler(redis.RedisError)
    def _redis_down(exc: Exception):
        log.warning("redis unavailable: %s", exc)
        return jsonify({"error": "redis_unavailable", "detail": "Redis is unreachable; retry later"}), 503

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return jsonify({"error": "internal_error", "detail": "an unexpected error occurred; see the server log"}), 500
