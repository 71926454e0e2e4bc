"""Known-item probes: evidence with no user traffic, kept out of user metrics and query_log."""

import json

import psycopg
import pytest
from click.testing import CliRunner
from helpers import SAMPLE, load_and_embed
from prometheus_client import CollectorRegistry

from rollout.backends import SearchFailed
from rollout.cli import command_group
from rollout.relevance.probes import KnownItemProbes, Probe, ProbeMetrics, first_sentence, probe_for, probe_summary

cli = command_group()


def test_a_probe_is_made_from_the_document_itself():
    assert first_sentence("The pool opens at 6am. It closes at 10pm.") == "The pool opens at 6am."
    assert probe_for("d", "c", "Pool hours", "Opens at 6am. Closes late.", "title").query == "Pool hours"
    assert probe_for("d", "c", "Pool hours", "Opens at 6am. Closes late.", "first_sentence").query == "Opens at 6am."
    assert probe_for("d", "c", "Pool Hours", "x", "template").query == "information about pool hours"
    with pytest.raises(ValueError, match="unknown probe style"):
        probe_for("d", "c", "t", "x", "riddle")


def count(conn, table):
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_probes_with_zero_traffic_give_evidence_and_stay_out_of_user_metrics(runtime):
    load_and_embed(runtime)
    probe_registry = CollectorRegistry()  # the controller's, which serves the probes' series
    probes = KnownItemProbes(runtime.pool, runtime.backends, ProbeMetrics(probe_registry), per_category=2, k=3,
                             seed=7)
    sampled = probes.sample()
    categories = {cat for _, cat, _, _ in SAMPLE}
    assert {p.category for p in sampled} == categories
    assert all(sum(p.category == c for p in sampled) <= 2 for c in categories)
    results = probes.run(sampled)
    assert len(results) == 2 * len(sampled)
    with psycopg.connect(runtime.database_url) as conn:
        assert count(conn, "query_log") == 0
        stored = conn.execute("SELECT version, document_id, rank, k FROM relevance_probes "
                              "ORDER BY document_id, version").fetchall()
    expected = sorted((r.version, r.probe.document_id, r.rank, 3) for r in results)
    assert sorted(stored) == expected
    registry = runtime.metrics.registry
    assert (registry.get_sample_value("rag_requests_total", {"version": "v1", "outcome": "ok"}) or 0) == 0
    summary = probe_summary(runtime.pool, since_s=3600)
    for version in runtime.backends:
        mine = [r for r in results if r.version == version]
        hits = sum(r.rank is not None for r in mine)
        assert summary[version][""]["probes"] == len(mine) and summary[version][""]["hits"] == hits
        assert summary[version][""]["mrr"] == pytest.approx(sum(1 / r.rank for r in mine if r.rank) / len(mine))
        metric = probe_registry.get_sample_value("rag_relevance_probes_total",
                                                 {"version": version, "outcome": "hit"}) or 0
        assert metric == hits
        rr = probe_registry.get_sample_value("rag_relevance_probe_reciprocal_rank_sum", {"version": version})
        assert rr == pytest.approx(sum(1 / r.rank for r in mine if r.rank))
        assert probe_registry.get_sample_value("rag_relevance_probe_reciprocal_rank_count",
                                               {"version": version}) == len(mine)
        assert sum(summary[version][c]["probes"] for c in categories) == len(mine)


def test_a_version_that_cannot_answer_a_probe_is_recorded_as_an_error_not_a_miss(runtime):
    load_and_embed(runtime)

    class Broken:
        def search(self, text, k):
            raise SearchFailed("broken", "embedding", "provider down")

    backends = {"v1": runtime.backends["v1"], "broken": Broken()}
    probe = Probe("pool-hours", "facilities", "title", "Pool opening hours")
    results = KnownItemProbes(runtime.pool, backends, ProbeMetrics(CollectorRegistry()), k=3).run([probe])
    assert [(r.version, r.rank, r.error) for r in results] == [("v1", 1, None), ("broken", None, "embedding")]
    summary = probe_summary(runtime.pool, since_s=3600)
    assert summary["broken"][""] == {"probes": 0, "hits": 0, "errors": 1, "hit_rate": None, "mrr": None}
    assert summary["v1"][""]["hit_rate"] == 1.0


def test_rollout_probe_runs_one_round(runtime, tmp_path, monkeypatch):
    load_and_embed(runtime)
    monkeypatch.chdir(tmp_path)
    env = {"DATABASE_URL": runtime.database_url, "REDIS_URL": runtime.redis_url,
           "REDIS_KEY_PREFIX": runtime.settings.redis_key_prefix}
    result = CliRunner().invoke(cli, ["probe", "--per-category", "1", "--seed", "1", "--json"], env=env,
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert set(report["round"]) == set(runtime.backends)
    assert all(cell["probes"] == len({c for _, c, _, _ in SAMPLE}) for cell in report["round"].values())
    text = CliRunner().invoke(cli, ["probe", "--per-category", "1"], env=env, catch_exceptions=False)
    assert "known-item probes" in text.output and "hit@10" in text.output


def test_rollout_probe_on_an_empty_corpus_says_so(runtime, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"DATABASE_URL": runtime.database_url, "REDIS_URL": runtime.redis_url,
           "REDIS_KEY_PREFIX": runtime.settings.redis_key_prefix}
    result = CliRunner().invoke(cli, ["probe"], env=env)
    assert result.exit_code != 0 and "the corpus is empty" in result.output


def test_the_controller_runs_probe_rounds_as_the_leader_only(runtime, make_runtime):
    from rollout.controller.process import ControllerProcess

    load_and_embed(runtime)
    process = ControllerProcess(runtime, retention=False)
    try:
        assert process.scheduler.get_job("probes") is not None  # scheduled (the scheduler is not started here)

        def stored():
            with psycopg.connect(runtime.database_url) as conn:
                return count(conn, "relevance_probes")

        process._probe()
        assert stored() == 0  # not the leader: nothing probed
        assert process.leader.refresh()
        process._probe()
        assert stored() == len(SAMPLE) * len(runtime.backends)  # at most 5 a category: every sample document
    finally:
        process.leader.release()
    off = ControllerProcess(make_runtime(RELEVANCE_PROBE_INTERVAL_S="0"), retention=False)
    assert off.scheduler.get_job("probes") is None
