"""Relevance evidence where people look: the dashboard API, `rollout monitor`, `rollout compare --judge`."""

import json

import pytest
from helpers import load_and_embed, settings_for

from rollout.relevance.versions import baseline_and_candidate


@pytest.fixture
def settings(services, clean_db):
    """A deployment with a judge configured: only configured sources take part in the gate."""
    return settings_for(services, RELEVANCE_JUDGE="lexical")


@pytest.fixture
def judged(runtime):
    baseline, candidate = baseline_and_candidate(runtime.router.roles)
    with runtime.pool.connection() as conn, conn.cursor() as cursor:  # enough for the sequence to decide
        cursor.executemany("INSERT INTO relevance_judgements (pair_hash, baseline, candidate, judge, winner) "
                           "VALUES (%s, %s, %s, 'lexical-overlap', %s)",
                           [(f"h{n}", baseline, candidate, winner)
                            for n, winner in enumerate(["candidate"] * 250 + ["baseline"] * 100 + ["tie"] * 50)])
    return baseline, candidate


def test_the_dashboard_shows_each_source_and_the_gate(client, judged):
    baseline, candidate = judged
    body = client.get("/api/monitoring/dashboard?range=1h").get_json()
    relevance = body["relevance"]
    assert (relevance["baseline"], relevance["candidate"]) == (baseline, candidate)
    assert relevance["sources"] == {"judge": {"wins": 250, "losses": 100, "ties": 50, "candidate_win_rate": 0.6875}}
    assert relevance["gate"]["status"] == "passed" and relevance["gate"]["decided_by"] == ["judge"]
    assert relevance["gate"]["statistic"] == pytest.approx(0.6875 - 0.5) and relevance["gate"]["limit"] == -0.05


def test_monitor_prints_the_relevance_lines_and_json(run, judged, client, monkeypatch):
    baseline, candidate = judged
    monkeypatch.setenv("RELEVANCE_JUDGE", "lexical")  # the command's deployment has the judge too
    text = run("monitor", "--range", "1h")
    assert text.exit_code == 0, text.output
    assert f"relevance, {candidate} (candidate) against {baseline} (baseline):" in text.output
    assert f"judge     {candidate} wins 250, loses 100, ties 50: win rate 68.8 %" in text.output
    assert "gate      passed (decided by judge)" in text.output
    as_json = json.loads(run("monitor", "--range", "1h", "--json").output)
    api = client.get("/api/monitoring/dashboard?range=1h").get_json()
    assert as_json["relevance"]["sources"] == api["relevance"]["sources"]


def test_monitor_without_evidence_says_so(run):
    text = run("monitor", "--range", "1h")
    assert "no relevance evidence in this window" in text.output and "gate      not_enough_data" in text.output


def test_compare_shows_both_lists_and_the_judges_verdict(run, runtime, tmp_path):
    load_and_embed(runtime)
    queries = tmp_path / "q.txt"
    queries.write_text("pool opening hours\nparking rates per day\njazz on the roof\nrefund within days\n")
    result = run("compare", "--queries", str(queries), "--k", "3", "--judge", "lexical", "--show", "4")
    assert result.exit_code == 0, result.output
    assert "judge (lexical-overlap, order swapped): " in result.output
    said = [line.rsplit(": ", 1)[1] for line in result.output.splitlines() if "order swapped" in line]
    assert said and set(said) <= {"baseline", "candidate", "tie"}
    data = json.loads(run("compare", "--queries", str(queries), "--k", "3", "--judge", "lexical", "--json").output)
    assert all(d["judge"] == "lexical-overlap" and d["verdict"] in ("baseline", "candidate", "tie")
               for d in data["disagreements"])
    unjudged = run("compare", "--queries", str(queries), "--k", "3")
    assert "order swapped" not in unjudged.output


def test_abstain_rates_per_version_are_shown(client, runtime, run):
    from analytics_rows import insert, record

    baseline, candidate = baseline_and_candidate(runtime.router.roles)
    insert(runtime.pool, [record(request_id=f"a{n}", routed_version=baseline, served_version=baseline,
                                 result_count=0 if n < 3 else 5) for n in range(20)]
           + [record(request_id=f"b{n}", routed_version=candidate, served_version=candidate,
                     result_count=0 if n < 1 else 5) for n in range(10)])
    rates = client.get("/api/monitoring/dashboard?range=1h").get_json()["relevance"]["abstain_rate"]
    assert rates == {baseline: {"empty": 3, "answered": 20, "rate": 0.15},
                     candidate: {"empty": 1, "answered": 10, "rate": 0.1}}
    assert (f"abstain   {baseline} 15.0 % (3 of 20), {candidate} 10.0 % (1 of 10) returned nothing"
            in run("monitor", "--range", "1h").output)
