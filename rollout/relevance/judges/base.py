"""What every judge shares: the anonymised lists, the prompt, reading the answer."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from rollout.errors import RolloutError

Choice = Literal["first", "second", "tie"]
SNIPPET_CHARS = 200
_ANSWER = re.compile(r"\b([ABT])\b")


class JudgeError(RolloutError):
    """The judge could not give a verdict (provider error, timeout, an answer that is not A, B or T)."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@dataclass(frozen=True)
class Listed:
    """One result as the judge sees it: no id, no score, no version."""

    title: str
    snippet: str


@dataclass(frozen=True)
class Preference:
    choice: Choice
    tokens: int = 0


class Judge(Protocol):
    name: str

    def prefer(self, query: str, first: Sequence[Listed], second: Sequence[Listed]) -> Preference: ...


def render_list(items: Sequence[Listed]) -> str:
    if not items:
        return "(no results)"
    return "\n".join(f"{n}. {item.title}: {item.snippet[:SNIPPET_CHARS]}" for n, item in enumerate(items, start=1))


def prompt(query: str, first: Sequence[Listed], second: Sequence[Listed]) -> str:
    return ("You compare two search result lists for the same query. Judge only which list helps a person "
            "answer the query better: relevant results, ranked early.\n\n"
            f"Query: {query}\n\nList A:\n{render_list(first)}\n\nList B:\n{render_list(second)}\n\n"
            "Answer with one letter: A if list A is better, B if list B is better, T if they are equally good.")


def read_answer(text: str | None) -> Choice:
    match = _ANSWER.search((text or "").strip().upper())
    if match is None:
        raise JudgeError("unreadable", f"expected A, B or T, got {(text or '')[:40]!r}")
    return {"A": "first", "B": "second", "T": "tie"}[match.group(1)]
