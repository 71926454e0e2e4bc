"""`rollout import`: each format read from a real store, stable ids, dedupe, vectors, bad files write nothing."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner
from helpers import DATA, load_and_embed
from tools import need_module

from rollout.cli import command_group
from rollout.documents import Document, DocumentStore
from rollout.migration.importers import ImportFileError, apply_import, plan_import, read_source

cli = command_group()

pytestmark = pytest.mark.timeout(60)

CHROMA = DATA / "chroma_store"  # written by scripts/make_import_fixtures.py with the real chromadb


def run(runtime, *args) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["import", *map(str, args)], obj=runtime.settings)
    return result.exit_code, result.output


def documents(runtime) -> dict[str, tuple]:
    with runtime.pool.connection() as conn:
        rows = conn.execute("SELECT id, title, content, category, metadata FROM documents").fetchall()
    return {r[0]: r[1:] for r in rows}


def vector_ids(runtime, version) -> set[str]:
    with runtime.pool.connection() as conn:
        return {r[0] for r in conn.execute(f"SELECT document_id FROM doc_embeddings_{version}").fetchall()}


# -- JSONL -------------------------------------------------------------------------------------------

def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_jsonl_import_is_stable_deduplicated_and_keeps_metadata(runtime, tmp_path):
    path = write_jsonl(tmp_path / "corpus.jsonl", [
        {"id": "a1", "title": "Opening hours", "content": "Open 8 to 8.", "category": "facilities",
         "metadata": {"owner": "desk", "tags": ["hours"]}},
        {"title": "Parking", "content": "Level B1.", "metadata": {"source": "guide.pdf", "chunk": 3}},
        {"id": "a1-copy", "title": "Opening hours", "content": "Open 8 to 8."},  # its own id: kept
        {"title": "Opening hours", "content": "Open 8 to 8.", "metadata": {"source": "hours.md"}},  # no id: once
        {"id": "untitled", "content": "A text without a title.\nSecond line."},
    ])
    code, output = run(runtime, path, "--format", "jsonl", "--namespace", "site")
    assert code == 0, output
    stored = documents(runtime)
    assert set(stored) == {"site_a1", "site_a1-copy", "site_guide.pdf_3", "site_untitled"}
    title, content, category, metadata = stored["site_a1"]
    assert (title, category) == ("Opening hours", "facilities")
    assert metadata == {"owner": "desk", "tags": ["hours"],
                        "imported_from": {"format": "jsonl", "id": "a1", "key": "id:a1"}}
    assert stored["site_untitled"][0] == "A text without a title."
    assert "1 duplicate texts" in output and "1 records with their own id repeat another record's text" in output
    code, again = run(runtime, path, "--format", "jsonl", "--namespace", "site")
    assert code == 0 and "0 new, 0 updated, 4 unchanged" in again


def test_jsonl_truncated_file_is_a_clear_error_and_nothing_is_written(runtime, tmp_path):
    path = tmp_path / "cut.jsonl"
    path.write_text(json.dumps({"id": "1", "title": "T", "content": "ok"}) + "\n" + '{"id": "2", "title": "T", "con')
    code, output = run(runtime, path, "--format", "jsonl")
    assert code == 2 and "cut.jsonl:2: not valid JSON" in output and "Traceback" not in output
    assert documents(runtime) == {}


def test_a_file_of_another_format_is_a_clear_error(runtime, tmp_path):
    code, output = run(runtime, CHROMA / "chroma.sqlite3", "--format", "jsonl")
    assert code == 2 and "not UTF-8 text" in output or "not valid JSON" in output
    code, output = run(runtime, write_jsonl(tmp_path / "x.jsonl", [{"content": "x"}]), "--format", "chroma")
    assert code == 2 and "not an SQLite database" in output
    code, output = run(runtime, tmp_path, "--format", "vespa")
    assert code == 2 and "no Vespa documents found" in output
    assert documents(runtime) == {}


def test_vectors_are_kept_only_when_asked_and_of_a_versions_dimension(runtime, tmp_path):
    rng = np.random.default_rng(1)
    rows = [{"id": f"v{n}", "title": f"T{n}", "content": f"Text {n}", "embedding": rng.normal(size=768).tolist()}
            for n in range(3)] + [{"id": "small", "title": "S", "content": "Small vector", "embedding": [1, 2]}]
    path = write_jsonl(tmp_path / "vectors.jsonl", rows)
    code, output = run(runtime, path, "--format", "jsonl", "--dry-run")
    assert code == 0 and "4 vectors found and ignored" in output
    code, output = run(runtime, path, "--format", "jsonl")
    assert code == 0 and vector_ids(runtime, "v2") == set()
    code, output = run(runtime, path, "--format", "jsonl", "--keep-vectors")
    assert code == 0, output
    assert vector_ids(runtime, "v2") == {"vectors_v0", "vectors_v1", "vectors_v2"}
    assert "1 vectors of dimension 2 match no version" in output
    with runtime.pool.connection() as conn:
        norms = [r[0] for r in conn.execute("SELECT vector_norm(embedding) FROM doc_embeddings_v2").fetchall()]
    assert np.allclose(norms, 1.0, atol=1e-5)


# -- Chroma ----------------------------------------------------------------------------------------

def test_chroma_store_written_by_chromadb(runtime):
    code, output = run(runtime, CHROMA, "--format", "chroma", "--namespace", "kb", "--keep-vectors")
    assert code == 0, output
    stored = documents(runtime)
    handbook = {k: v for k, v in stored.items() if k.startswith("kb_handbook.")}
    assert len(handbook) == 12  # hb-0..10 and hb-dup (same text as another, kept under its own id)
    title, content, category, metadata = stored["kb_handbook.hb-0"]
    assert content == "Section 0, revised: parking is free after 6pm." and title == "Handbook section 0"
    assert metadata["tags"] == ["handbook", "s0"] and metadata["reviewed"] is True and category == "policies"
    assert metadata["imported_from"] == {"format": "chroma", "id": "hb-0", "scope": "handbook",
                                         "key": "id:handbook.hb-0"}
    assert {"kb_faq.faq-0", "kb_faq.faq-1", "kb_faq.faq-2"} <= set(stored)
    assert vector_ids(runtime, "v2") == set(handbook)  # 768-d kept for V2; the 4-d faq vectors match nothing
    assert "3 vectors of dimension 4 match no version" in output


def test_chroma_vectors_match_what_chromadb_stored(runtime):
    scan = read_source(CHROMA, "chroma", vectors=True, collection="handbook")
    by_id = {r.original_id: r.vector for r in scan.records}
    assert set(by_id) == {f"hb-{n}" for n in range(11)} | {"hb-dup"}
    assert all(v is not None and v.shape == (768,) for v in by_id.values())
    assert len({v.tobytes() for v in by_id.values()}) == 12  # from the HNSW files and from the log, all distinct


def test_chroma_unknown_collection_and_missing_store(runtime, tmp_path):
    code, output = run(runtime, CHROMA, "--format", "chroma", "--collection", "nope")
    assert code == 2 and "no collection 'nope' (found: faq, handbook)" in output
    code, output = run(runtime, tmp_path, "--format", "chroma")
    assert code == 2 and "not a Chroma directory" in output


# -- FAISS -----------------------------------------------------------------------------------------

@pytest.fixture
def faiss_store(tmp_path) -> Path:
    faiss = need_module("faiss")
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(5, 768)).astype(np.float32)
    index = faiss.IndexFlatIP(768)
    index.add(vectors)
    folder = tmp_path / "faiss_store"
    folder.mkdir()
    faiss.write_index(index, str(folder / "index.faiss"))
    texts = [f"FAISS passage {n} about the {topic}." for n, topic in enumerate(["gym", "pool", "bar", "gym", "lift"])]
    metadata = [{"source": "venue.txt", "chunk": n, "category": "facilities", "weight": np.float32(0.5)}
                for n in range(5)]
    with open(folder / "text.pkl", "wb") as handle:
        pickle.dump(texts, handle)
    with open(folder / "metadata.pkl", "wb") as handle:
        pickle.dump(metadata, handle)
    return folder


def test_faiss_store_with_pickled_texts_and_metadata(runtime, faiss_store):
    code, output = run(runtime, faiss_store, "--format", "faiss", "--namespace", "fx", "--keep-vectors")
    assert code == 0, output
    stored = documents(runtime)
    assert set(stored) == {f"fx_venue.txt_{n}" for n in range(5)}
    assert stored["fx_venue.txt_1"][1] == "FAISS passage 1 about the pool."
    assert stored["fx_venue.txt_1"][3]["weight"] == 0.5
    assert vector_ids(runtime, "v2") == set(stored)
    assert "IndexFlatIP: 5 vectors of dimension 768" in output


def test_faiss_missing_pickle_is_a_clear_error(runtime, faiss_store):
    (faiss_store / "metadata.pkl").unlink()
    code, output = run(runtime, faiss_store, "--format", "faiss")
    assert code == 2 and "metadata.pkl is missing" in output
    assert documents(runtime) == {}


def test_faiss_refuses_pickles_that_run_code(runtime, faiss_store):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    with open(faiss_store / "text.pkl", "wb") as handle:
        pickle.dump([Payload()] * 5, handle)
    code, output = run(runtime, faiss_store, "--format", "faiss")
    assert code == 2 and "refusing to load builtins.print" in output


def test_faiss_index_that_is_not_one(runtime, faiss_store):
    (faiss_store / "index.faiss").write_bytes(b"not an index at all")
    code, output = run(runtime, faiss_store, "--format", "faiss")
    assert code == 2 and "not a FAISS index" in output


# -- Vespa -----------------------------------------------------------------------------------------

SEARCH_RESULT = {"root": {"id": "toplevel", "fields": {"totalCount": 2}, "children": [
    {"id": "index:content/0/abc", "relevance": 0.9, "fields": {
        "sddocname": "doc", "documentid": "id:venue:doc::pool-1", "title": "Pool rules",
        "text": "Shower before swimming.", "category": "facilities", "lang": "en",
        "embedding": {"type": "tensor<float>(x[768])", "values": [0.1] * 768}}},
    {"id": "index:content/0/def", "relevance": 0.8, "fields": {
        "sddocname": "doc", "documentid": "id:venue:doc::bar-1", "title": "Bar hours", "text": "Open until 1am."}},
]}}


def test_vespa_search_result_and_visit_export(runtime, tmp_path):
    folder = tmp_path / "vespa"
    folder.mkdir()
    (folder / "1-search.json").write_text(json.dumps(SEARCH_RESULT))
    hex_values = np.full(768, 0.25, dtype=">f4").tobytes().hex()
    visit = {"pathId": "/document/v1/venue/doc/docid", "documentCount": 2, "documents": [
        {"id": "id:venue:doc::gym-1", "fields": {"title": "Gym", "content": "Open 24/7.", "floor": 2,
                                                  "embedding": {"type": "tensor<float>(x[768])",
                                                                "values": hex_values}}},
        {"id": "id:venue:doc::pool-1", "fields": {"title": "Pool rules", "text": "Shower before swimming."}}]}
    (folder / "2-visit.json").write_text(json.dumps(visit))
    (folder / "3-feed.jsonl").write_text(json.dumps({"put": "id:venue:doc::cafe-1", "fields": {
        "title": "Cafe", "body": "Coffee from 7am."}}) + "\n")
    code, output = run(runtime, folder, "--format", "vespa", "--namespace", "vx", "--keep-vectors")
    assert code == 0, output
    stored = documents(runtime)
    assert set(stored) == {"vx_doc.pool-1", "vx_doc.bar-1", "vx_doc.gym-1", "vx_doc.cafe-1"}
    assert stored["vx_doc.pool-1"][3]["lang"] == "en" and stored["vx_doc.gym-1"][3]["floor"] == 2
    assert vector_ids(runtime, "v2") == {"vx_doc.pool-1", "vx_doc.gym-1"}
    assert "1 duplicate texts" in output  # pool-1 is in both files


def test_vespa_truncated_export(runtime, tmp_path):
    path = tmp_path / "visit.json"
    path.write_text(json.dumps(SEARCH_RESULT)[:-40])
    code, output = run(runtime, path, "--format", "vespa")
    assert code == 2 and "not valid JSON" in output
    assert documents(runtime) == {}


# -- the whole import is one transaction -------------------------------------------------------------

def test_dry_run_reports_and_writes_nothing(runtime):
    load_and_embed(runtime)
    code, output = run(runtime, CHROMA, "--format", "chroma", "--dry-run", "--json")
    assert code == 0, output
    summary = json.loads(output)
    assert summary["records"] == 15 and summary["documents"] == 15 and summary["duplicates"] == 0
    assert summary["would"] == {"new": 15, "changed": 0, "unchanged": 0, "already_present": 0, "superseded": []}
    assert summary["bytes"] > 0 and summary["vector_dimensions"] == {"768": 12, "4": 3}
    assert DocumentStore(runtime.pool).count() == 6


def test_a_failure_while_writing_leaves_nothing(runtime, tmp_path):
    scan = read_source(write_jsonl(tmp_path / "ok.jsonl", [{"id": f"d{n}", "title": "T", "content": f"C{n}"}
                                                            for n in range(5)]), "jsonl")
    plan = plan_import(scan, "ns")
    plan.documents[3] = plan.documents[3].__class__("x" * 300, "T", "C", "general", {})  # over the id limit
    with pytest.raises(psycopg.errors.CheckViolation):
        apply_import(runtime.pool, plan)
    assert documents(runtime) == {}


def test_colliding_ids_are_refused(runtime, tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [
        {"title": "A", "content": "one", "metadata": {"source": "s", "chunk": 1}},
        {"title": "B", "content": "two", "metadata": {"source": "s", "chunk": 1}}])
    with pytest.raises(ImportFileError, match="map to the id 'c_s_1'"):
        plan_import(read_source(path, "jsonl"), "c")


def test_a_copy_of_the_store_keeps_the_same_ids(runtime, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(CHROMA, copy)
    first = plan_import(read_source(CHROMA, "chroma"), "kb")
    second = plan_import(read_source(copy, "chroma"), "kb")
    assert [d.id for d in first.documents] == [d.id for d in second.documents]


# -- ids never depend on a record's line -------------------------------------------------------------

def test_editing_reordering_and_deleting_lines_between_imports_loses_and_duplicates_nothing(runtime, tmp_path):
    alpha = {"id": "a-1", "title": "Alpha", "content": "Alpha text.", "metadata": {"source": "faq"}}
    beta = {"id": "b-2", "title": "Beta", "content": "Beta text.", "metadata": {"source": "faq"}}
    gamma = {"id": "c-3", "title": "Gamma", "content": "Gamma text.", "metadata": {"source": "faq"}}
    chunk = {"title": "Guide", "content": "Guide chunk two.", "metadata": {"source": "guide.md", "chunk": 2}}
    loose = {"title": "Loose", "content": "A record with no id at all."}
    path = tmp_path / "faq.jsonl"

    def imported(rows, expected_counts):
        code, output = run(runtime, write_jsonl(path, rows), "--format", "jsonl")
        assert code == 0, output
        assert expected_counts in output, output
        return {k: (v[0], v[1]) for k, v in documents(runtime).items()}

    first = {"faq_a-1": ("Alpha", "Alpha text."), "faq_b-2": ("Beta", "Beta text."),
             "faq_c-3": ("Gamma", "Gamma text."), "faq_guide.md_2": ("Guide", "Guide chunk two.")}
    loose_id = next(iter(set(imported([alpha, beta, gamma, chunk, loose], "5 new")) - set(first)))
    assert loose_id.startswith("faq_text_h")
    first[loose_id] = ("Loose", "A record with no id at all.")
    assert imported([alpha, beta, gamma, chunk, loose], "0 new, 0 updated, 5 unchanged") == first
    # the first line deleted: every other document stays itself (the deleted one is kept, never overwritten)
    assert imported([beta, gamma, chunk, loose], "0 new, 0 updated, 4 unchanged") == first
    # reordered, and Beta and the chunk edited
    edited_beta = {**beta, "content": "Beta text, revised."}
    edited_chunk = {**chunk, "content": "Guide chunk two, revised."}
    after = imported([loose, edited_chunk, gamma, edited_beta, alpha], "0 new, 2 updated, 3 unchanged")
    assert after == {**first, "faq_b-2": ("Beta", "Beta text, revised."),
                     "faq_guide.md_2": ("Guide", "Guide chunk two, revised.")}
    # an edited record without an id becomes a new document beside the old one, and the output says so
    code, output = run(runtime, write_jsonl(path, [{**loose, "content": "Edited loose text."}]), "--format", "jsonl")
    assert code == 0 and "1 new" in output and "their ids come from their text" in output
    assert len(documents(runtime)) == 6


def test_an_import_never_overwrites_another_document(runtime, tmp_path):
    DocumentStore(runtime.pool).upsert_many([Document("kb_a-1", "Mine", "Written through the API.", "general", {})])
    path = write_jsonl(tmp_path / "kb.jsonl", [{"id": "a-1", "title": "Theirs", "content": "From the file."},
                                               {"id": "b-2", "title": "Other", "content": "Another record."}])
    for extra in ((), ("--dry-run",)):
        code, output = run(runtime, path, "--format", "jsonl", *extra)
        assert code == 2 and "import refused, nothing written: 1 ids already hold another document" in output
        assert "'kb_a-1'" in output and "Traceback" not in output
    assert {k: v[0] for k, v in documents(runtime).items()} == {"kb_a-1": "Mine"}
    code, output = run(runtime, path, "--format", "jsonl", "--namespace", "kb2")
    assert code == 0 and "2 new" in output


def test_a_rebuilt_faiss_index_without_ids_keeps_each_documents_id(runtime, tmp_path):
    faiss = pytest.importorskip("faiss")
    texts = ["First passage.", "Second passage.", "Third passage."]

    def store(order) -> Path:
        folder = tmp_path / "-".join(map(str, order))
        folder.mkdir()
        index = faiss.IndexFlatIP(4)
        index.add(np.eye(4, dtype=np.float32)[:len(order)])
        faiss.write_index(index, str(folder / "index.faiss"))
        with open(folder / "text.pkl", "wb") as handle:
            pickle.dump([texts[n] for n in order], handle)
        with open(folder / "metadata.pkl", "wb") as handle:
            pickle.dump([{"n": n} for n in order], handle)
        return folder

    first = plan_import(read_source(store([0, 1, 2]), "faiss"), "fx")
    rebuilt = plan_import(read_source(store([2, 0]), "faiss"), "fx")
    ids = {d.content: d.id for d in first.documents}
    assert {d.content: d.id for d in rebuilt.documents} == {t: ids[t] for t in (texts[2], texts[0])}


# -- Weaviate --------------------------------------------------------------------------------------

def weaviate_object(uuid: str, cls: str, properties: dict, vector=None, **extra) -> dict:
    """An object as `GET /v1/objects?include=vector` returns it."""
    obj = {"class": cls, "creationTimeUnix": 1733300000000, "id": uuid, "lastUpdateTimeUnix": 1733300000000,
           "properties": properties, "vectorWeights": None, **extra}
    if vector is not None:
        obj["vector"] = vector
    return obj


UUIDS = [f"3f2b6c1e-0000-4000-8000-00000000000{n}" for n in range(5)]


def test_weaviate_pages_and_object_lines(runtime, tmp_path):
    folder = tmp_path / "weaviate"
    folder.mkdir()
    page_one = {"deprecations": None, "totalResults": 3, "objects": [
        weaviate_object(UUIDS[0], "Article", {"title": "Pool rules", "body": "Shower before swimming.",
                                               "category": "facilities", "wordCount": 3}, [0.5] * 768),
        weaviate_object(UUIDS[1], "Article", {"title": "Bar hours", "body": "Open until 1am."}, [0.1] * 768)]}
    page_two = {"deprecations": None, "totalResults": 3, "objects": [
        weaviate_object(UUIDS[2], "Article", {"title": "Gym", "body": "Open 24/7.", "summary": "gym"},
                        vectors={"body_vector": [0.2] * 768})]}
    (folder / "page-1.json").write_text(json.dumps(page_one))
    (folder / "page-2.json").write_text(json.dumps(page_two))
    (folder / "more.jsonl").write_text(json.dumps(weaviate_object(
        UUIDS[0], "Note", {"title": "Note", "body": "Same UUID, another class."})) + "\n")
    code, output = run(runtime, folder, "--format", "weaviate", "--namespace", "wv", "--content-property", "body",
                       "--keep-vectors")
    assert code == 0, output
    stored = documents(runtime)
    assert set(stored) == {f"wv_Article.{UUIDS[0]}", f"wv_Article.{UUIDS[1]}", f"wv_Article.{UUIDS[2]}",
                           f"wv_Note.{UUIDS[0]}"}
    title, content, category, metadata = stored[f"wv_Article.{UUIDS[0]}"]
    assert (title, content, category) == ("Pool rules", "Shower before swimming.", "facilities")
    assert metadata["wordCount"] == 3 and metadata["weaviate_creationTimeUnix"] == 1733300000000
    assert metadata["imported_from"] == {"format": "weaviate", "id": UUIDS[0], "scope": "Article",
                                         "key": f"id:Article.{UUIDS[0]}"}
    assert stored[f"wv_Article.{UUIDS[2]}"][3]["summary"] == "gym"
    assert vector_ids(runtime, "v2") == {f"wv_Article.{u}" for u in UUIDS[:3]}  # the one named vector too
    assert "classes: Article (3), Note (1)" in output
    # pages fetched again in another order, one object edited, one gone: the others stay themselves
    page_one["objects"][1]["properties"]["body"] = "Open until 2am."
    (folder / "page-1.json").write_text(json.dumps({"objects": page_two["objects"] + page_one["objects"][1:]}))
    (folder / "page-2.json").write_text(json.dumps({"objects": []}))
    code, output = run(runtime, folder, "--format", "weaviate", "--namespace", "wv", "--content-property", "body",
                       "--collection", "Article")
    assert code == 0 and "0 new, 1 updated, 1 unchanged" in output, output
    stored = documents(runtime)
    assert stored[f"wv_Article.{UUIDS[1]}"][1] == "Open until 2am." and len(stored) == 4


def test_weaviate_content_property_and_bad_exports(runtime, tmp_path):
    path = tmp_path / "objects.jsonl"
    path.write_text(json.dumps(weaviate_object(UUIDS[3], "Doc", {"question": "Why?", "answer": "Because."})) + "\n")
    code, output = run(runtime, path, "--format", "weaviate")
    assert code == 2 and "--content-property" in output and "its text properties: question, answer" in output
    code, output = run(runtime, path, "--format", "weaviate", "--content-property", "answer")
    assert code == 0, output
    title, content, _, metadata = documents(runtime)[f"objects_Doc.{UUIDS[3]}"]
    assert (title, content, metadata["question"]) == ("Because.", "Because.", "Why?")
    code, output = run(runtime, path, "--format", "weaviate", "--collection", "Nope")
    assert code == 2 and "no objects of class 'Nope' (found: Doc)" in output
    code, output = run(runtime, path, "--format", "jsonl", "--content-property", "answer")
    assert code == 2 and "applies to the weaviate format only" in output
    truncated = tmp_path / "page.json"
    truncated.write_text(json.dumps({"objects": [weaviate_object(UUIDS[4], "Doc", {"content": "x"})]})[:-10])
    code, output = run(runtime, truncated, "--format", "weaviate")
    assert code == 2 and "not valid JSON" in output and "Traceback" not in output


def test_records_an_earlier_import_stored_under_positional_ids_are_named(runtime, tmp_path):
    old = {"source": "faq", "imported_from": {"format": "jsonl", "id": "a-1"}}  # as imports wrote them before
    DocumentStore(runtime.pool).upsert_many([Document("faq_faq_0", "Alpha", "Alpha text.", "general", old)])
    path = write_jsonl(tmp_path / "faq.jsonl", [{"id": "a-1", "title": "Alpha", "content": "Alpha text.",
                                                 "metadata": {"source": "faq"}}])
    for extra in (("--dry-run",), ()):
        code, output = run(runtime, path, "--format", "jsonl", *extra)
        assert code == 0, output
        assert "note: 1 documents of an earlier import hold these records under their old ids (faq_faq_0)" in output
    assert set(documents(runtime)) == {"faq_faq_0", "faq_a-1"}  # named, never deleted by the import
