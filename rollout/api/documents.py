"""`POST /api/documents` (upsert by stable ID, embedded for every written version) and
`DELETE /api/documents/<id>`; both need the admin token."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, jsonify
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rollout.api.auth import check_admin
from rollout.api.context import current_runtime
from rollout.api.errors import ApiError
from rollout.api.openapi import operation
from rollout.api.validation import parse
from rollout.documents import Document
from rollout.embedders import EmbeddingError, EmbeddingRejected

bp = Blueprint("documents", __name__)

MAX_BATCH = 100
MAX_TITLE_CHARS = 1000
MAX_CONTENT_BYTES = 64 * 1024
MAX_METADATA_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024
ID_PATTERN = r"^[^\x00-\x1f\x7f/]{1,256}$"


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


class DocumentIn(BaseModel):
    """One document. `id` is its stable identifier: posting it again updates it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(pattern=ID_PATTERN, description="Stable ID: 1-256 characters, no '/' or control characters.")
    title: str = Field(min_length=1, max_length=MAX_TITLE_CHARS, description="Not blank.",
                       json_schema_extra={"pattern": r"\S"})
    content: str = Field(min_length=1, description="At most 64 KiB of UTF-8; not blank.",
                         json_schema_extra={"pattern": r"\S"})
    category: str = Field("general", min_length=1, max_length=128)
    metadata: dict[str, Any] = Field(default_factory=dict, description="A JSON object, at most 16 KiB.")

    _title = field_validator("title")(_not_blank)

    @field_validator("content")
    @classmethod
    def _content(cls, value: str) -> str:
        _not_blank(value)
        if len(value.encode("utf-8")) > MAX_CONTENT_BYTES:
            raise ValueError(f"longer than {MAX_CONTENT_BYTES} bytes")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict) -> dict:
        if len(json.dumps(value).encode("utf-8")) > MAX_METADATA_BYTES:
            raise ValueError(f"larger than {MAX_METADATA_BYTES} bytes as JSON")
        return value

    def document(self) -> Document:
        return Document(self.id, self.title, self.content, self.category, self.metadata)


class DocumentUpsert(BaseModel):
    """The body of POST /api/documents: `{"documents": [...]}`, or one document object on its own."""

    model_config = ConfigDict(extra="forbid", strict=True)

    documents: list[DocumentIn] = Field(min_length=1, max_length=MAX_BATCH,
                                        description="Distinct ids: the same id twice in one request is a 400.")

    @model_validator(mode="before")
    @classmethod
    def _single(cls, body):
        if isinstance(body, dict) and "documents" not in body:
            return {"documents": [body]}
        return body

    @model_validator(mode="after")
    def _distinct(self):
        ids = [d.id for d in self.documents]
        if len(set(ids)) != len(ids):
            raise ValueError("the same id appears twice in one request")
        return self


UPSERT_SCHEMA = {
    "type": "object",
    "properties": {
        "inserted": {"type": "integer"}, "updated": {"type": "integer"}, "unchanged": {"type": "integer"},
        "versions": {"type": "array", "items": {"type": "string"},
                     "description": "Versions written: the baseline, and every other version that is neither retired "
                                    "nor read-only once its migration started."},
        "embedded": {"type": "object", "additionalProperties": {"type": "integer"},
                     "description": "Vectors stored per version (new or changed text only)."},
    },
}


def _writer():
    return current_runtime().document_writer


@bp.post("/api/documents")
@operation("Insert or update documents by stable ID, embedded for the baseline and each version being migrated; "
           "nothing is stored if an embedding fails.", tags=("documents",), body=DocumentUpsert,
           ok=UPSERT_SCHEMA, admin=True, errors=(413, 422))
def upsert_documents():
    check_admin()
    body = parse(DocumentUpsert, max_bytes=MAX_BODY_BYTES)
    try:
        result = _writer().upsert([d.document() for d in body.documents])
    except EmbeddingRejected as exc:
        raise ApiError(422, "embedding_rejected", f"nothing was stored: {exc}") from None
    except EmbeddingError as exc:
        raise ApiError(503, "embedding_unavailable", f"nothing was stored: {exc}") from None
    return jsonify(result.as_json())


@bp.delete("/api/documents/<path:document_id>")
@operation("Delete a document and its vectors in every version.", tags=("documents",), admin=True,
           errors=(404,))
def delete_document(document_id: str):
    check_admin()
    if not _writer().delete(document_id):
        raise ApiError(404, "not_found", f"no document {document_id!r}")
    return jsonify({"deleted": document_id})

