"""POST/DELETE /api/documents: validation, upsert by stable id, dual-write while a migration is active."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fake_embedding_server import FakeEmbeddingServer
from helpers import admin_headers, sample_documents, settings_for

from rollout.app import create_app
from rollout.documents import DocumentStore
from rollout.embedders import LexicalEmbedder
from rollout.migration.backfill import BackfillOptions, backfill_for
from rollout.migration.status import MigrationStatus
from rollout.migration.verify import Verifier

pytestmark = pytest.mark.timeout(60)

DOC = {"id": "sauna-hours", "title": "Sauna hours", "content": "The sauna is open from 7am to 9pm.",
       "category": "facilities", "metadata": {"source": "api"}}


def vectors(runtime, version: str) -> dict[str, tuple]:
    table = runtime.settings.version(version).table
    with runtime.pool.connection() as conn:
        rows = conn.execute(f"SELECT document_id, content_hash, embedding FROM {table}").fetchall()
    return {r[0]: (r[1], r[2].to_numpy()) for r in rows}


def start_migration(runtime) -> None:
    with runtime.pool.connection() as conn:
        MigrationStatus(runtime.settings.version("v2")).start(conn)


def post(client, body, headers=None):
    return client.post("/api/documents", json=body, headers=admin_headers() if headers is None else headers)


def test_before_a_migration_only_v1_is_written(runtime, client):
    response = post(client, DOC)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"inserted": 1, "updated": 0, "unchanged": 0, "versions": ["v1"],
                                   "embedded": {"v1": 1}}
    assert set(vectors(runtime, "v1")) == {"sauna-hours"} and vectors(runtime, "v2") == {}


def test_while_a_migration_is_active_both_versions_are_written(runtime, client):
    start_migration(runtime)
    batch = {"documents": [DOC, {**DOC, "id": "steam-room", "title": "Steam room", "content": "Next to the sauna."}]}
    body = post(client, batch).get_json()
    assert body["versions"] == ["v1", "v2"] and body["embedded"] == {"v1": 2, "v2": 2}
    expected = LexicalEmbedder(768, "local-lexical-v2").embed(["Sauna hours\n\nThe sauna is open from 7am to 9pm."])
    np.testing.assert_allclose(vectors(runtime, "v2")["sauna-hours"][1], expected[0], atol=1e-6)

    again = post(client, DOC).get_json()
    assert again["unchanged"] == 1 and again["embedded"] == {"v1": 0, "v2": 0}  # same text: nothing embedded
    changed = post(client, {**DOC, "content": "The sauna is closed for repairs."}).get_json()
    assert changed["updated"] == 1 and changed["embedded"] == {"v1": 1, "v2": 1}
    with runtime.pool.connection() as conn:
        current = conn.execute("SELECT content_hash FROM documents WHERE id = 'sauna-hours'").fetchone()[0]
    assert vectors(runtime, "v1")["sauna-hours"][0] == current == vectors(runtime, "v2")["sauna-hours"][0]


def test_delete_removes_the_document_and_its_vectors(runtime, client):
    start_migration(runtime)
    post(client, DOC)
    response = client.delete("/api/documents/sauna-hours", headers=admin_headers())
    assert response.status_code == 200 and response.get_json() == {"deleted": "sauna-hours"}
    assert vectors(runtime, "v1") == {} and vectors(runtime, "v2") == {}
    missing = client.delete("/api/documents/sauna-hours", headers=admin_headers())
    assert missing.status_code == 404 and missing.get_json()["error"] == "not_found"


@pytest.mark.parametrize("body, field", [
    ({**DOC, "id": ""}, "documents.0.id"),
    ({**DOC, "id": "a/b"}, "documents.0.id"),
    ({**DOC, "id": "x" * 257}, "documents.0.id"),
    ({k: v for k, v in DOC.items() if k != "title"}, "documents.0.title"),
    ({**DOC, "title": "   "}, "documents.0.title"),
    ({k: v for k, v in DOC.items() if k != "content"}, "documents.0.content"),
    ({**DOC, "content": "x" * (64 * 1024 + 1)}, "documents.0.content"),
    ({**DOC, "metadata": ["not", "an", "object"]}, "documents.0.metadata"),
    ({**DOC, "metadata": {"big": "x" * 17000}}, "documents.0.metadata"),
    ({**DOC, "category": 7}, "documents.0.category"),
    ({**DOC, "extra": 1}, "documents.0.extra"),
    ({"documents": []}, "documents"),
    ({"documents": [DOC, DOC]}, "(body)"),
])
def test_bad_documents_are_refused_with_400_and_nothing_is_written(runtime, client, body, field):
    response = post(client, body)
    assert response.status_code == 400, response.get_json()
    payload = response.get_json()
    assert payload["error"] == "invalid_request" and field in {f["field"] for f in payload["fields"]}
    assert DocumentStore(runtime.pool).count() == 0


def test_the_admin_token_is_required(client):
    assert post(client, DOC, headers={}).status_code == 401
    assert post(client, DOC, headers=admin_headers("wrong")).status_code == 403
    assert client.delete("/api/documents/x").status_code == 401


def test_an_embedding_failure_writes_nothing(make_runtime, services):
    with FakeEmbeddingServer() as server:
        runtime = make_runtime(settings_for(services, V2_EMBEDDER="openai", OPENAI_API_KEY="sk-test",
                                            OPENAI_BASE_URL=f"{server.url}/v1", EMBEDDING_MAX_ATTEMPTS="1"))
        start_migration(runtime)
        client = create_app(runtime.settings, runtime=runtime).test_client()
        server.fail_next(503)
        down = post(client, DOC)
        assert down.status_code == 503 and down.get_json()["error"] == "embedding_unavailable"
        server.reject_marker = "sauna"
        refused = post(client, DOC)
        assert refused.status_code == 422 and refused.get_json()["error"] == "embedding_rejected"
        assert DocumentStore(runtime.pool).count() == 0 and vectors(runtime, "v1") == {}


def test_documents_written_during_a_backfill_are_never_missing_from_v2(make_runtime, services):
    with FakeEmbeddingServer() as server:
        runtime = make_runtime(settings_for(services, V2_EMBEDDER="openai", OPENAI_API_KEY="sk-test",
                                            OPENAI_BASE_URL=f"{server.url}/v1", EMBEDDING_BATCH_SIZE="10"))
        DocumentStore(runtime.pool).upsert_many(sample_documents(extra=150))
        backfill_for(runtime, "v1", BackfillOptions()).run()
        client = create_app(runtime.settings, runtime=runtime).test_client()
        server.delay_s = 0.03  # a slow provider: the API writes while the backfill is in flight
        job = backfill_for(runtime, "v2", BackfillOptions(batch_size=10, workers=2))
        thread = threading.Thread(target=job.run)
        thread.start()
        written = []
        try:
            for n in range(12):
                document = {"id": f"live-{n}", "title": f"Live {n}", "content": f"Written mid-run, number {n}.",
                            "category": "events"}
                assert post(client, document).status_code == 200
                written.append(document["id"])
            # and a document the backfill queued, changed under it
            assert post(client, {"id": "filler-0100", "title": "Notice 100", "content": "Rewritten mid-run.",
                                 "category": "events"}).status_code == 200
        finally:
            thread.join(60)
        backfill_for(runtime, "v2", BackfillOptions()).run()  # whatever the first run had not reached
        assert set(written) <= set(vectors(runtime, "v2"))
        report = Verifier(runtime, sample=0).run()  # the fake's vectors carry no meaning to retrieve by
    assert report.ok, report.failures
