"""OpenAI embeddings (`text-embedding-3-*`) through the official SDK, shortened with `dimensions`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import openai

from rollout.embedders.base import BatchedEmbedder, EmbeddingError
from rollout.embedders.retrying import Failure, RetryPolicy, retry_after_seconds
from rollout.errors import ConfigError

if TYPE_CHECKING:
    from rollout.config import Settings
    from rollout.version_spec import VersionSettings

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_INPUTS_PER_REQUEST = 2048  # the API's limit on `input` array length
NATIVE_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072,
                     "text-embedding-ada-002": 1536}
FIXED_DIMENSIONS = frozenset({"text-embedding-ada-002"})  # no `dimensions` parameter


def classify(exc: Exception) -> Failure | None:
    """How an OpenAI SDK exception reads to the retry layer (None: not the provider's doing)."""
    if isinstance(exc, openai.APIStatusError):
        body = exc.body
        detail = body.get("message") if isinstance(body, dict) else body
        return Failure(status=exc.status_code, detail=str(detail or ""),
                       retry_after_s=retry_after_seconds(exc.response.headers))
    if isinstance(exc, openai.APITimeoutError):
        return Failure(detail="request timed out", network=True)
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        return Failure(detail=f"connection failed ({type(cause).__name__ if cause else 'no answer'})",
                       network=True)
    if isinstance(exc, openai.OpenAIError):
        return Failure(detail=f"unusable answer ({type(exc).__name__})")
    return None


class OpenAIEmbedder(BatchedEmbedder):
    """`client.embeddings.create` in batches, with the SDK's retries off (see `retrying`)."""

    provider = "openai"

    def __init__(self, *, api_key: str, base_url: str | None = None,
                 model: str = "text-embedding-3-small", dimensions: int = 768,
                 timeout_s: float = 10.0, max_attempts: int = 5, batch_size: int = 100,
                 retry_wait_s: float = 0.5):
        super().__init__()
        native = NATIVE_DIMENSIONS.get(model)
        if model in FIXED_DIMENSIONS and dimensions != native:
            raise ConfigError(f"{model} always returns {native} dimensions, not {dimensions}")
        if native is not None and dimensions > native:
            raise ConfigError(f"{model} returns at most {native} dimensions, not {dimensions}")
        if batch_size < 1:
            raise ConfigError("the embedding batch size must be at least 1")
        self.model = model
        self.dimensions = dimensions
        self.batch_size = min(batch_size, MAX_INPUTS_PER_REQUEST)
        self._send_dimensions = model not in FIXED_DIMENSIONS
        # An explicit base URL, so OPENAI_BASE_URL reaches the SDK only through Settings.
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url or DEFAULT_BASE_URL,
                                     timeout=timeout_s, max_retries=0)
        self._retry = RetryPolicy(provider=self.provider, key_variable="OPENAI_API_KEY", secret=api_key,
                                  classify=classify, max_attempts=max_attempts, wait_s=retry_wait_s)

    def _embed_batch(self, batch: list[str]) -> np.ndarray:
        extra = {"dimensions": self.dimensions} if self._send_dimensions else {}
        response = self._retry.call(lambda: self._client.embeddings.create(
            model=self.model, input=batch, encoding_format="float", **extra))
        items = sorted(response.data, key=lambda item: item.index)
        if [item.index for item in items] != list(range(len(items))):
            raise EmbeddingError(f"{self.model}: answer indexes are not 0..{len(items) - 1}")
        # The API already answers unit vectors, shortened or not; renormalising in float32 is cheap
        # and keeps the contract exact whatever the wire rounding.
        vectors = self.vectors_from([item.embedding for item in items], len(batch))
        usage = response.usage
        tokens = (usage.prompt_tokens or usage.total_tokens or 0) if usage else 0
        self.usage.record(requests=1, texts=len(batch), tokens=tokens)
        return vectors


def build(version: VersionSettings, settings: Settings, for_query: bool) -> OpenAIEmbedder:
    """The `openai` provider: OPENAI_API_KEY, OPENAI_BASE_URL."""
    from rollout.embedders import api_key, call_options
    return OpenAIEmbedder(api_key=api_key(version, settings), base_url=settings.account("openai").base_url,
                          **call_options(version, settings, for_query))
