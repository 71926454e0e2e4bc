"""Request bodies: size limit, JSON parsing and a pydantic model, with a 4xx naming the problem."""

from __future__ import annotations

import json
from typing import TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from rollout.api.errors import ApiError, bad_request

Model = TypeVar("Model", bound=BaseModel)


def json_body(max_bytes: int | None = None) -> object:
    """The parsed JSON body; 413 over `max_bytes`, 400 when it is not JSON."""
    if max_bytes is not None:
        request.max_content_length = max_bytes  # werkzeug answers 413 while reading
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise bad_request("the request body is empty; send a JSON object", "invalid_json")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}", "invalid_json") from None


def describe(exc: ValidationError) -> list[dict]:
    return [{"field": ".".join(str(p) for p in err["loc"]) or "(body)", "problem": err["msg"]}
            for err in exc.errors()]


def parse(model: type[Model], max_bytes: int | None = None) -> Model:
    """The body validated against `model` (400 with every field's problem otherwise)."""
    body = json_body(max_bytes)
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        fields = describe(exc)
        summary = "; ".join(f"{f['field']}: {f['problem']}" for f in fields)
        raise ApiError(400, "invalid_request", summary, fields=fields) from None


def limit_argument(default: int = 50, maximum: int = 1000) -> int:
    """The `limit` query parameter: a whole number from 1 to `maximum` (400 otherwise)."""
    try:
        limit = int(request.args.get("limit", str(default)))
    except ValueError:
        raise bad_request("limit must be a whole number") from None
    if not 1 <= limit <= maximum:
        raise bad_request(f"limit must be between 1 and {maximum}")
    return limit
