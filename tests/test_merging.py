"""Merged mode: reciprocal rank fusion, near-duplicate removal, the per-version minimum, end to end."""

import numpy as np
import pytest
from helpers import load_and_embed

from rollout.backends import Hit
from rollout.documents import Document, DocumentStore
from rollout.merging import RRF_K, Merger, NearDuplicates, fuse
from rollout.migration.loader import EmbeddingLoader, EmbeddingRow
from rollout.relevance.calibration import Calibration


def hits(*ids: str, similarity: float = 0.5) -> list[Hit]:
    return [Hit(i, f"title {i}", "", {}, "general", similarity - n * 0.01) for n, i in enumerate(ids)]


def rrf(*ranks: int) -> float:
    return sum(1 / (RRF_K + r) for r in ranks)


def test_fusion_ranks_by_reciprocal_rank_and_dedupes_the_same_document():
    merged = fuse({"v1": hits("a", "b", "c"), "v2": hits("b", "d", "a")}, k=10)
    ids = [m.hit.id for m in merged]
    assert ids == ["b", "a", "d", "c"]  # b: 1/62 + 1/61, a: 1/61 + 1/63, then d (rank 2) before c (rank 3)
    assert merged[0].score == pytest.approx(rrf(2, 1))
    assert merged[0].ranks == {"v1": 2, "v2": 1}
    assert merged[0].found_by == ("v1", "v2")
    assert merged[2].found_by == ("v2",)
    assert len(ids) == len(set(ids))


def test_near_duplicates_become_one_result_found_at_their_best_ranks():
    # a (V1 rank 1) and a-copy (V2 rank 1) are near-duplicates: one result, found by both versions
    merged = fuse({"v1": hits("a", "b"), "v2": hits("a-copy", "c")}, k=10, duplicate_pairs=[("a", "a-copy")])
    assert [m.hit.id for m in merged][0] in {"a", "a-copy"}
    first = merged[0]
    assert first.score == pytest.approx(rrf(1, 1))
    assert first.found_by == ("v1", "v2")
    assert set(first.duplicates) | {first.hit.id} == {"a", "a-copy"}
    assert len(merged) == 3


def test_pairs_of_documents_not_in_the_results_are_ignored():
    merged = fuse({"v1": hits("a"), "v2": hits("b")}, k=10, duplicate_pairs=[("a", "zzz"), ("zzz", "b")])
    assert len(merged) == 2  # a and b are not linked through a document that was not returned


def test_each_version_keeps_its_minimum_when_it_has_results():
    # V1's documents are found by both versions or rank high; V2-only ones rank low in fusion
    v1 = hits("a", "b", "c", "d", "e")
    v2 = hits("a", "b", "c", "d", "e", "x", "y", "z")
    plain = fuse({"v1": v1, "v2": v2}, k=5)
    assert all(m.found_by == ("v1", "v2") for m in plain)  # without a minimum, V2-only results are all cut
    balanced = fuse({"v1": v1, "v2": v2}, k=5, min_per_version=2)
    assert len(balanced) == 5
    assert sum(1 for m in balanced if "v2" in m.found_by) >= 2
    assert sum(1 for m in balanced if "v1" in m.found_by) >= 2
    v2_only = [m.hit.id for m in balanced if m.found_by == ("v2",)]
    assert v2_only == []  # both versions found a-e: each already has 5 ≥ 2


def test_the_minimum_brings_in_a_version_whose_results_collapse_into_duplicates():
    # V2's first three results are near-copies of one document: one group at rank 1, then y at rank 4.
    v1 = hits("a", "b", "c", "d")
    v2 = hits("x1", "x2", "x3", "y")
    pairs = [("x1", "x2"), ("x2", "x3")]
    plain = fuse({"v1": v1, "v2": v2}, k=4, duplicate_pairs=pairs)
    assert [m.hit.id for m in plain] == ["a", "x1", "b", "c"]  # a and x1 tie at 1/61; only one V2 result
    assert plain[1].duplicates == ("x2", "x3")
    balanced = fuse({"v1": v1, "v2": v2}, k=4, duplicate_pairs=pairs, min_per_version=2)
    assert [m.hit.id for m in balanced] == ["a", "x1", "b", "y"]  # c (lowest V1-only) gave way to y
    assert sum(1 for m in balanced if "v2" in m.found_by) == 2


