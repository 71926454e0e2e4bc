"""What `rollout demo` prepares: the demo corpus embedded for both versions, and a first 10 % stage."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from flags import GRADUAL_MIGRATION, V2_PERCENTAGE, Source
from rollout.documents import DocumentStore, UpsertCounts, read_jsonl
from rollout.migration.backfill import BackfillReport, backfill_for
from rollout.runtime import Runtime

DEMO_ACTOR = "rollout demo"
FIRST_STAGE = {GRADUAL_MIGRATION: True, V2_PERCENTAGE: 10}


def corpus_path() -> Path:
    return Path(str(resources.files("rollout") / "data" / "demo_corpus.jsonl"))


def queries_path() -> Path:
    return Path(str(resources.files("rollout") / "data" / "demo_queries.txt"))


def load_corpus(runtime: Runtime) -> UpsertCounts:
    return DocumentStore(runtime.pool).upsert_many(read_jsonl(corpus_path()))


def embed_corpus(runtime: Runtime) -> list[BackfillReport]:
    """Backfill every version (document-purpose embedders), then count coverage for the router."""
    reports = [backfill_for(runtime, version).run() for version in runtime.backends]
    runtime.coverage.refresh()
    return reports


def start_first_stage(runtime: Runtime) -> list[str]:
    """Turn the migration on at 10 %, unless someone already chose values (environment or override)."""
    changed = []
    for name, value in FIRST_STAGE.items():
        if runtime.flags.snapshot().sources[name] is Source.DEFAULT:
            runtime.flags.set(name, value, actor=DEMO_ACTOR, reason="demo: first rollout stage")
            changed.append(f"{name}={value}")
    return changed
