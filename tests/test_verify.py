"""`rollout migrate verify` finds planted damage: orphans, wrong dimensions, NaN vectors, gaps, a missing index."""

from __future__ import annotations

import struct

import psycopg
import pytest
from helpers import load_and_embed, sample_documents
from tools import missing

from rollout.documents import Document, DocumentStore
from rollout.migration.index import VectorIndex
from rollout.migration.verify import Verifier

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def corpus(runtime):
    yield load_and_embed(runtime, sample_documents(extra=40))
    # put back what a test damaged: the session's later tests share these tables
    with psycopg.connect(runtime.database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM doc_embeddings_v2 WHERE vector_dims(embedding) <> 768 "
                     "OR vector_norm(embedding) = 'NaN'::float8")
        conn.execute("ALTER TABLE doc_embeddings_v2 ALTER COLUMN embedding TYPE vector(768)")
        for version in ("v1", "v2"):
            VectorIndex(runtime.settings.version(version)).ensure(conn)


def failures(runtime, **options) -> dict[tuple[str | None, str], str]:
    report = Verifier(runtime, sample=20, **options).run()
    return {(c.version, c.name): c.detail for c in report.failures}


def superuser(runtime) -> psycopg.Connection:
    conn = psycopg.connect(runtime.database_url, autocommit=True)
    if not conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]:
        missing("planting damage needs a superuser connection")
    return conn


def test_a_complete_corpus_verifies(runtime, corpus):
    report = Verifier(runtime, sample=20).run()
    assert report.ok, report.failures
    assert report.retrieval["v1"]["self_at_10"] >= 0.8 and report.retrieval["v2"]["self_at_10"] >= 0.8
    assert 0 < report.retrieval["overlap"]["top_10"] <= 1


def test_a_planted_orphan_is_found(runtime, corpus):
    with superuser(runtime) as conn:
        conn.execute("SET session_replication_role = replica")  # foreign keys are triggers: off for this session
        conn.execute("INSERT INTO doc_embeddings_v2 (document_id, embedding, model, content_hash) "
                     "SELECT 'ghost', embedding, model, content_hash FROM doc_embeddings_v2 LIMIT 1")
    found = failures(runtime)
    assert "ghost" in found[("v2", "orphans")] and "1 vectors without a document" in found[("v2", "orphans")]


def test_a_wrong_dimension_row_is_found(runtime, corpus):
    with psycopg.connect(runtime.database_url, autocommit=True) as conn:
        conn.execute("DROP INDEX doc_embeddings_v2_hnsw")  # an HNSW index needs a fixed dimension
        conn.execute("ALTER TABLE doc_embeddings_v2 ALTER COLUMN embedding TYPE vector")
        conn.execute("UPDATE doc_embeddings_v2 SET embedding = '[0.6,0.8,0]' WHERE document_id = 'pool-hours'")
    found = failures(runtime)
    detail = found[("v2", "dimensions")]
    assert "declared with no dimension" in detail and "1 vectors of 3 dimensions instead of 768: pool-hours" in detail
    assert "no HNSW index" in found[("v2", "index")]


def test_a_nan_vector_is_found(runtime, corpus):
    """pgvector refuses NaN on input; a table written around it (here: a binary cast) is what verify catches."""
    vector = struct.pack("<hh", 768, 0) + struct.pack("<f", float("nan")) + struct.pack("<767f", *([0.01] * 767))
    with superuser(runtime) as conn:
        conn.execute("DROP INDEX doc_embeddings_v2_hnsw")
        conn.execute("CREATE CAST (bytea AS vector) WITHOUT FUNCTION")
        try:
            conn.execute("UPDATE doc_embeddings_v2 SET embedding = %s::bytea::vector WHERE document_id = 'day-pass'",
                         (vector,))
        finally:
            conn.execute("DROP CAST (bytea AS vector)")
    found = failures(runtime)
    assert "1 with NaN: day-pass" in found[("v2", "vectors")]


def test_gaps_stale_rows_other_models_and_unit_norms(runtime, corpus):
    DocumentStore(runtime.pool).upsert_many([
        Document("new-doc", "New", "Added without a backfill.", "events"),
        Document("pool-hours", "Pool opening hours", "Changed text.", "facilities")])
    with psycopg.connect(runtime.database_url, autocommit=True) as conn:
        conn.execute("UPDATE doc_embeddings_v1 SET model = 'old-model' WHERE document_id = 'jazz-night'")
        row = conn.execute("SELECT embedding::text FROM doc_embeddings_v1 WHERE document_id = 'gym-induction'"
                           ).fetchone()[0]
        doubled = "[" + ",".join(str(2 * float(x)) for x in row.strip("[]").split(",")) + "]"
        conn.execute("UPDATE doc_embeddings_v1 SET embedding = %s::vector WHERE document_id = 'gym-induction'",
                     (doubled,))
    found = failures(runtime)
    assert found[("v2", "count[events]")].endswith("(1 missing)")
    assert "1 of an older text" in found[("v2", "count[facilities]")]
    assert "1 by old-model" in found[("v1", "model")]
    assert "1 not of unit length" in found[("v1", "vectors")] and "gym-induction" in found[("v1", "vectors")]


def test_a_dropped_index_awaiting_rebuild_is_named(runtime, corpus):
    with psycopg.connect(runtime.database_url, autocommit=True) as conn:
        VectorIndex(runtime.settings.version("v2")).drop_for_bulk_load(conn)
    assert "dropped for a bulk load" in failures(runtime)[("v2", "index")]


def test_the_command_exits_non_zero_with_the_reasons(runtime, corpus):
    from click.testing import CliRunner

    from rollout.cli import command_group

    cli = command_group()

    ok = CliRunner().invoke(cli, ["migrate", "verify", "--sample", "10"], obj=runtime.settings)
    assert ok.exit_code == 0, ok.output
    assert "verified" in ok.output
    DocumentStore(runtime.pool).upsert_many([Document("late", "Late", "Not embedded yet.", "events")])
    bad = CliRunner().invoke(cli, ["migrate", "verify", "--sample", "10"], obj=runtime.settings)
    assert bad.exit_code == 1
    assert "verification failed" in bad.output and "v1 count[events]" in bad.output
