"""Which version is the baseline and which the candidate, as the relevance code sees them.

One place, so the relevance sources follow the version registry: the router's roles (its
snapshot of the registry); before a candidate is registered the baseline stands for both.
"""

from __future__ import annotations

from rollout.routing import Roles


def baseline_and_candidate(roles: Roles) -> tuple[str, str]:
    return roles.baseline, roles.candidate or roles.baseline