def test_fusion_properties_on_random_lists():
    rng = np.random.default_rng(7)
    universe = [f"d{n}" for n in range(30)]
    for _ in range(300):
        lists = {v: hits(*rng.choice(universe, size=rng.integers(0, 12), replace=False)) for v in ("v1", "v2")}
        pairs = [tuple(rng.choice(universe, size=2, replace=False)) for _ in range(rng.integers(0, 6))]
        k, minimum = int(rng.integers(1, 12)), int(rng.integers(0, 6))
        merged = fuse(lists, k, duplicate_pairs=pairs, min_per_version=minimum)
        everything = fuse(lists, 1000, duplicate_pairs=pairs)
        members = [m.hit.id for m in merged] + [d for m in merged for d in m.duplicates]
        assert len(members) == len(set(members))                       # no document twice
        assert len(merged) == min(k, len(everything))
        assert [m.score for m in merged] == sorted((m.score for m in merged), reverse=True)
        for version in lists:
            available = sum(1 for m in everything if version in m.found_by)
            wanted = min(minimum, k // 2, available)
            assert sum(1 for m in merged if version in m.found_by) >= wanted
        if minimum == 0:
            assert [m.hit.id for m in merged] == [m.hit.id for m in everything[:k]]


def test_the_minimum_is_capped_by_what_a_version_returned_and_by_k():
    merged = fuse({"v1": hits("a", "b", "c", "d", "e"), "v2": hits("z")}, k=4, min_per_version=3)
    assert len(merged) == 4
    assert sum(1 for m in merged if "v2" in m.found_by) == 1  # V2 had only one
    only_v1 = fuse({"v1": hits("a", "b"), "v2": []}, k=5, min_per_version=3)
    assert [m.hit.id for m in only_v1] == ["a", "b"]


def test_near_duplicates_come_from_the_stored_embeddings_of_every_version_holding_both(runtime):
    store = DocumentStore(runtime.pool)
    docs = [Document("orig", "Pool hours", "The pool opens at 6am."),
            Document("copy", "Pool hours (copy)", "The pool opens at 6am."),
            Document("other", "Parking", "Parking costs 12 dollars.")]
    store.upsert_many(docs)
    base = np.zeros(768, dtype=np.float32)
    base[0] = 1.0
    close = base.copy()
    close[1] = 0.3  # cosine 0.958
    far = np.zeros(768, dtype=np.float32)
    far[5] = 1.0
    loader = EmbeddingLoader("doc_embeddings_v2", "test")
    with runtime.pool.connection() as conn:
        loader.load(conn, [EmbeddingRow("orig", base, docs[0].content_hash),
                           EmbeddingRow("copy", close / np.linalg.norm(close), docs[1].content_hash),
                           EmbeddingRow("other", far, docs[2].content_hash)])
    finder = NearDuplicates(runtime.pool, lambda version: f"doc_embeddings_{version}")
    pair = ["v1", "v2"]
    assert finder.pairs(["orig", "copy", "other"], 0.85, pair) == {("copy", "orig")}
    assert finder.pairs(["orig", "copy", "other"], 0.99, pair) == set()
    # V1 also holds both and disagrees (orthogonal): no longer a near-duplicate in every version
    v1_loader = EmbeddingLoader("doc_embeddings_v1", "test")
    a, b = np.zeros(1536, dtype=np.float32), np.zeros(1536, dtype=np.float32)
    a[0], b[1] = 1.0, 1.0
    with runtime.pool.connection() as conn:
        v1_loader.load(conn, [EmbeddingRow("orig", a, docs[0].content_hash),
                              EmbeddingRow("copy", b, docs[1].content_hash)])
    assert finder.pairs(["orig", "copy", "other"], 0.85, pair) == set()
    assert finder.pairs(["orig", "copy", "other"], 0.85, ["v2"]) == {("copy", "orig")}  # only the versions asked


def test_the_near_duplicate_check_follows_the_pair_after_a_promotion(runtime):
    """v2 promoted, v3 the candidate: the check reads v2's and v3's tables, no longer v1's."""
    from rollout.controller import Action, Command
    from rollout.versions import VersionRegistry

    store = DocumentStore(runtime.pool)
    docs = [Document("orig", "Pool hours", "The pool opens at 6am."),
            Document("copy", "Pool hours (copy)", "The pool opens at 6am.")]
    store.upsert_many(docs)
    registry = VersionRegistry(runtime.settings.database_url)
    registry.add("v3", "local", 16)

    def load(table: str, dimensions: int, near: bool) -> None:
        a, b = np.zeros(dimensions, dtype=np.float32), np.zeros(dimensions, dtype=np.float32)
        a[0], b[0 if near else 1] = 1.0, 1.0
        with runtime.pool.connection() as conn:
            EmbeddingLoader(table, "test").load(conn, [EmbeddingRow("orig", a, docs[0].content_hash),
                                                       EmbeddingRow("copy", b, docs[1].content_hash)])

    load("doc_embeddings_v1", 1536, near=False)  # the former baseline disagrees
    load("doc_embeddings_v2", 768, near=True)
    load("doc_embeddings_v3", 16, near=True)
    merger = runtime.gateway.merger  # built once, when the process started on v1 and v2
    answered = {"v1": hits("orig", "other"), "v2": hits("copy", "other")}
    assert len(merger.merge(answered, k=5)) == 3  # v1 says orig and copy differ: both kept

    runtime.stages.command(Command(Action.SET, actor="test", percentage=100))
    runtime.stages.command(Command(Action.ADVANCE, actor="test"))
    registry.promote("v2")
    runtime.stages.start("v2", "v3", actor="test")
    runtime.coverage.refresh()  # the registry's snapshot, as the coverage thread takes it
    assert tuple(runtime.router.roles) == ("v2", "v3")
    merged = merger.merge({"v2": hits("orig", "other"), "v3": hits("copy", "other")}, k=5)
    assert len(merged) == 2 and merged[0].duplicates  # orig and copy are one result in v2 and v3
    assert {merged[0].hit.id, *merged[0].duplicates} == {"orig", "copy"}


def unit(dimensions: int, cosine: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors of `dimensions` whose cosine similarity is `cosine`."""
    a, b = np.zeros(dimensions, dtype=np.float32), np.zeros(dimensions, dtype=np.float32)
    a[axis] = 1.0
    b[axis], b[axis + 1] = cosine, np.sqrt(1 - cosine * cosine)
    return a, b


def test_the_near_duplicate_threshold_is_mapped_to_each_version_scale(runtime):
    # the baseline (v1) puts near-copies around 0.8 on its scale, the candidate (v2) around 0.35:
    # the same pair is 0.87 in v1 and 0.48 in v2, near-duplicates on both scales once mapped
    rng = np.random.default_rng(4)
    calibration = Calibration(None, "v1", min_samples=100)
    calibration.learn_neighbours({"v1": rng.normal(0.80, 0.04, 4000), "v2": rng.normal(0.35, 0.08, 4000)})
    mapped = calibration.duplicate_threshold_for("v2", 0.85)
    assert 0.42 < mapped < 0.46  # about 1.25 spreads above the candidate's centre, like 0.85 on the baseline's
    assert calibration.duplicate_threshold_for("v1", 0.85) == 0.85
    held_out = {"v1": rng.normal(0.80, 0.04, 4000), "v2": rng.normal(0.35, 0.08, 4000)}
    assert abs(np.mean(held_out["v1"] >= 0.85) - np.mean(held_out["v2"] >= mapped)) < 0.02  # the same share
    top = calibration.neighbour_scales["v2"].quantiles[-1]
    assert top < calibration.duplicate_threshold_for("v2", 0.99) < 1  # past the highest sample: towards 1

    store = DocumentStore(runtime.pool)
    docs = [Document("orig", "Pool hours", "The pool opens at 6am."),
            Document("copy", "Pool hours (copy)", "The pool opens at 6am.")]
    store.upsert_many(docs)
    with runtime.pool.connection() as conn:
        for table, version, cosine in (("doc_embeddings_v1", 1536, 0.87), ("doc_embeddings_v2", 768, 0.48)):
            a, b = unit(version, cosine)
            EmbeddingLoader(table, "test").load(conn, [EmbeddingRow("orig", a, docs[0].content_hash),
                                                       EmbeddingRow("copy", b, docs[1].content_hash)])
    finder = NearDuplicates(runtime.pool, lambda version: f"doc_embeddings_{version}")
    assert finder.pairs(["orig", "copy"], 0.85, ["v1", "v2"]) == set()  # one raw threshold: v2's 0.48 is never 0.85
    merger = Merger(finder, threshold=0.85)
    merger.threshold_for = calibration.duplicate_threshold_for
    assert merger.thresholds(["v1", "v2"]) == {"v1": 0.85, "v2": mapped}
    merged = merger.merge({"v1": hits("orig"), "v2": hits("copy")}, k=5)
    assert len(merged) == 1 and merged[0].found_by == ("v1", "v2")
    assert set(merged[0].duplicates) | {merged[0].hit.id} == {"orig", "copy"}
    assert len(Merger(finder, threshold=0.85).merge({"v1": hits("orig"), "v2": hits("copy")}, k=5)) == 2


def test_the_neighbour_scales_are_read_from_each_version_table(runtime):
    store = DocumentStore(runtime.pool)
    docs = [Document(f"d{n}", f"Title {n}", f"Content {n}.") for n in range(3)]
    store.upsert_many(docs)
    a, b = unit(768, 0.6)
    c = np.zeros(768, dtype=np.float32)
    c[5] = 1.0  # orthogonal to both: its nearest neighbour is at cosine 0
    with runtime.pool.connection() as conn:
        EmbeddingLoader("doc_embeddings_v2", "test").load(conn, [
            EmbeddingRow("d0", a, docs[0].content_hash), EmbeddingRow("d1", b, docs[1].content_hash),
            EmbeddingRow("d2", c, docs[2].content_hash)])
    calibration = Calibration(runtime.pool, "v1", min_samples=20)
    samples = calibration.read_neighbours({"v1": "doc_embeddings_v1", "v2": "doc_embeddings_v2"})
    assert samples["v1"] == []
    assert sorted(samples["v2"]) == pytest.approx([0.0, 0.6, 0.6], abs=1e-3)


def test_merged_mode_through_the_api(runtime, client):
    load_and_embed(runtime)
    body = {"query": "When does the pool open on weekends?", "user_id": "alice", "k": 4, "mode": "merged"}
    response = client.post("/api/rag/query", json=body)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    # the migration is off by default: merged mode honours the master switch, V1 alone
    assert answer["served_by"] == "v1" and answer["sources"]["v2"] == {"results": 0,
                                                                       "held_off": "migration_disabled"}
    runtime.flags.set("FF_ENABLE_GRADUAL_MIGRATION", True, actor="test")
    answer = client.post("/api/rag/query", json=body).get_json()
    assert answer["mode"] == "merged" and answer["served_by"] == "merged"
    assert answer["sources"]["v1"]["results"] == 4 and answer["sources"]["v2"]["results"] == 4
    ids = [r["id"] for r in answer["results"]]
    assert len(ids) == len(set(ids)) and len(ids) <= 4
    assert ids[0] == "pool-hours"
    assert answer["results"][0]["found_by"] == ["v1", "v2"]
    scores = [r["rrf_score"] for r in answer["results"]]
    assert scores == sorted(scores, reverse=True)
    assert 0 <= answer["comparison"]["overlap"] <= 1
    assert runtime.metrics.merged_requests.labels("both")._value.get() == 1


def test_merged_mode_refuses_a_forced_version(client):
    response = client.post("/api/rag/query", json={"query": "x", "mode": "merged", "version": "v2"})
    assert response.status_code == 400
    assert "exclude each other" in response.get_json()["detail"]
    response = client.post("/api/rag/query", json={"query": "x", "mode": "blended"})
    assert response.status_code == 400 and response.get_json()["fields"][0]["field"] == "mode"


def test_the_runtime_maps_the_merge_threshold_with_the_calibration_of_the_same_tables(runtime):
    merger = runtime.gateway.merger
    assert merger.threshold_for == runtime.calibration.duplicate_threshold_for
    assert runtime.calibration.tables() == merger.duplicates.tables(["v1", "v2"]) == {"v1": "doc_embeddings_v1",
                                                                                      "v2": "doc_embeddings_v2"}
