"""Sticky bucketing against the checked-in spec table, plus its statistical promises."""

import json

import mmh3
import numpy as np
import pytest
from helpers import DATA

from flags.bucketing import RESOLUTION, bucket, in_rollout, threshold

SPEC = json.loads((DATA / "bucketing_spec.json").read_text())
GROUP = "embeddings-v2"
KEYS = [f"user-{n}" for n in range(100_000)]


@pytest.mark.parametrize("case", SPEC["murmur3_reference"], ids=lambda c: f"{c['text'][:12]!r}/{c['seed']}")
def test_murmur3_matches_the_published_vectors(case):
    assert mmh3.hash(case["text"], case["seed"], signed=False) == case["hash"]


@pytest.mark.parametrize("case", SPEC["cases"], ids=lambda c: f"{c['group']}:{c['key'][:12]}")
def test_buckets_never_drift_from_the_spec(case):
    assert bucket(case["group"], case["key"]) == case["bucket"]


def test_resolution_is_one_hundredth_of_a_percent():
    assert SPEC["resolution"] == RESOLUTION == 10_000
    assert threshold(0) == 0 and threshold(100) == 10_000
    assert threshold(12.34) == 1234 and threshold(0.01) == 1


def test_the_same_key_always_lands_in_the_same_bucket():
    first = [bucket(GROUP, k) for k in KEYS[:5000]]
    again = [bucket(GROUP, k) for k in KEYS[:5000]]
    assert first == again
    assert all(0 <= b < RESOLUTION for b in first)


def test_groups_bucket_independently():
    a = np.array([bucket("embeddings-v2", k) for k in KEYS[:20_000]])
    b = np.array([bucket("another-rollout", k) for k in KEYS[:20_000]])
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.03


def test_raising_the_percentage_never_moves_a_v2_user_back():
    buckets = np.array([bucket(GROUP, k) for k in KEYS])
    steps = [0, 1, 10, 25, 50, 75, 99.99, 100]
    previous = np.zeros(len(KEYS), dtype=bool)
    for percentage in steps:
        current = buckets < threshold(percentage)
        assert not (previous & ~current).any(), f"users left V2 when going to {percentage} %"
        previous = current
    assert previous.all()


@pytest.mark.parametrize("percentage", [1, 10, 25, 33.33, 50, 75, 90])
def test_observed_share_is_within_one_point_of_the_target(percentage):
    share = sum(in_rollout(bucket(GROUP, k), percentage) for k in KEYS) / len(KEYS) * 100
    assert abs(share - percentage) <= 1.0, share
