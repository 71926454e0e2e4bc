"""A synthetic corpus for the benchmarks: many distinct documents, deterministic, no files needed.

Words are made of syllables, so the vocabulary is large; documents are grouped in
topics with their own words, plus common words shared by all; lengths are about
those of the demo corpus (a few hundred characters).
"""

from __future__ import annotations

import random

from rollout.documents import Document

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qui", "dre", "bal", "cor", "fen",
             "gil", "hom", "jas", "lum", "mor", "nit", "ost", "pry", "sul", "tav", "und", "vex", "wy", "xo", "yal"]
CATEGORIES = ["facilities", "events", "pricing", "policies", "membership", "parking", "food", "support"]


def vocabulary(size: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def documents(count: int, seed: int = 42, per_topic: int = 50) -> list[Document]:
    """`count` documents in topics of about `per_topic`: each topic has its own words, as subjects do,
    so a document's neighbours are its topic's documents (random bags of words would make every
    vector about as far from every other, which no embedding model does)."""
    rng = random.Random(seed)
    words = vocabulary(8000, rng)
    common = words[:300]
    topics = [rng.sample(words[300:], 30) for _ in range(max(1, count // per_topic))]
    made = []
    for n in range(count):
        topic = topics[n % len(topics)]
        title = " ".join(rng.choice(topic) for _ in range(rng.randint(3, 6))).capitalize()
        body = " ".join(rng.choice(topic) if (r := rng.random()) < 0.6 else rng.choice(common) if r < 0.85
                        else rng.choice(words) for _ in range(rng.randint(45, 70)))
        made.append(Document(f"doc-{n:06d}", title, body.capitalize() + ".", CATEGORIES[n % len(CATEGORIES)],
                             {"n": n, "topic": n % len(topics)}))
    return made


def queries(docs: list[Document], count: int, seed: int = 7) -> list[str]:
    """Questions made of a document's words: a few from its title and its text."""
    rng = random.Random(seed)
    picked = rng.sample(docs, count)
    return [" ".join(rng.sample(d.title.split(), min(2, len(d.title.split()))) + rng.sample(d.content.split(), 3))
            for d in picked]
