"""The golden set: ranking measures on a hand-computed qrels file, `rollout eval`, ROLLOUT_REQUIRE_EVAL."""

import json
import math

import psycopg
import pytest
from click.testing import CliRunner
from helpers import load_and_embed

from rollout.cli import command_group
from rollout.controller.state import Action, Command, TransitionError
from rollout.relevance.golden import (
    EvalStore,
    QrelsError,
    demo_qrels_path,
    evaluate,
    parse_qrels,
    read_qrels,
)
from rollout.relevance.ranking import bootstrap_interval, ndcg, recall, reciprocal_rank
from rollout.relevance.versions import baseline_and_candidate

cli = command_group()

# Two queries, graded by hand. Query 1: relevant a (1) and c (2).
#   baseline ranks a, b, c: DCG = (2^1-1)/log2(2) + (2^2-1)/log2(4) = 1 + 1.5 = 2.5
#                           ideal c, a: 3/log2(2) + 1/log2(3) = 3.6309297535714575 -> nDCG 0.6885288809404666
#   candidate ranks c, a, b: the ideal order -> nDCG 1.0
# Query 2: relevant y (3).
#   baseline ranks x, y: DCG = 7/log2(3), ideal 7 -> nDCG 1/log2(3) = 0.6309297535714575, RR 0.5
#   candidate ranks y, x: nDCG 1.0, RR 1.0
TINY = "\n".join([
    json.dumps({"query": "one", "relevant": {"a": 1, "c": 2}, "category": "first"}),
    "",
    json.dumps({"query": "two", "relevant": {"y": 3, "z": 0}, "category": "second"}),
])
BASELINE_LISTS = {"one": ["a", "b", "c"], "two": ["x", "y"]}
CANDIDATE_LISTS = {"one": ["c", "a", "b"], "two": ["y", "x"]}


def lists(table):
    return lambda text, depth: table[text][:depth]


def test_measures_on_a_hand_computed_list():
    relevant = {"a": 1, "c": 2}
    assert ndcg(["a", "b", "c"], relevant) == pytest.approx(0.6885288809404666, abs=1e-12)
    assert ndcg(["c", "a", "b"], relevant) == 1.0
    assert ndcg(["x", "y"], {"y": 3, "z": 0}) == pytest.approx(0.6309297535714575, abs=1e-12)
    assert ndcg(["b"], {"b": 0}) == 0.0  # nothing relevant: no gain possible
    assert recall(["a", "b", "c"], relevant, 2) == 0.5
    assert recall(["a", "b", "c"], relevant, 3) == 1.0
    assert reciprocal_rank(["x", "y"], {"y": 3}) == 0.5
    assert reciprocal_rank(["x"], {"y": 3}) == 0.0


def test_eval_of_the_tiny_set_gives_the_hand_computed_means():
    queries = parse_qrels(TINY)
    report = evaluate(queries, ("base", lists(BASELINE_LISTS)), ("cand", lists(CANDIDATE_LISTS)), k=2, margin=0.02)
    base, cand = report.versions["base"], report.versions["cand"]
    assert base["ndcg@10"].mean == pytest.approx((0.6885288809404666 + 0.6309297535714575) / 2, abs=1e-12)
    assert cand["ndcg@10"].mean == 1.0
    assert base["mrr"].mean == 0.75 and cand["mrr"].mean == 1.0
    assert base["recall@2"].mean == 0.75  # query 1: a of {a, c}; query 2: y of {y}
    assert cand["recall@2"].mean == 1.0
    diff = report.difference["ndcg@10"]
    assert diff.mean == pytest.approx(1 - (0.6885288809404666 + 0.6309297535714575) / 2, abs=1e-12)
    # paired: the interval resamples the two per-query differences, so it spans exactly their range
    assert diff.low == pytest.approx(1 - 0.6885288809404666) and diff.high == pytest.approx(1 - 0.6309297535714575)
    assert report.passed
    assert report.categories == {"first": {"base": pytest.approx(0.6885288809404666), "cand": 1.0},
                                 "second": {"base": pytest.approx(0.6309297535714575), "cand": 1.0}}
    swapped = evaluate(queries, ("cand", lists(CANDIDATE_LISTS)), ("base", lists(BASELINE_LISTS)), margin=0.02)
    assert not swapped.passed  # the worse list as candidate is not non-inferior


