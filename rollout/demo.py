"""What `rollout demo` prepares: the demo corpus embedded for both versions, and the staged rollout's
first stage (10 %) started with shadow queries and query analytics on."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from flags import GRADUAL_MIGRATION, PARALLEL_RAG, QUERY_ANALYTICS, V2_PERCENTAGE, Source
from rollout import schema
from rollout.config import Settings
from rollout.controller import Action, Command, Status
from rollout.documents import DocumentStore, UpsertCounts, read_jsonl
from rollout.migration.backfill import BackfillReport, backfill_for
from rollout.runtime import Runtime
from rollout.services import ServiceUrls, service_urls

DEMO_ACTOR = "rollout demo"
COMPARISON = {PARALLEL_RAG: True, QUERY_ANALYTICS: True}  # the demo shows V1 beside V2 from the first query


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
    """Shadow queries and analytics on, and the rollout's first stage started the way a person would
    (`rollout stage advance`), unless someone already chose values (environment, override, a rollout)."""
    changed = []
    for name, value in COMPARISON.items():
        if runtime.flags.snapshot().sources[name] is Source.DEFAULT:
            runtime.flags.set(name, value, actor=DEMO_ACTOR, reason="demo: compare V1 and V2")
            changed.append(f"{name}={value}")
    sources = runtime.flags.snapshot().sources
    untouched = all(sources[name] is Source.DEFAULT for name in (GRADUAL_MIGRATION, V2_PERCENTAGE))
    if untouched and runtime.stages.store.read().state.status is Status.IDLE:
        decision = runtime.stages.command(Command(Action.ADVANCE, actor=DEMO_ACTOR, reason="demo: first stage"))
        changed += decision["flag_changes"]
    return changed


@contextmanager
def prepared_services(folder: Path) -> Iterator[ServiceUrls]:
    """For benchmarks and checks: DATABASE_URL / REDIS_URL from the environment (else embedded services
    under `folder`), the schema applied and the demo corpus embedded for both versions."""
    settings = Settings.from_environ({"ROLLOUT_DATA_DIR": str(folder),
                                      **{k: os.environ[k] for k in ("DATABASE_URL", "REDIS_URL") if os.environ.get(k)}})
    with service_urls(settings) as urls:
        schema.upgrade(urls.database_url, settings)
        runtime = Runtime(settings, urls.database_url, urls.redis_url, pool_size=2)
        try:
            load_corpus(runtime)
            embed_corpus(runtime)
        finally:
            runtime.close()
        yield urls
