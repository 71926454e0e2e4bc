"""Write tests/data/bucketing_spec.json: the buckets users must keep, forever.

Run once when the bucketing scheme is introduced, then never again: the file is
the contract (as Unleash's client-specification is). If a change to
flags/bucketing.py makes the test fail, that change would move live users between
V1 and V2; the fix is in the code, not in a regenerated file.
"""

import json
from pathlib import Path

import mmh3

from flags.bucketing import RESOLUTION, bucket

# Published MurmurHash3 x86_32 vectors: they pin the hash itself, independently of this code.
REFERENCE_VECTORS = [
    ("", 0, 0x00000000), ("", 1, 0x514E28B7), ("", 0xFFFFFFFF, 0x81F16F39), ("test", 0, 0xBA6BD213),
    ("Hello, world!", 0x9747B28C, 0x24884CBA), ("aaaa", 0x9747B28C, 0x5A97808A),
    ("The quick brown fox jumps over the lazy dog", 0x9747B28C, 0x2FA826CD),
]
GROUPS = ["embeddings-v2", "checkout-redesign"]
KEYS = ["alice", "bob", "user-1", "user-42", "user-1000", "123456789", "session:3f2a9c", "anonymous:0",
        "Zoë", "用户七", "a" * 200, "UPPER-case", "with space", "trailing-", "0"]


def main() -> None:
    for text, seed, expected in REFERENCE_VECTORS:
        assert mmh3.hash(text, seed, signed=False) == expected, (text, seed)
    spec = {
        "description": "bucket = murmur3_x86_32('{group}:{key}', seed 0) mod 10000; in rollout when "
                       "bucket < round(percentage * 100)",
        "resolution": RESOLUTION,
        "murmur3_reference": [{"text": t, "seed": s, "hash": h} for t, s, h in REFERENCE_VECTORS],
        "cases": [{"group": g, "key": k, "bucket": bucket(g, k)} for g in GROUPS for k in KEYS],
    }
    path = Path(__file__).resolve().parent.parent / "tests" / "data" / "bucketing_spec.json"
    path.write_text(json.dumps(spec, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(spec['cases'])} cases to {path.name}")


if __name__ == "__main__":
    main()