def test_bootstrap_interval_of_a_constant_is_that_constant():
    assert bootstrap_interval([0.25] * 7) == (0.25, 0.25)
    assert all(math.isnan(x) for x in bootstrap_interval([]))


@pytest.mark.parametrize("line, message", [
    ("not json", "qrels:1: not JSON"),
    ('{"relevant": {"a": 1}}', 'qrels:1: expected {"query"'),
    ('{"query": "q", "relevant": {}}', "relevant must be a non-empty object"),
    ('{"query": "q", "relevant": {"a": 4}}', "grade of 'a' must be an integer 0-3"),
    ('{"query": "q", "relevant": {"a": true}}', "grade of 'a' must be an integer 0-3"),
    ("", "qrels: no queries"),
])
def test_a_bad_qrels_line_is_named(line, message):
    with pytest.raises(QrelsError, match=message.replace("{", r"\{").replace("(", r"\(")):
        parse_qrels(line)


def test_the_demo_set_is_labelled_against_the_demo_corpus():
    from rollout.demo import corpus_path

    ids = {json.loads(line)["id"] for line in corpus_path().read_text().splitlines() if line.strip()}
    queries, _ = read_qrels(demo_qrels_path())
    assert len(queries) >= 30
    assert all(doc in ids for q in queries for doc in q.relevant)
    assert all(max(q.relevant.values()) == 3 for q in queries)  # each query has an answer


def test_rollout_eval_runs_both_versions_and_records_the_result(run, runtime, tmp_path):
    load_and_embed(runtime)
    qrels = tmp_path / "set.jsonl"
    qrels.write_text("\n".join(json.dumps(row) for row in [
        {"query": "Pool opening hours", "relevant": {"pool-hours": 3}, "category": "facilities"},
        {"query": "Day pass price", "relevant": {"day-pass": 3, "refund-policy": 1}, "category": "pricing"},
        {"query": "Jazz night on the roof", "relevant": {"jazz-night": 3}},
    ]))
    result = run("eval", "--qrels", str(qrels), "--k", "3", "--json", "--draws", "200")
    report = json.loads(result.output)
    baseline, candidate = baseline_and_candidate(runtime.router.roles)
    assert (report["baseline"], report["candidate"], report["queries"]) == (baseline, candidate, 3)
    for version in (baseline, candidate):
        assert set(report["versions"][version]) == {"recall@3", "ndcg@10", "mrr"}
        assert 0 <= report["versions"][version]["ndcg@10"]["low"] <= report["versions"][version]["ndcg@10"]["high"] <= 1
    assert result.exit_code == (0 if report["passed"] else 1)
    assert len(report["per_query"]) == 3 and report["per_query"][0][baseline]["ranked"]
    with psycopg.connect(runtime.database_url) as conn:
        row = conn.execute("SELECT id, baseline, candidate, queries, passed FROM relevance_evals").fetchone()
    assert row == (report["recorded_id"], baseline, candidate, 3, report["passed"])

    text = run("eval", "--qrels", str(qrels), "--no-record", "--draws", "200")
    assert "3 labelled queries" in text.output and f"{candidate} (candidate)" in text.output
    assert ("PASS: " in text.output) == report["passed"] and "recorded as eval" not in text.output


def test_rollout_eval_names_a_bad_file_and_loses_nothing(run, runtime, tmp_path):
    qrels = tmp_path / "bad.jsonl"
    qrels.write_text('{"query": "q", "relevant": {"a": 1}}\n{"query": "r", "relevant": {"a": 9}}\n')
    result = CliRunner().invoke(cli, ["eval", "--qrels", str(qrels)], env={
        "DATABASE_URL": runtime.database_url, "REDIS_URL": runtime.redis_url})
    assert result.exit_code != 0
    assert f"error: {qrels}:2: the grade of 'a' must be an integer 0-3, not 9" in result.output
    assert "Traceback" not in result.output
    missing = CliRunner().invoke(cli, ["eval", "--qrels", str(tmp_path / "none.jsonl")])
    assert missing.exit_code != 0 and "cannot read" in missing.output


