"""The backfill: complete, resumable after a kill anywhere, safe with concurrent workers, honest about failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from fake_embedding_server import FakeEmbeddingServer, vector_for
from helpers import sample_documents, seed_first_versions, settings_for

from rollout.config import Settings
from rollout.documents import Document, DocumentStore
from rollout.embedders import LexicalEmbedder
from rollout.migration.backfill import BackfillOptions, backfill_for
from rollout.migration.index import VectorIndex
from rollout.migration.status import MigrationStatus, category_counts

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
pytestmark = pytest.mark.timeout(120)


def stored(runtime, version="v2") -> dict[str, tuple[np.ndarray, str, str]]:
    table = runtime.settings.version(version).table
    with runtime.pool.connection() as conn:
        rows = conn.execute(f"SELECT document_id, embedding, content_hash, model FROM {table}").fetchall()
    return {r[0]: (np.asarray(r[1].to_numpy(), dtype=np.float32), r[2], r[3]) for r in rows}


def assert_complete_and_exact(runtime, documents, version="v2"):
    """Every document has exactly the vector an uninterrupted run stores; nothing else is there."""
    settings = runtime.settings.version(version)
    expected = LexicalEmbedder(settings.dimensions, settings.model).embed([d.text for d in documents])
    rows = stored(runtime, version)
    assert set(rows) == {d.id for d in documents}
    for document, vector in zip(documents, expected, strict=False):
        got, content_hash, model = rows[document.id]
        assert content_hash == document.content_hash and model == settings.model
        np.testing.assert_allclose(got, vector, atol=1e-6)
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM embedding_queue WHERE version = %s", (version,)).fetchone()[0] == 0
        assert VectorIndex(settings).state(conn).searchable
        counts = category_counts(conn, settings)
    assert all(c.done == c.total and c.failed == 0 for c in counts)


def load(runtime, extra=300) -> list[Document]:
    documents = sample_documents(extra=extra)
    DocumentStore(runtime.pool).upsert_many(documents)
    return documents


def options(runtime, **changes) -> BackfillOptions:
    return runtime.backfill_options(**changes)


# -- a plain run -------------------------------------------------------------------------------

def test_a_run_embeds_everything_then_nothing(runtime):
    documents = load(runtime)
    report = backfill_for(runtime, "v2", options(runtime, batch_size=40, workers=2)).run()
    assert report.embedded == len(documents) and report.failed == [] and report.error is None
    assert report.index_dropped == ["doc_embeddings_v2_hnsw"] and report.index_build_seconds is not None
    assert_complete_and_exact(runtime, documents)
    with runtime.pool.connection() as conn:  # the build's parallel_workers request was undone
        assert conn.execute("SELECT reloptions FROM pg_class WHERE relname = 'doc_embeddings_v2'").fetchone()[0] is None
    again = backfill_for(runtime, "v2", options(runtime)).run()
    assert again.embedded == 0 and again.queued == 0 and again.texts_embedded == 0


def test_changed_text_and_changed_model_are_embedded_again(make_runtime, services):
    runtime = make_runtime()
    documents = load(runtime, extra=20)
    backfill_for(runtime, "v2", options(runtime)).run()
    changed = Document("pool-hours", "Pool opening hours", "The pool now opens at 5am.", "facilities")
    DocumentStore(runtime.pool).upsert_many([changed])
    report = backfill_for(runtime, "v2", options(runtime, index="keep")).run()
    assert report.embedded == 1 and report.texts_embedded == 1
    documents = [changed if d.id == changed.id else d for d in documents]
    assert_complete_and_exact(runtime, documents)

    renamed = make_runtime(settings_for(services, V2_MODEL="local-lexical-v2b"))
    report = backfill_for(renamed, "v2", options(renamed)).run()
    assert report.embedded == len(documents)
    assert {model for _, _, model in stored(renamed).values()} == {"local-lexical-v2b"}


def test_category_and_limit_scope_a_run(runtime):
    documents = load(runtime, extra=30)
    pricing = [d for d in documents if d.category == "pricing"]
    report = backfill_for(runtime, "v2", options(runtime, category="pricing", batch_size=3, limit=5)).run()
    assert report.embedded == 5
    assert set(stored(runtime)) <= {d.id for d in pricing}
    backfill_for(runtime, "v2", options(runtime, category="pricing")).run()
    assert set(stored(runtime)) == {d.id for d in pricing}
    with runtime.pool.connection() as conn:
        runs = MigrationStatus(runtime.settings.version("v2")).runs(conn)
    assert runs["pricing"].finished_at is not None and runs["pricing"].embedded_in_run == len(pricing) - 5


def test_dry_run_estimates_and_writes_nothing(runtime):
    load(runtime, extra=50)
    result = run_cli(runtime, "migrate", "run", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["to_embed"] == 56 and plan["tokens"] > 0 and plan["cost_usd"] == 0
    assert plan["seconds"] is not None and "drop the HNSW index" in plan["index_plan"]
    with runtime.pool.connection() as conn:
        for table in ("embedding_queue", "embedding_migration_status", "doc_embeddings_v2"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0


def test_dry_run_does_not_time_a_large_run_by_a_run_of_three_documents(runtime):
    load(runtime, extra=150)
    backfill_for(runtime, "v2", options(runtime, limit=3)).run()
    plan = json.loads(run_cli(runtime, "migrate", "run", "--dry-run", "--json").stdout)
    assert plan["rate_basis"].startswith("embedding ") and plan["to_embed"] == 153
    backfill_for(runtime, "v2", options(runtime, limit=120)).run()
    load(runtime, extra=300)  # more documents, so something is left to estimate
    plan = json.loads(run_cli(runtime, "migrate", "run", "--dry-run", "--json").stdout)
    assert plan["rate_basis"] == "the last finished run of this version of at least 100 documents"


def test_dry_run_prices_cloud_models(make_runtime, services):
    runtime = make_runtime(settings_for(services, V2_EMBEDDER="openai", OPENAI_API_KEY="sk-test",
                                        OPENAI_BASE_URL="http://127.0.0.1:9/v1",
                                        EMBEDDING_PRICES_PER_MTOK="text-embedding-3-small=0.02"))
    load(runtime, extra=50)
    result = run_cli(runtime, "migrate", "run", "--dry-run", "--json",
                     env={"V2_EMBEDDER": "openai", "OPENAI_API_KEY": "sk-test",
                          "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    plan = json.loads(result.stdout)
    assert plan["model"] == "text-embedding-3-small" and plan["price_per_mtok"] == 0.02
    assert plan["cost_usd"] == pytest.approx(plan["tokens"] / 1e6 * 0.02, abs=1e-6)
    assert "assumed" in plan["rate_basis"]


# -- crash safety ---------------------------------------------------------------------------------

def child_env(runtime, **extra) -> dict[str, str]:
    s = runtime.settings
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]),
            "DATABASE_URL": s.database_url, "REDIS_URL": s.redis_url, "REDIS_KEY_PREFIX": s.redis_key_prefix,
            "ROLLOUT_ADMIN_TOKEN": "x", **extra}


def run_cli(runtime, *args, env=None, timeout=90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rollout.cli", *args], env=child_env(runtime, **(env or {})),
                          capture_output=True, text=True, timeout=timeout, cwd=TESTS)


@pytest.mark.parametrize("point, nth", [("embed", 3), ("staged", 2), ("merged", 4), ("batch", 5), ("index", 1)])
def test_killed_anywhere_a_rerun_gives_the_uninterrupted_result(runtime, point, nth):
    documents = load(runtime, extra=150)
    child = subprocess.run([sys.executable, str(TESTS / "backfill_process.py"), "v2", point, str(nth)],
                           env=child_env(runtime), capture_output=True, text=True, timeout=90)
    assert child.returncode == -signal.SIGKILL, child.stderr
    partial = stored(runtime)
    if point == "index":  # killed while building: the load is complete, the note says "build me"
        assert len(partial) == len(documents)
        with runtime.pool.connection() as conn:
            assert VectorIndex(runtime.settings.version("v2")).state(conn).awaiting_rebuild
    else:
        assert len(partial) < len(documents)
    report = backfill_for(runtime, "v2", options(runtime, batch_size=20)).run()
    assert report.embedded == len(documents) - len(partial)
    assert_complete_and_exact(runtime, documents)


def openai_v2(runtime) -> None:
    """v2 registered with OpenAI's model (what a database set up with V2_EMBEDDER=openai holds): the
    commands run below embed as the registry says, their environment only gives the credentials."""
    seed_first_versions(Settings.from_environ({"DATABASE_URL": runtime.settings.database_url,
                                               "V2_EMBEDDER": "openai", "OPENAI_API_KEY": "sk-test"}))


def test_sigkill_of_the_command_mid_run_then_a_rerun(runtime):
    documents = load(runtime, extra=250)
    openai_v2(runtime)
    with FakeEmbeddingServer() as server:
        server.delay_s = 0.05
        env = {"V2_EMBEDDER": "openai", "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": f"{server.url}/v1",
               "EMBEDDING_BATCH_SIZE": "10"}
        command = [sys.executable, "-m", "rollout.cli", "migrate", "run", "--batch-size", "20", "--workers", "2",
                   "--no-progress"]
        process = subprocess.Popen(command, env=child_env(runtime, **env), cwd=TESTS, start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(stored(runtime)) < 60:
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        partial = len(stored(runtime))
        assert 0 < partial < len(documents)
        server.delay_s = 0
        rerun = run_cli(runtime, "migrate", "run", "--json", "--no-progress", env=env)
        assert rerun.returncode == 0, rerun.stderr
        assert json.loads(rerun.stdout)["embedded"] == len(documents) - partial
    rows = stored(runtime)
    assert set(rows) == {d.id for d in documents}
    for document in documents:
        expected = np.array(vector_for(document.text, 768, "openai"), dtype=np.float32)
        np.testing.assert_allclose(rows[document.id][0], expected, atol=1e-5)


# -- concurrency ------------------------------------------------------------------------------------

def openai_runtime(make_runtime, services, server, **env):
    return make_runtime(settings_for(services, V2_EMBEDDER="openai", OPENAI_API_KEY="sk-test",
                                     OPENAI_BASE_URL=f"{server.url}/v1", EMBEDDING_BATCH_SIZE="10", **env))


def sent_texts(server) -> Counter:
    return Counter(text for request in server.requests for text in request.texts)


def test_worker_threads_never_embed_a_document_twice(make_runtime, services):
    with FakeEmbeddingServer() as server:
        runtime = openai_runtime(make_runtime, services, server)
        documents = load(runtime, extra=200)
        server.delay_s = 0.01
        report = backfill_for(runtime, "v2", options(runtime, batch_size=10, workers=4)).run()
    assert report.embedded == len(documents)
    counts = sent_texts(server)
    assert set(counts) == {d.text for d in documents} and set(counts.values()) == {1}


def test_two_processes_at_once_never_embed_a_document_twice(runtime):
    documents = load(runtime, extra=600)
    openai_v2(runtime)
    with FakeEmbeddingServer() as server:
        server.delay_s = 0.05  # enough work that both processes are still at it when the other starts
        env = child_env(runtime, V2_EMBEDDER="openai", OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=f"{server.url}/v1",
                        EMBEDDING_BATCH_SIZE="10")
        command = [sys.executable, "-m", "rollout.cli", "migrate", "run", "--batch-size", "10", "--workers", "2",
                   "--json", "--no-progress"]
        processes = [subprocess.Popen(command, env=env, cwd=TESTS, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True) for _ in range(2)]
        outputs = [p.communicate(timeout=90) for p in processes]
    assert all(p.returncode == 0 for p in processes), [o[1] for o in outputs]
    reports = [json.loads(out) for out, _ in outputs]
    assert sum(r["embedded"] for r in reports) == len(documents)
    assert all(r["embedded"] > 0 for r in reports)  # both took part
    counts = sent_texts(server)
    assert set(counts) == {d.text for d in documents} and set(counts.values()) == {1}
    with runtime.pool.connection() as conn:
        assert VectorIndex(runtime.settings.version("v2")).state(conn).searchable


# -- failures -------------------------------------------------------------------------------------

def test_refused_documents_are_recorded_and_skipped(make_runtime, services):
    with FakeEmbeddingServer() as server:
        runtime = openai_runtime(make_runtime, services, server)
        documents = load(runtime, extra=60)
        poisoned = [Document(f"bad-{n}", f"Bad {n}", f"FORBIDDEN text number {n}", "events") for n in range(3)]
        DocumentStore(runtime.pool).upsert_many(poisoned)
        server.reject_marker = "FORBIDDEN"
        report = backfill_for(runtime, "v2", options(runtime, batch_size=30)).run()
        assert report.embedded == len(documents) and report.error is None
        assert sorted(f.id for f in report.failed) == ["bad-0", "bad-1", "bad-2"]
        assert all("rejected" in f.reason and "400" in f.reason for f in report.failed)
        with runtime.pool.connection() as conn:
            failures = conn.execute("SELECT document_id, reason FROM embedding_failures ORDER BY 1").fetchall()
            events = next(c for c in category_counts(conn, runtime.settings.version("v2")) if c.category == "events")
        assert [f[0] for f in failures] == ["bad-0", "bad-1", "bad-2"] and events.failed == 3

        server.requests.clear()
        assert backfill_for(runtime, "v2", options(runtime)).run().embedded == 0
        assert not server.requests  # refused texts are not sent again...
        retried = backfill_for(runtime, "v2", options(runtime, retry_failed=True)).run()
        assert len(retried.failed) == 3  # ...unless asked

        server.reject_marker = None
        DocumentStore(runtime.pool).upsert_many([Document("bad-0", "Bad 0", "FORBIDDEN, now allowed", "events")])
        fixed = backfill_for(runtime, "v2", options(runtime)).run()
        assert fixed.embedded == 1
        with runtime.pool.connection() as conn:
            assert conn.execute("SELECT count(*) FROM embedding_failures WHERE document_id = 'bad-0'"
                                ).fetchone()[0] == 0


def test_a_provider_that_stays_down_stops_the_run_and_keeps_the_queue(make_runtime, services):
    with FakeEmbeddingServer() as server:
        runtime = openai_runtime(make_runtime, services, server, EMBEDDING_MAX_ATTEMPTS="1")
        documents = load(runtime, extra=20)
        server.fail_next(503, times=100)
        report = backfill_for(runtime, "v2", options(runtime, batch_size=10)).run()
        assert report.embedded == 0 and "keeps failing" in report.error
        assert report.remaining == len(documents) and report.failed == []
        with runtime.pool.connection() as conn:
            assert VectorIndex(runtime.settings.version("v2")).state(conn).searchable  # rebuilt all the same
            errors = conn.execute("SELECT DISTINCT last_error FROM embedding_migration_status").fetchall()
        assert any("keeps failing" in (e[0] or "") for e in errors)


def test_a_refused_key_stops_the_run_at_once(make_runtime, services):
    with FakeEmbeddingServer() as server:
        runtime = openai_runtime(make_runtime, services, server)
        load(runtime, extra=20)
        server.fail_next(401, times=5)
        report = backfill_for(runtime, "v2", options(runtime, batch_size=10, workers=1)).run()
        assert report.embedded == 0 and "OPENAI_API_KEY" in report.error and len(server.requests) == 1


def test_migrate_status_and_setup_commands(runtime):
    load(runtime, extra=10)
    setup = run_cli(runtime, "migrate", "setup")
    assert setup.returncode == 0 and "0 of 16 documents current" in setup.stdout
    assert run_cli(runtime, "migrate", "run", "--no-progress").returncode == 0
    status = json.loads(run_cli(runtime, "migrate", "status", "--json").stdout)["status"]
    assert {r["category"] for r in status} == {"facilities", "parking", "pricing", "events", "policies"}
    assert all(r["done"] == r["total"] and r["pending"] == 0 and r["finished_at"] for r in status)


def test_a_runs_own_workers_never_count_as_other_loaders(runtime):
    """A closed worker's backend lingers in pg_stat_activity; the run must not wait for itself."""
    import psycopg

    from rollout.migration.index import worker_application_name

    index = VectorIndex(runtime.settings.version("v2"))
    name = worker_application_name("v2")
    with psycopg.connect(runtime.database_url, application_name=name) as own, \
            psycopg.connect(runtime.database_url, application_name=name) as other, \
            psycopg.connect(runtime.database_url, autocommit=True) as control:
        assert index.others_loading(control) == 2
        assert index.others_loading(control, exclude={own.info.backend_pid}) == 1
        assert index.others_loading(control, exclude={own.info.backend_pid, other.info.backend_pid}) == 0
    with psycopg.connect(runtime.database_url, application_name=name, autocommit=True), \
            psycopg.connect(runtime.database_url, application_name=name) as busy, \
            psycopg.connect(runtime.database_url, autocommit=True) as control:
        busy.execute("SELECT 1")  # inside a batch's transaction: idle in transaction
        assert index.others_loading(control) == 2
        assert index.others_loading(control, busy_only=True) == 1


