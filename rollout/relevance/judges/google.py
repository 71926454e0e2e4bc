"""A Gemini chat model as the pairwise judge, through the official `google-genai` SDK."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from rollout.embedders.google import _TIMEOUTS, _TRANSPORT_ERRORS
from rollout.relevance.judges.base import (
    JudgeError,
    Listed,
    Preference,
    prompt,
    read_answer,
)

if TYPE_CHECKING:
    from rollout.relevance.judges import JudgeSetup

DEFAULT_MODEL = "gemini-2.0-flash"


def build(setup: JudgeSetup) -> GeminiJudge:
    """RELEVANCE_JUDGE=google: the google account's key and base URL (GOOGLE_API_KEY, GOOGLE_BASE_URL)."""
    return GeminiJudge(api_key=setup.account.api_key or "", base_url=setup.account.base_url,
                       model=setup.model or DEFAULT_MODEL, timeout_s=setup.timeout_s)


class GeminiJudge:
    def __init__(self, *, api_key: str, base_url: str | None = None, model: str = DEFAULT_MODEL,
                 timeout_s: float = 10.0):
        self.model = model
        self.name = f"google:{model}"
        options = types.HttpOptions(base_url=base_url, timeout=max(1, round(timeout_s * 1000)),
                                    retry_options=types.HttpRetryOptions(attempts=1))
        self._client = genai.Client(api_key=api_key, vertexai=False, http_options=options)
        self._config = types.GenerateContentConfig(temperature=0, max_output_tokens=2)

    def prefer(self, query: str, first: Sequence[Listed], second: Sequence[Listed]) -> Preference:
        try:
            response = self._client.models.generate_content(model=self.model, contents=prompt(query, first, second),
                                                            config=self._config)
        except genai_errors.APIError as exc:
            raise JudgeError(f"http_{exc.code}", f"{self.name} answered {exc.code}") from None
        except _TIMEOUTS:
            raise JudgeError("timeout", f"{self.name} did not answer in time") from None
        except _TRANSPORT_ERRORS as exc:
            raise JudgeError("connection", f"{self.name}: {type(exc).__name__}") from None
        usage = response.usage_metadata
        tokens = (usage.total_token_count or 0) if usage else 0
        return Preference(read_answer(response.text), tokens)
