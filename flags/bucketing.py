"""Sticky bucketing, as Unleash does it: murmur3 of "{group}:{key}", here with 0.01 % resolution.

A user lands in one of 10,000 buckets and is in the rollout when their bucket is
below the percentage's threshold. Raising the percentage only adds buckets, so a
user on V2 never goes back to V1 unless the percentage is lowered.
The expected buckets are pinned by `tests/data/bucketing_spec.json`.
"""

from __future__ import annotations

import mmh3

RESOLUTION = 10_000  # buckets: 0.01 % each
SEED = 0


def bucket(group: str, key: str) -> int:
    """The user's bucket in [0, 10000) for this rollout group."""
    return mmh3.hash(f"{group}:{key}", SEED, signed=False) % RESOLUTION


def threshold(percentage: float) -> int:
    """Buckets below this number are in the rollout (12.34 % -> 1234)."""
    return round(percentage * RESOLUTION / 100)


def in_rollout(bucket_number: int, percentage: float) -> bool:
    return bucket_number < threshold(percentage)