def test_required_eval_holds_the_first_stage_until_one_passes(make_runtime):
    runtime = make_runtime(ROLLOUT_REQUIRE_EVAL="true")
    advance = Command(Action.ADVANCE, actor="test")
    with pytest.raises(TransitionError, match="no `rollout eval`"):
        runtime.stages.command(advance)
    assert runtime.stages.status()["percentage"] == 0
    baseline, candidate = baseline_and_candidate(runtime.router.roles)
    queries = parse_qrels(TINY)
    store = EvalStore(runtime.pool)
    worse = evaluate(queries, (baseline, lists(CANDIDATE_LISTS)), (candidate, lists(BASELINE_LISTS)), draws=200)
    store.record(worse, "sha")
    with pytest.raises(TransitionError, match="failed"):
        runtime.stages.command(advance)
    better = evaluate(queries, (baseline, lists(BASELINE_LISTS)), (candidate, lists(CANDIDATE_LISTS)), draws=200)
    store.record(better, "sha")
    runtime.stages.command(advance)
    assert runtime.stages.status()["percentage"] > 0


def test_without_the_requirement_the_first_stage_needs_no_eval(runtime):
    runtime.stages.command(Command(Action.ADVANCE, actor="test"))
    assert runtime.stages.status()["percentage"] > 0


def test_the_latest_eval_of_the_pair_sets_the_golden_gauge(runtime):
    from prometheus_client import CollectorRegistry, Gauge

    from rollout.relevance.golden import GoldenGauge

    baseline, candidate = baseline_and_candidate(runtime.router.roles)
    registry = CollectorRegistry()
    gauge = Gauge("rag_relevance_golden_ndcg", "test", ["version"], registry=registry)
    golden = GoldenGauge(EvalStore(runtime.pool), gauge, lambda: (baseline, candidate))
    golden.refresh()  # no eval yet: nothing to show
    assert registry.get_sample_value("rag_relevance_golden_ndcg", {"version": baseline}) is None
    queries = parse_qrels('{"query": "q", "relevant": {"a": 3}}')
    EvalStore(runtime.pool).record(evaluate(queries, (baseline, lambda q, k: ["b", "a"]),
                                            (candidate, lambda q, k: ["a"]), draws=100), "sha")
    golden.refresh()
    assert registry.get_sample_value("rag_relevance_golden_ndcg", {"version": candidate}) == pytest.approx(1.0)
    assert registry.get_sample_value("rag_relevance_golden_ndcg", {"version": baseline}) == pytest.approx(
        1 / math.log2(3), abs=1e-6)  # the relevant document second
def test_required_eval_holds_a_start_until_that_pair_passed(make_runtime):
    """`rollout stage start` names a new pair: the eval that counts is of that pair, and a refused start
    leaves the registry as it was."""
    from rollout.versions import VersionRegistry, all_versions, roles_of

    runtime = make_runtime(ROLLOUT_REQUIRE_EVAL="true")
    registry = VersionRegistry(runtime.settings.database_url)
    registry.add("v3", "local", 16)
    baseline, candidate = baseline_and_candidate(runtime.router.roles)
    queries = parse_qrels(TINY)
    store = EvalStore(runtime.pool)
    store.record(evaluate(queries, (baseline, lists(BASELINE_LISTS)), (candidate, lists(CANDIDATE_LISTS)),
                          draws=200), "sha")  # the old pair passed; the new one has no eval
    with pytest.raises(TransitionError, match="no `rollout eval` of v3 against"):
        runtime.stages.start(baseline, "v3", actor="test")
    with runtime.pool.connection() as conn:
        assert roles_of(all_versions(conn)) == (baseline, candidate)  # nothing changed
    assert runtime.stages.status()["percentage"] == 0
    store.record(evaluate(queries, (baseline, lists(BASELINE_LISTS)), ("v3", lists(CANDIDATE_LISTS)), draws=200),
                 "sha")
    runtime.stages.start(baseline, "v3", actor="test")
    assert runtime.stages.status()["percentage"] > 0