def test_a_run_that_joins_another_keeps_its_start_and_the_last_one_closes_it(runtime):
    """Two backfills of one version at once: one run in the status, counted together, closed by the last."""
    from collections import Counter as Categories

    load(runtime, extra=0)
    status = MigrationStatus(runtime.settings.version("v2"))

    def row():
        with runtime.pool.connection() as conn:
            return conn.execute("SELECT started_at, finished_at, embedded_in_run FROM embedding_migration_status "
                                "WHERE version = 'v2' AND category = 'facilities'").fetchone()

    with runtime.pool.connection() as conn:
        status.begin_run(conn, None)
        status.record_batch(conn, Categories(facilities=3), Categories(), None)
    started, finished, embedded = row()
    assert finished is None and embedded == 3
    with runtime.pool.connection() as conn:
        status.begin_run(conn, None, joining=True)
        status.record_batch(conn, Categories(facilities=2), Categories(), None)
        status.finish_run(conn, None, others_loading=True)  # the joiner ends first: the run goes on
    assert row() == (started, None, 5)
    with runtime.pool.connection() as conn:
        status.finish_run(conn, None)
    assert row()[0] == started and row()[1] is not None and row()[2] == 5
    with runtime.pool.connection() as conn:
        status.begin_run(conn, None)  # a later run on its own starts afresh
    assert row()[0] > started and row()[1] is None and row()[2] == 0
