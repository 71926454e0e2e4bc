"""Which version is the baseline and which the candidate: the one place the console learns it."""

from __future__ import annotations

from rollout.routing import Roles


def version_roles(roles: Roles) -> dict[str, str]:
    """The names the version registry gives (the router's snapshot); the baseline twice before a candidate."""
    return {"baseline": roles.baseline, "candidate": roles.candidate or roles.baseline}
