"""Which version is the baseline and which the candidate: the one place the console learns it."""

from __future__ import annotations


def version_roles(payload: dict) -> dict[str, str]:
    """The names an API payload gives; v1 and v2 until the payloads name them (the version registry)."""
    return {"baseline": str(payload.get("baseline_version") or "v1"),
            "candidate": str(payload.get("candidate_version") or "v2")}
