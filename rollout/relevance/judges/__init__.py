"""Pairwise judges: given a query and two anonymised result lists, which serves the query better?

A registry: each judge is one module and one entry in `JUDGES` (RELEVANCE_JUDGE names it).
A judge only compares; sampling, the cost cap, the cache and the order swap are the
caller's (`rollout.relevance.judging`), the same for every judge.
"""

from __future__ import annotations

from collections.abc import Callable

from rollout.config import Settings
from rollout.errors import ConfigError
from rollout.relevance.judges.base import Judge, JudgeError, Listed, Preference
from rollout.relevance.judges.google import GeminiJudge
from rollout.relevance.judges.lexical import LexicalOverlapJudge
from rollout.relevance.judges.openai import OpenAIJudge


def _openai(settings: Settings) -> Judge:
    if not settings.openai_api_key:
        raise ConfigError("RELEVANCE_JUDGE=openai needs OPENAI_API_KEY")
    return OpenAIJudge(api_key=settings.openai_api_key, base_url=settings.openai_base_url,
                       model=settings.relevance_judge_model or "gpt-4o-mini",
                       timeout_s=settings.relevance_judge_timeout_s)


def _google(settings: Settings) -> Judge:
    if not settings.google_api_key:
        raise ConfigError("RELEVANCE_JUDGE=google needs GOOGLE_API_KEY")
    return GeminiJudge(api_key=settings.google_api_key, base_url=settings.google_base_url,
                       model=settings.relevance_judge_model or "gemini-2.0-flash",
                       timeout_s=settings.relevance_judge_timeout_s)


JUDGES: dict[str, Callable[[Settings], Judge]] = {
    "lexical": lambda settings: LexicalOverlapJudge(),
    "openai": _openai,
    "google": _google,
}


def build_judge(settings: Settings) -> Judge | None:
    """The judge RELEVANCE_JUDGE names, or None when it is `none`."""
    if settings.relevance_judge == "none":
        return None
    return JUDGES[settings.relevance_judge](settings)


__all__ = ["JUDGES", "GeminiJudge", "Judge", "JudgeError", "LexicalOverlapJudge", "Listed", "OpenAIJudge",
           "Preference", "build_judge"]
