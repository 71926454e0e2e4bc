"""`rollout monitor`, `rollout compare`, `rollout baseline`: output and exit codes."""

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from analytics_rows import NOW, insert, record
from helpers import load_and_embed

from rollout.comparison import compare
from rollout.demo import queries_path


@pytest.fixture
def run(run):
    """The shared `run`, judging on five samples."""
    invoke = lambda *args: run(*args, CRITERIA_MIN_SAMPLES="5")  # noqa: E731
    invoke.env = {**run.env, "CRITERIA_MIN_SAMPLES": "5"}
    return invoke


@pytest.fixture
def logged(runtime):
    insert(runtime.pool, [record(latency_ms=float(20 + n), top_similarity=0.8) for n in range(10)]
           + [record(routed_version="v2", served_version="v2", latency_ms=float(10 + n), top_similarity=0.75,
                     logged_at=NOW - timedelta(minutes=n)) for n in range(8)])


def test_monitor_prints_v1_beside_v2_and_the_criteria(run, logged, client):
    result = run("monitor", "--range", "1h")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "v1 vs v2, last 1h" in out and "18 queries" in out
    requests_line = next(line for line in out.splitlines() if line.startswith("requests"))
    assert requests_line.split() == ["requests", "10", "8"]
    p50_line = next(line for line in out.splitlines() if line.startswith("latency p50"))
    assert p50_line.split()[-2:] == ["24.5", "13.5"]  # medians of 20..29 and 10..17
    assert "success criteria" in out and "v2 p95 ≤ v1 p95 and < 800 ms" in out
    assert "PASS" in out


def test_monitor_json_is_the_dashboard_api(run, logged, client):
    result = run("monitor", "--range", "1h", "--json")
    assert result.exit_code == 0
    from_cli = json.loads(result.output)
    from_api = client.get("/api/monitoring/dashboard?range=1h").get_json()
    assert from_cli["versions"] == from_api["versions"]
    assert [c["value"] for c in from_cli["criteria"]] == [c["value"] for c in from_api["criteria"]]


def test_monitor_continuous_refreshes_count_times(run, logged):
    result = run("monitor", "--range", "1h", "--continuous", "--interval", "1", "--count", "2")
    assert result.exit_code == 0
    assert result.output.count("v1 vs v2, last 1h") == 2 and "next refresh in 1 s" in result.output


def test_monitor_stops_cleanly_on_ctrl_c(run, logged, tmp_path):
    env = {**os.environ, **run.env, "PYTHONPATH": os.pathsep.join(sys.path)}
    # Ctrl-C must reach the child as KeyboardInterrupt even when this run ignores SIGINT (nohup, `cmd &`):
    # an ignored signal is inherited across exec, so the child installs Python's handler itself.
    child = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
             "sys.argv[0] = 'rollout'; runpy.run_module('rollout.cli', run_name='__main__', alter_sys=True)")
    process = subprocess.Popen([sys.executable, "-c", child, "monitor", "--range", "1h", "--continuous",
                                "--interval", "60"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()  # the table's first line: it is waiting for the next refresh
        assert first.startswith("v1 vs v2, last 1h")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0
    assert "stopped" in err and "Traceback" not in err


def test_monitor_refuses_an_unknown_range(run):
    result = run("monitor", "--range", "2h")
    assert result.exit_code == 2 and "'2h' is not one of '15m', '1h', '6h', '24h', '7d'" in result.output


def test_compare_runs_the_demo_queries_against_both_versions(run, runtime):
    load_and_embed(runtime)
    result = run("compare", "--k", "5", "--json", "--show", "3")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    queries = [q for q in queries_path().read_text().splitlines() if q.strip()]
    assert report["queries"] == len(queries) == report["compared"] and report["k"] == 5
    assert report["versions"]["v1"]["errors"] == report["versions"]["v2"]["errors"] == 0
    assert report["versions"]["v1"]["latency_ms"]["count"] == len(queries)
    first = report["queries_detail"][0]
    expected = compare(runtime.backends["v1"].search(first["query"], 5).ids,
                       runtime.backends["v2"].search(first["query"], 5).ids, 5)
    assert first["comparison"]["overlap"] == pytest.approx(expected.overlap, abs=1e-6)
    assert first["comparison"]["rbo"] == pytest.approx(expected.rbo, abs=1e-6)
    rbos = [d["comparison"]["rbo"] for d in report["disagreements"]]
    assert len(rbos) == 3 and rbos == sorted(rbos)
    assert rbos[0] == min(d["comparison"]["rbo"] for d in report["queries_detail"])


def test_compare_prints_distributions_and_the_worst_queries(run, runtime, tmp_path):
    load_and_embed(runtime)
    queries = tmp_path / "queries.txt"
    queries.write_text("# pool and parking\nWhen does the pool open?\n\nHow much is parking?\nRooftop jazz\n")
    result = run("compare", "--queries", str(queries), "--k", "3", "--show", "2")
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("3 queries, k=3, both versions searched directly (3 answered by both)")
    assert "latency p95 (ms)" in out and "top similarity mean" in out and "rank-biased overlap" in out
    assert "the 2 queries where v1 and v2 disagree most:" in out
    assert out.count("      v1: ") == 2 and out.count("      v2: ") == 2


def test_compare_refuses_a_missing_or_empty_query_file(run, tmp_path):
    missing = run("compare", "--queries", str(tmp_path / "nope.txt"))
    assert missing.exit_code == 2 and "does not exist" in missing.output
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    result = run("compare", "--queries", str(empty))
    assert result.exit_code == 1 and "holds no queries" in result.output


def test_compare_says_when_there_is_nothing_to_compare(run):
    result = run("compare", "--k", "3")
    assert result.exit_code == 1 and "neither version returned any result" in result.output


def test_baseline_stores_v1_and_compares_later(run, runtime, logged):
    none_yet = run("baseline", "--compare")
    assert none_yet.exit_code == 1 and "no baseline is stored yet" in none_yet.output
    stored = run("baseline", "--range", "1h", "--note", "before stage 2")
    assert stored.exit_code == 0, stored.output
    assert stored.output.startswith("stored baseline #1 of v1 (1h, 10 queries): p50 24.5 ms")
    assert runtime.figures.latest_baseline().note == "before stage 2"
    compared = run("baseline", "--compare", "--range", "1h")
    assert compared.exit_code == 0, compared.output
    assert "stored baseline" in compared.output and "v2 / stored" in compared.output
    assert "before stage 2" in compared.output
    p50 = next(line for line in compared.output.splitlines() if line.startswith("latency p50"))
    assert p50.split()[-4:] == ["24.5", "24.5", "13.5", f"{13.5 / 24.5:.2f}x"]
    as_json = json.loads(run("baseline", "--compare", "--range", "1h", "--json").output)
    assert as_json["baseline"]["figures"]["p50_ms"] == 24.5 and as_json["current"]["v2"]["requests"] == 8


def test_baseline_needs_v1_traffic(run):
    result = run("baseline")
    assert result.exit_code == 1
    assert "holds no query of the baseline version over the last 24h" in result.output
    assert "FF_ENABLE_QUERY_ANALYTICS" in result.output
