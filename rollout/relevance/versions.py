"""Which version is the baseline and which the candidate, as the relevance code sees them.

One place, so the relevance sources follow when versions come from a registry: today the
first configured version is the baseline and the second the candidate.
"""

from __future__ import annotations

from rollout.config import VERSIONS


def baseline_and_candidate() -> tuple[str, str]:
    return VERSIONS[0], VERSIONS[1]
