"""The local offline judge: query-term overlap of each list, discounted by rank.

It reads no model, costs nothing and needs no network, which is what the demo and the
tests need; it knows nothing of meaning, so it is a stand-in for a model judge, not a
substitute. Its name says what it does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rollout.relevance.judges.base import Listed, Preference

if TYPE_CHECKING:
    from rollout.relevance.judges import JudgeSetup

_WORD = re.compile(r"[a-z0-9]+")
STOP = frozenset({"a", "an", "and", "are", "at", "be", "can", "do", "does", "for", "from", "how", "i", "in", "is",
                  "it", "my", "of", "on", "or", "the", "to", "what", "when", "where", "which", "who", "why", "with",
                  "you", "your"})


def terms(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in STOP}


class LexicalOverlapJudge:
    name = "lexical-overlap"

    def __init__(self, tie_margin: float = 0.05):
        self.tie_margin = tie_margin

    def score(self, query: str, items: Sequence[Listed]) -> float:
        wanted = terms(query)
        if not wanted:
            return 0.0
        return sum(len(wanted & terms(f"{item.title} {item.snippet}")) / len(wanted) / math.log2(rank + 1)
                   for rank, item in enumerate(items, start=1))

    def prefer(self, query: str, first: Sequence[Listed], second: Sequence[Listed]) -> Preference:
        a, b = self.score(query, first), self.score(query, second)
        if abs(a - b) <= self.tie_margin * max(a, b, 1e-9):
            return Preference("tie")
        return Preference("first" if a > b else "second")


def build(setup: JudgeSetup) -> LexicalOverlapJudge:
    """RELEVANCE_JUDGE=lexical: offline, no model and no credentials."""
    return LexicalOverlapJudge()
