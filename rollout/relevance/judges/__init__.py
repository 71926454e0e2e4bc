"""Pairwise judges: given a query and two anonymised result lists, which serves the query better?

A registry: each judge is one module and one entry in `JUDGES` (RELEVANCE_JUDGE names it).
A judge only compares; sampling, the cost cap, the cache and the order swap are the
caller's (`rollout.relevance.judging`), the same for every judge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rollout.errors import ConfigError
from rollout.relevance.judges.base import Judge, JudgeError, Listed, Preference
from rollout.relevance.judges.google import GeminiJudge
from rollout.relevance.judges.lexical import LexicalOverlapJudge
from rollout.relevance.judges.openai import OpenAIJudge


@dataclass(frozen=True)
class JudgeSetup:
    """What a judge is built from: RELEVANCE_JUDGE, RELEVANCE_JUDGE_MODEL, RELEVANCE_JUDGE_TIMEOUT_S and
    the providers' credentials (the composition root reads them from the settings)."""

    judge: str = "none"  # a name in JUDGES, or none
    model: str | None = None  # None: the judge's default model
    timeout_s: float = 10.0
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    google_api_key: str | None = None
    google_base_url: str | None = None


def _openai(setup: JudgeSetup) -> Judge:
    if not setup.openai_api_key:
        raise ConfigError("RELEVANCE_JUDGE=openai needs OPENAI_API_KEY")
    return OpenAIJudge(api_key=setup.openai_api_key, base_url=setup.openai_base_url,
                       model=setup.model or "gpt-4o-mini", timeout_s=setup.timeout_s)


def _google(setup: JudgeSetup) -> Judge:
    if not setup.google_api_key:
        raise ConfigError("RELEVANCE_JUDGE=google needs GOOGLE_API_KEY")
    return GeminiJudge(api_key=setup.google_api_key, base_url=setup.google_base_url,
                       model=setup.model or "gemini-2.0-flash", timeout_s=setup.timeout_s)


JUDGES: dict[str, Callable[[JudgeSetup], Judge]] = {
    "lexical": lambda setup: LexicalOverlapJudge(),
    "openai": _openai,
    "google": _google,
}


def build_judge(setup: JudgeSetup) -> Judge | None:
    """The judge `setup.judge` (RELEVANCE_JUDGE) names, or None when it is `none`."""
    if setup.judge == "none":
        return None
    return JUDGES[setup.judge](setup)


__all__ = ["JUDGES", "GeminiJudge", "Judge", "JudgeError", "LexicalOverlapJudge", "Listed", "OpenAIJudge",
           "JudgeSetup", "Preference", "build_judge"]
