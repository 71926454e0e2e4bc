"""Gemini Developer API embeddings (`gemini-embedding-001`) through the official `google-genai` SDK.

`models.embed_content` posts to `{base}/{api_version}/models/{model}:batchEmbedContents`
with one request per text; the API takes at most 100 per call, so batches are cut
to that. Below its native 3072 dimensions `gemini-embedding-001` answers vectors
that are *not* unit length, so every row is normalised here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import numpy as np
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from rollout.embedders.base import BatchedEmbedder, estimate_tokens
from rollout.embedders.retrying import Failure, RetryPolicy, retry_after_seconds
from rollout.errors import ConfigError

if TYPE_CHECKING:
    from rollout.config import Settings
    from rollout.version_spec import VersionSettings

MAX_TEXTS_PER_REQUEST = 100  # "at most 100 requests can be in one batch"
NATIVE_DIMENSIONS = {"gemini-embedding-001": 3072, "text-embedding-004": 768}
TASK_TYPES = frozenset({
    "RETRIEVAL_DOCUMENT", "RETRIEVAL_QUERY", "SEMANTIC_SIMILARITY", "CLASSIFICATION", "CLUSTERING",
    "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY"})


def _transport_errors() -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...]]:
    """(timeouts, all transport errors) of whichever httpx the SDK runs on; it raises them unwrapped."""
    timeouts, transport = [], []
    for name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        timeouts.append(module.TimeoutException)
        transport.append(module.TransportError)
    return tuple(timeouts), tuple(transport)


_TIMEOUTS, _TRANSPORT_ERRORS = _transport_errors()


def _is_key_error(details: object) -> bool:
    """Gemini answers a wrong key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID."""
    error = details.get("error", details) if isinstance(details, dict) else {}
    items = error.get("details") if isinstance(error, dict) else None
    return any(isinstance(item, dict) and item.get("reason") == "API_KEY_INVALID" for item in items or ())


def classify(exc: Exception) -> Failure | None:
    """How a google-genai exception reads to the retry layer (None: not the provider's doing)."""
    if isinstance(exc, genai_errors.APIError):
        headers = getattr(getattr(exc, "response", None), "headers", None)
        return Failure(status=exc.code, detail=str(exc.message or exc.status or ""),
                       retry_after_s=retry_after_seconds(headers), auth=_is_key_error(exc.details))
    if isinstance(exc, _TIMEOUTS):
        return Failure(detail="request timed out", network=True)
    if isinstance(exc, _TRANSPORT_ERRORS):
        return Failure(detail=f"connection failed ({type(exc).__name__})", network=True)
    if isinstance(exc, genai_errors.UnknownApiResponseError):
        return Failure(detail="unusable answer (not JSON)")
    return None


class GoogleEmbedder(BatchedEmbedder):
    """`client.models.embed_content` in batches of at most 100, with the SDK's retries off.

    `task_type` is fixed per instance: `RETRIEVAL_DOCUMENT` for the corpus,
    `RETRIEVAL_QUERY` for an embedder that embeds questions.
    """

    provider = "google"

    def __init__(self, *, api_key: str, base_url: str | None = None,
                 model: str = "gemini-embedding-001", dimensions: int = 1536,
                 timeout_s: float = 10.0, max_attempts: int = 5, batch_size: int = 100,
                 retry_wait_s: float = 0.5, task_type: str = "RETRIEVAL_DOCUMENT"):
        super().__init__()
        native = NATIVE_DIMENSIONS.get(model.removeprefix("models/"))
        if native is not None and dimensions > native:
            raise ConfigError(f"{model} returns at most {native} dimensions, not {dimensions}; "
                              f"choose gemini-embedding-001 or lower the dimensions")
        if task_type not in TASK_TYPES:
            raise ConfigError(f"unknown Gemini task type {task_type!r}; "
                              f"expected one of {', '.join(sorted(TASK_TYPES))}")
        if batch_size < 1:
            raise ConfigError("the embedding batch size must be at least 1")
        self.model = model
        self.dimensions = dimensions
        self.task_type = task_type
        self.batch_size = min(batch_size, MAX_TEXTS_PER_REQUEST)
        options = types.HttpOptions(base_url=base_url, timeout=max(1, round(timeout_s * 1000)),
                                    retry_options=types.HttpRetryOptions(attempts=1))
        # vertexai=False: GOOGLE_GENAI_USE_VERTEXAI in the environment must not switch APIs.
        self._client = genai.Client(api_key=api_key, vertexai=False, http_options=options)
        self._config = types.EmbedContentConfig(output_dimensionality=dimensions, task_type=task_type)
        self._retry = RetryPolicy(provider=self.provider, key_variable="GOOGLE_API_KEY", secret=api_key,
                                  classify=classify, max_attempts=max_attempts, wait_s=retry_wait_s)

    def _embed_batch(self, batch: list[str]) -> np.ndarray:
        # One Content per text: a plain list of strings is merged into a single
        # content (one vector) for the SDK's multimodal embedding models.
        contents = [types.Content(parts=[types.Part(text=text)]) for text in batch]
        response = self._retry.call(lambda: self._client.models.embed_content(
            model=self.model, contents=contents, config=self._config))
        vectors = self.vectors_from([e.values or [] for e in response.embeddings or []], len(batch))
        reported = response.usage_metadata.prompt_token_count if response.usage_metadata else None
        # the Developer API reports no token count for embeddings (only Vertex carries
        # `metadata.billable_character_count`): without one, the count is an estimate
        self.usage.record(requests=1, texts=len(batch), tokens=reported or estimate_tokens(batch))
        return vectors


def build(version: VersionSettings, settings: Settings, for_query: bool) -> GoogleEmbedder:
    """The `google` provider: GOOGLE_API_KEY, GOOGLE_BASE_URL; queries and documents embed as such."""
    from rollout.embedders import api_key, call_options
    return GoogleEmbedder(api_key=api_key(version, settings), base_url=settings.account("google").base_url,
                          task_type="RETRIEVAL_QUERY" if for_query else "RETRIEVAL_DOCUMENT",
                          **call_options(version, settings, for_query))
