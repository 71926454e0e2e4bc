"""Request input: size limit, JSON parsing and a pydantic model, with a 4xx naming the problem.

Every string a client sends (body keys and values, path, query arguments, headers) must be
text PostgreSQL can store: no NUL character and no lone surrogate. Checking it here, before
any view runs, keeps such input from ever reaching the database as a 500, or a search as a
version's failure.
"""

from __future__ import annotations

import json
from typing import Annotated, TypeVar

from flask import current_app, request
from pydantic import BaseModel, BeforeValidator, Field, ValidationError

from rollout.api.errors import ApiError, bad_request

Model = TypeVar("Model", bound=BaseModel)


def _whole_number(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def whole_number(minimum: int, maximum: int) -> object:
    """An integer field in [minimum, maximum]. JSON Schema counts 5.0 as an integer; so do the endpoints
    (5.5, "5" and true stay refused). The bounds sit inside, so the documented schema keeps them."""
    return Annotated[int, Field(ge=minimum, le=maximum), BeforeValidator(_whole_number)]


def json_body(max_bytes: int | None = None) -> object:
    """The parsed JSON body; 413 over `max_bytes`, 400 when it is not JSON."""
    if max_bytes is not None:
        request.max_content_length = max_bytes  # werkzeug answers 413 while reading
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise bad_request("the request body is empty; send a JSON object", "invalid_json")
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}", "invalid_json") from None
    except RecursionError:
        raise bad_request("the request body is nested too deeply", "invalid_json") from None
    check_storable(body)
    return body


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def text_problem(value: str) -> str | None:
    """Why PostgreSQL could not store `value` as text, or None."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    return None


def check_text(value: str, where: str) -> None:
    problem = text_problem(value)
    if problem is not None:
        raise bad_request(f"{where} {problem}", fields=[{"field": where, "problem": problem}])


def check_storable(value: object, where: str = "(body)") -> None:
    """400 when any key or string inside a parsed JSON value cannot be stored as text (a loop, not
    recursion: JSON nested as deep as the parser allows must not exhaust the stack)."""
    pending = [(value, where)]
    while pending:
        value, where = pending.pop()
        if isinstance(value, str):
            check_text(value, where)
        elif isinstance(value, dict):
            for key, item in value.items():
                check_text(key, f"a key of {where}")
                pending.append((item, key if where == "(body)" else f"{where}.{key}"))
        elif isinstance(value, list):
            pending.extend((item, f"{where}[{index}]") for index, item in enumerate(value))


def check_request() -> None:
    """Before every view: storable text everywhere, and only the documented query arguments."""
    check_request_text()
    check_query_arguments()


def check_query_arguments() -> None:
    """An endpoint that documents query arguments refuses others (`?limt=5` is a typo, not a default)."""
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    operation = getattr(view, "openapi", None)
    known = {p["name"] for p in getattr(operation, "parameters", ()) if p["in"] == "query"}
    unknown = sorted(set(request.args) - known)
    if known and unknown:
        raise bad_request(f"unknown query argument {', '.join(map(repr, unknown))}; this endpoint takes "
                          f"{', '.join(sorted(known))}")


def check_request_text() -> None:
    """Path, query arguments, cookies and headers: the same rule as body strings."""
    check_text(request.path, "the path")
    for name, value in request.args.items(multi=True):
        check_text(name, "a query argument's name")
        check_text(value, f"query argument {name}")
    for name, value in request.cookies.items(multi=True):
        check_text(value, f"cookie {name}")
    for name, value in request.headers.items():
        check_text(value, f"header {name}")


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
