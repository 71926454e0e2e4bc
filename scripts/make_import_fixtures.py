"""Write tests/data/chroma_store: a real Chroma persistence directory for the importer tests.

Needs the `chromadb` package (heavy; not a dependency of the project):

    pip install 'chromadb>=1.0' && python scripts/make_import_fixtures.py

Two collections: `handbook` (768-dimensional vectors, the V2 dimension; flushed to
the HNSW files in small batches so both the persisted index and the write-ahead
log hold vectors; an update, a delete and a duplicate text) and `faq` (4-dimensional
vectors, matching no version). Vectors are seeded, so the files are reproducible in
content (Chroma's ids and timestamps differ from run to run).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import chromadb
import numpy as np

TARGET = Path(__file__).resolve().parent.parent / "tests" / "data" / "chroma_store"


def main() -> None:
    shutil.rmtree(TARGET, ignore_errors=True)
    rng = np.random.default_rng(7)
    client = chromadb.PersistentClient(path=str(TARGET))
    handbook = client.create_collection(
        "handbook", embedding_function=None,
        configuration={"hnsw": {"space": "cosine", "sync_threshold": 6, "batch_size": 6}})
    texts = [f"Section {n} of the handbook: rule number {n} about {topic}."
             for n, topic in enumerate(["parking", "pool", "guests", "noise", "pets", "bikes", "rooftop",
                                        "lockers", "parcels", "wifi", "printing", "kitchen"])]
    metadatas = [{"source": f"handbook-{n // 4}.md", "chunk": n % 4, "category": "policies",
                  "title": f"Handbook section {n}", "tags": ["handbook", f"s{n}"], "reviewed": n % 2 == 0,
                  "score": n / 10} for n in range(12)]
    for start in range(0, 12, 4):
        handbook.add(ids=[f"hb-{n}" for n in range(start, start + 4)], documents=texts[start:start + 4],
                     metadatas=metadatas[start:start + 4], embeddings=rng.normal(size=(4, 768)).tolist())
    handbook.update(ids=["hb-0"], documents=["Section 0, revised: parking is free after 6pm."],
                    embeddings=rng.normal(size=(1, 768)).tolist())
    handbook.delete(ids=["hb-11"])
    handbook.add(ids=["hb-dup"], documents=[texts[5]],  # same title and text as hb-5: imported once
                 metadatas=[{"category": "policies", "title": "Handbook section 5"}],
                 embeddings=rng.normal(size=(1, 768)).tolist())
    faq = client.create_collection("faq", embedding_function=None)
    faq.add(ids=[f"faq-{n}" for n in range(3)], documents=[f"Question {n}? Answer {n}." for n in range(3)],
            metadatas=[{"category": "support"}, {"category": "support"}, None],
            embeddings=rng.normal(size=(3, 4)).tolist())
    print(f"wrote {TARGET}: handbook {handbook.count()} records, faq {faq.count()} records")


if __name__ == "__main__":
    main()
