"""An OpenAI chat model as the pairwise judge, through the official SDK (`chat.completions`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import openai

from rollout.relevance.judges.base import (
    JudgeError,
    Listed,
    Preference,
    prompt,
    read_answer,
)

if TYPE_CHECKING:
    from rollout.relevance.judges import JudgeSetup

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"


def build(setup: JudgeSetup) -> OpenAIJudge:
    """RELEVANCE_JUDGE=openai: the openai account's key and base URL (OPENAI_API_KEY, OPENAI_BASE_URL)."""
    return OpenAIJudge(api_key=setup.account.api_key or "", base_url=setup.account.base_url,
                       model=setup.model or DEFAULT_MODEL, timeout_s=setup.timeout_s)


class OpenAIJudge:
    def __init__(self, *, api_key: str, base_url: str | None = None, model: str = DEFAULT_MODEL,
                 timeout_s: float = 10.0):
        self.model = model
        self.name = f"openai:{model}"
        # No SDK retries: a failed verdict is counted and skipped, never retried into the budget.
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url or DEFAULT_BASE_URL, timeout=timeout_s,
                                     max_retries=0)

    def prefer(self, query: str, first: Sequence[Listed], second: Sequence[Listed]) -> Preference:
        try:
            response = self._client.chat.completions.create(
                model=self.model, temperature=0, max_tokens=2,
                messages=[{"role": "user", "content": prompt(query, first, second)}])
        except openai.APIStatusError as exc:
            raise JudgeError(f"http_{exc.status_code}", f"{self.name} answered {exc.status_code}") from None
        except openai.APITimeoutError:
            raise JudgeError("timeout", f"{self.name} did not answer in time") from None
        except openai.OpenAIError as exc:
            raise JudgeError("connection", f"{self.name}: {type(exc).__name__}") from None
        usage = response.usage
        tokens = (usage.total_tokens or 0) if usage else 0
        text = response.choices[0].message.content if response.choices else None
        return Preference(read_answer(text), tokens)
