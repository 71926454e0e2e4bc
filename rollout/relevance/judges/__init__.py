"""Pairwise judges: given a query and two anonymised result lists, which serves the query better?

A registry: each judge is one module and one entry in `JUDGES` (RELEVANCE_JUDGE names it).
A judge module offers `build(setup) -> Judge`; it is imported only when that judge is built
(the cloud SDKs are slow to import), so this table stays cheap for every command that lists
the judges. An entry names the embedding provider whose account (key, base URL) it uses, so
its credentials are the provider's (`rollout.embedders.registry`), read once by the settings.
A judge only compares; sampling, the cost cap, the cache and the order swap are the
caller's (`rollout.relevance.judging`), the same for every judge.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from rollout.embedders.registry import PROVIDERS, ProviderAccount
from rollout.errors import ConfigError
from rollout.relevance.judges.base import Judge, JudgeError, Listed, Preference


@dataclass(frozen=True)
class JudgeSetup:
    """What a judge is built from: RELEVANCE_JUDGE, RELEVANCE_JUDGE_MODEL, RELEVANCE_JUDGE_TIMEOUT_S and
    the account of the judge's provider (the composition root picks it from the settings)."""

    judge: str = "none"  # a name in JUDGES, or none
    model: str | None = None  # None: the judge's default model
    timeout_s: float = 10.0
    account: ProviderAccount = field(default_factory=ProviderAccount)  # empty for a judge with no provider


@dataclass(frozen=True)
class JudgeKind:
    name: str
    module: str  # offers build(setup) -> Judge
    provider: str | None = None  # the provider whose account it uses; None: it needs no credentials

    def build(self, setup: JudgeSetup) -> Judge:
        if self.provider is not None and not setup.account.api_key:
            variable = PROVIDERS[self.provider].key_variable or f"the {self.provider} API key"
            raise ConfigError(f"RELEVANCE_JUDGE={self.name} needs {variable}")
        module = importlib.import_module(self.module)
        return module.build(setup)


JUDGES: dict[str, JudgeKind] = {j.name: j for j in (
    JudgeKind("lexical", "rollout.relevance.judges.lexical"),
    JudgeKind("openai", "rollout.relevance.judges.openai", provider="openai"),
    JudgeKind("google", "rollout.relevance.judges.google", provider="google"),
)}


def judge_provider(name: str) -> str | None:
    """The provider whose account judge `name` uses (None: none, or no such judge)."""
    kind = JUDGES.get(name)
    return kind.provider if kind else None


def build_judge(setup: JudgeSetup) -> Judge | None:
    """The judge `setup.judge` (RELEVANCE_JUDGE) names, or None when it is `none`."""
    if setup.judge == "none":
        return None
    kind = JUDGES.get(setup.judge)
    if kind is None:
        raise ConfigError(f"RELEVANCE_JUDGE: unknown judge {setup.judge!r}; expected none or one of "
                          f"{', '.join(JUDGES)}")
    return kind.build(setup)


__all__ = ["JUDGES", "Judge", "JudgeError", "JudgeKind", "JudgeSetup", "Listed", "Preference", "build_judge",
           "judge_provider"]
