"""`POST /api/rag/feedback`: a client's judgement of an answer, kept with the version that gave it."""

from __future__ import annotations

from typing import Literal

from flask import Blueprint, jsonify
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rollout.api.context import current_runtime
from rollout.api.errors import ApiError
from rollout.api.openapi import operation
from rollout.api.validation import parse, whole_number
from rollout.relevance.feedback import FeedbackStore

bp = Blueprint("feedback", __name__)

MAX_BODY_BYTES = 4 * 1024


class FeedbackRequest(BaseModel):
    """The body of POST /api/rag/feedback."""

    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$",
                            description="The request_id that POST /api/rag/query returned.")
    document_id: str | None = Field(None, min_length=1, max_length=256,
                                    description="The result the feedback is about; omit for the whole answer.")
    kind: Literal["relevant", "not_relevant", "grade", "clicked", "cited"] = Field(
        description="relevant / not_relevant: explicit judgement; grade: 0-3 in value; clicked, cited: implicit.")
    value: whole_number(0, 3) | None = Field(None, description="grade only: 0 (not relevant) to 3 (answers it).")

    @model_validator(mode="after")
    def _value_for_grade_only(self):
        if self.kind == "grade" and self.value is None:
            raise ValueError("kind grade needs a value from 0 to 3")
        if self.kind != "grade" and self.value is not None:
            raise ValueError(f"kind {self.kind} takes no value (only grade does)")
        return self


# The body as documented: the model's schema, plus its cross-field rule (only a grade carries a value).
FEEDBACK_BODY = {**FeedbackRequest.model_json_schema(),
                 "if": {"properties": {"kind": {"const": "grade"}}, "required": ["kind"]},
                 "then": {"required": ["value"], "properties": {"value": {"type": "integer"}}},
                 "else": {"properties": {"value": {"type": "null"}}}}

FEEDBACK_SCHEMA = {
    "type": "object",
    "required": ["request_id", "kind", "version", "status"],
    "properties": {
        "request_id": {"type": "string"}, "document_id": {"type": ["string", "null"]},
        "kind": {"type": "string"}, "value": {"type": ["integer", "null"]},
        "version": {"type": "string", "description": "The version that answered the request."},
        "category": {"type": ["string", "null"]},
        "status": {"enum": ["recorded", "updated"],
                   "description": "updated: this (request, document, kind) was already recorded; its value "
                                  "was replaced, it counts once."}},
}


@bp.post("/api/rag/feedback")
@operation("Feedback on an answer (relevant, not_relevant, grade 0-3, clicked, cited), tied to the version "
           "that answered through request_id; sending it again replaces it. 404: no answered query has "
           "this request_id (query analytics off, or not yet written).", tags=("rag",),
           body=FEEDBACK_BODY, ok=FEEDBACK_SCHEMA, errors=(404, 413, 503))
def feedback():
    body = parse(FeedbackRequest, max_bytes=MAX_BODY_BYTES)
    runtime = current_runtime()
    store = FeedbackStore(runtime.pool, runtime.metrics)
    row = store.record(body.request_id, body.kind, body.document_id, body.value)
    if row is None and runtime.query_log.pending:  # the answer may still wait in this worker's queue
        runtime.query_log.flush()
        row = store.record(body.request_id, body.kind, body.document_id, body.value)
    if row is None:
        raise ApiError(404, "unknown_request", f"no answered query has request_id {body.request_id!r} "
                                               "(query analytics must be on; rows are written within a second)")
    return jsonify(row.as_json())
