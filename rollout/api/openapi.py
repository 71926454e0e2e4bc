"""The OpenAPI 3.1 document, built from the routes themselves.

Each view declares its operation with `@operation(...)` beside its code; the
document walks the app's URL map, so a route cannot exist undocumented (the test
suite checks both directions) and request bodies use the same pydantic models
that validate them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from flask import Flask
from pydantic import BaseModel

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string", "description": "A stable code, e.g. invalid_request."},
                   "detail": {"type": "string", "description": "What went wrong, for a person."}},
}
STANDARD_ERRORS = {
    400: "Invalid input: malformed JSON, a missing or wrong field or query argument (the detail names it), or "
         "text that cannot be stored (a NUL character, a lone surrogate) anywhere in the request.",
    401: "No bearer token was sent.",
    403: "The bearer token is wrong.",
    404: "Not found.",
    413: "The body is larger than the endpoint accepts.",
    503: "A dependency (PostgreSQL, Redis) is unavailable, or the feature is not configured.",
}


@dataclass
class Operation:
    summary: str
    tags: tuple[str, ...] = ()
    body: type[BaseModel] | dict | None = None
    ok: dict | None = None  # JSON schema of the success body
    ok_status: int = 200
    errors: tuple[int, ...] = ()
    admin: bool = False
    parameters: list[dict] = field(default_factory=list)
    path: dict[str, dict] = field(default_factory=dict)  # a path argument's schema, when not any string
    content_type: str = "application/json"


def operation(summary: str, **details):
    """Attach an Operation to a view function (put it above the route decorator's function)."""
    def attach(view):
        view.openapi = Operation(summary, **details)
        return view
    return attach


def query_parameter(name: str, schema: dict, description: str, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


_CONVERTER = re.compile(r"<(?:[a-z_]+:)?([a-zA-Z_][a-zA-Z0-9_]*)>")


def openapi_path(rule: str) -> str:
    return _CONVERTER.sub(r"{\1}", rule)


def _body_schema(body, components: dict) -> dict:
    if isinstance(body, dict):
        return body
    schema = body.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    components[body.__name__] = schema
    return {"$ref": f"#/components/schemas/{body.__name__}"}


def build_document(app: Flask) -> dict:
    components: dict[str, dict] = {"Error": ERROR_SCHEMA}
    paths: dict[str, dict] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        op: Operation | None = getattr(view, "openapi", None)
        if op is None:
            continue
        path = openapi_path(rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation_object(rule, method, op, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "RAG rollout controller", "version": "0.1.0",
                 "description": "Routes RAG queries between a baseline and a candidate embedding version, "
                                "measures both, rolls back on alerts and drives staged rollouts."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer",
                                               "description": "ROLLOUT_ADMIN_TOKEN"}},
        },
    }


def _operation_object(rule, method: str, op: Operation, components: dict) -> dict:
    params = [{"name": arg, "in": "path", "required": True, "schema": op.path.get(arg, {"type": "string"})}
              for arg in sorted(rule.arguments)]
    obj: dict = {"operationId": f"{rule.endpoint.replace('.', '_')}_{method.lower()}",
                 "summary": op.summary, "tags": list(op.tags), "parameters": params + op.parameters}
    if op.body is not None:
        obj["requestBody"] = {"required": True,
                              "content": {"application/json": {"schema": _body_schema(op.body, components)}}}
    ok_content = {op.content_type: {"schema": op.ok or {"type": "object"}}}
    obj["responses"] = {str(op.ok_status): {"description": "Success.", "content": ok_content}}
    # every request's text is checked (rollout.api.validation); PostgreSQL or Redis down is a 503 anywhere
    codes = set(op.errors) | {400, 503}
    if op.admin:
        codes |= {401, 403, 503}
        obj["security"] = [{"adminToken": []}]
    for code in sorted(codes):
        obj["responses"][str(code)] = {
            "description": STANDARD_ERRORS.get(code, "Error."),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    return obj
