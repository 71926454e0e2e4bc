"""Metric sources against real servers: Prometheus (backfilled with promtool), the embedded PostgreSQL,
an HTTP JSON loopback server, and query_log. Each failure mode is "no data" with its reason."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from analytics_rows import insert, record
from prometheus_server import PrometheusServer
from stats_server import StatsServer

from rollout.controller import Evidence, GateStatus, Outcome, RolloutPlan, VersionEvidence, judge
from rollout.controller.gates.metric import MetricGate, judge_metric, metric_gate
from rollout.controller.sources import MetricQuery, Reading, SourceContext, Window, build, fetch
from rollout.controller.sources.http_json import HttpJsonConfig
from rollout.controller.sources.prometheus import PrometheusConfig
from rollout.controller.sources.query_log import QueryLogConfig
from rollout.controller.sources.sql import SqlConfig
from rollout.controller.thresholds import Thresholds
from rollout.services.ports import free_port

END = (int(time.time()) // 60) * 60 - 2 * 3600   # backfilled data: the hour before END (two hours ago)
START = END - 3600
WINDOW = Window("v1", "v2", START, END)
NO_DB = SourceContext(database_url="")
ERRORS = MetricQuery('sum(increase(rag_requests_total{version="{version}", outcome="error"}[{window}]))',
                     'sum(increase(rag_requests_total{version="{version}"}[{window}]))')


def openmetrics() -> str:
    """Per minute: both versions answer 100 queries; v2 also fails 5 (4.8 %). A p95 gauge per version."""
    lines = ["# TYPE rag_requests counter"]
    per_minute = {("v1", "ok"): 100, ("v1", "error"): 0, ("v2", "ok"): 100, ("v2", "error"): 5}
    for (version, outcome), rate in per_minute.items():
        lines += [f'rag_requests_total{{version="{version}",outcome="{outcome}"}} {rate * k} {START + 60 * k}'
                  for k in range(61)]
    lines.append("# TYPE rag_p95_seconds gauge")
    for version, p95 in (("v1", 0.31), ("v2", 0.92)):
        lines += [f'rag_p95_seconds{{version="{version}"}} {p95} {START + 60 * k}' for k in range(61)]
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory) -> Iterator[PrometheusServer]:
    with PrometheusServer(tmp_path_factory.mktemp("prometheus"), openmetrics()) as server:
        yield server


def prom(url: str, timeout: float = 5.0):
    return build(PrometheusConfig(type="prometheus", url=url, timeout=timeout), NO_DB)


def gate(**fields) -> MetricGate:
    spec = {"name": "custom", "role": "guardrail", "source": "src", "query": "q", "comparison": "below",
            "threshold": 0.01, **fields}
    return MetricGate(**spec)


def evidence(readings: dict[str, Reading]) -> Evidence:
    return Evidence(percentage=50, window_started_at=START, evaluated_at=END, v1=VersionEvidence(),
                    v2=VersionEvidence(), readings=readings)


# -- Prometheus -----------------------------------------------------------------------------------

def test_prometheus_counts_per_version_roll_a_failing_candidate_back(prometheus):
    reading = fetch("prom", prom(prometheus.url), ERRORS, WINDOW)
    assert reading.missing is None, reading.missing
    baseline, candidate = reading.measurements["baseline"], reading.measurements["candidate"]
    assert baseline.events == 0 and 5900 <= baseline.trials <= 6200
    assert 295 <= candidate.events <= 310 and 6200 <= candidate.trials <= 6500
    spec = gate(name="gateway_errors", source="prom", query=ERRORS.query, total=ERRORS.total)
    verdict = judge(evidence({"gateway_errors": reading}), RolloutPlan(), (metric_gate(spec),))
    result = verdict.gate("gateway_errors")
    assert verdict.outcome is Outcome.ROLLBACK and result.status is GateStatus.FAILED
    assert "candidate rate 0.04" in result.reason and "is above 0.01" in result.reason
    assert result.bound >= 0.01 and result.thresholds["alpha"] == RolloutPlan().thresholds.rollback_alpha


def test_prometheus_value_is_a_plain_comparison_and_says_so(prometheus):
    query = MetricQuery('max(rag_p95_seconds{version="{version}"})')
    reading = fetch("prom", prom(prometheus.url), query, WINDOW)
    assert reading.measurements["candidate"].value == pytest.approx(0.92)
    assert reading.measurements["baseline"].value == pytest.approx(0.31)
    failed = judge_metric(gate(query=query.query, threshold=0.8), reading, Thresholds(), 0.01)
    assert failed.status is GateStatus.FAILED
    assert "plain threshold comparison: the source gives a value, not counts" in failed.reason
    passed = judge_metric(gate(query=query.query, threshold=1.0), reading, Thresholds(), 0.01)
    assert passed.status is GateStatus.PASSED and "0.92, below 1" in passed.reason


@pytest.mark.parametrize("query, reason", [
    ('sum(rag_nothing_total{version="{version}"})', "Prometheus returned no series for the candidate v2"),
    ('sum(rate(rag_requests_total{version="{version}"}[', "Prometheus refused the query (bad_data): "),
    ('rag_requests_total{version="{version}"}', "the query returned 2 series for v2; a gate needs one"),
    ('sum(rag_requests_total{version="{version}"}) / 0 * 0', "is nan"),
])
def test_prometheus_without_an_answer_is_no_data_with_its_reason(prometheus, query, reason):
    reading = fetch("prom", prom(prometheus.url), MetricQuery(query), WINDOW)
    assert reading.missing is not None and reason in reading.missing, reading.missing
    held = judge_metric(gate(query=query), reading, Thresholds(), 0.01)
    assert held.status is GateStatus.NOT_ENOUGH_DATA and held.outcome is Outcome.HOLD
    assert held.reason.startswith("no data from src: ") and reason in held.reason


def test_prometheus_down_is_no_data_and_each_no_data_meaning_is_applied():
    reading = fetch("prom", prom(f"http://127.0.0.1:{free_port()}", timeout=2), ERRORS, WINDOW)
    assert reading.missing.startswith("http://127.0.0.1:") and "is unreachable" in reading.missing
    hold = judge_metric(gate(), reading, Thresholds(), 0.01)
    warn = judge_metric(gate(no_data="pass"), reading, Thresholds(), 0.01)
    fail = judge_metric(gate(no_data="fail"), reading, Thresholds(), 0.01)
    assert (hold.status, warn.status, fail.status) == (GateStatus.NOT_ENOUGH_DATA, GateStatus.WARNING,
                                                       GateStatus.FAILED)
    assert "passes as the plan says" in warn.reason and "counted as a failure" in fail.reason
    verdict = judge(evidence({"custom": reading}), RolloutPlan(), (metric_gate(gate(no_data="pass")),))
    assert verdict.outcome is Outcome.ADVANCE and "warning: custom: no data from src" in verdict.reason


# -- SQL on the embedded PostgreSQL ---------------------------------------------------------------

@pytest.fixture
def stats_db(fresh_database) -> str:
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE version_stats (version text PRIMARY KEY, errors int, requests int, p95 real)")
        conn.execute("INSERT INTO version_stats VALUES ('v1', 1, 1000, 0.30), ('v2', 30, 1000, 0.95)")
    return fresh_database


def sql(dsn: str, timeout: float = 5.0, **fields):
    return build(SqlConfig(type="sql", statement_timeout=timeout, **fields), SourceContext(database_url=dsn))


def test_sql_counts_and_values_per_version(stats_db):
    counts = fetch("db", sql(stats_db), MetricQuery(
        "SELECT version, errors, requests FROM version_stats WHERE version IN (%(baseline)s, %(candidate)s)"), WINDOW)
    assert counts.missing is None
    assert counts.measurements["candidate"].to_dict() == {"events": 30, "trials": 1000}
    assert counts.measurements["baseline"].to_dict() == {"events": 1, "trials": 1000}
    assert judge_metric(gate(), counts, Thresholds(), 0.01).status is GateStatus.FAILED
    assert judge_metric(gate(threshold=0.2), counts, Thresholds(), 0.01).status is GateStatus.PASSED
    values = fetch("db", sql(stats_db), MetricQuery("SELECT version, p95 FROM version_stats"), WINDOW)
    assert values.measurements["candidate"].value == pytest.approx(0.95)
    window = fetch("db", sql(stats_db), MetricQuery("SELECT %(candidate)s, %(window_s)s::float "
                                                    "WHERE %(until)s - %(since)s = interval '1 hour'"), WINDOW)
    assert window.measurements["candidate"].value == 3600.0


@pytest.mark.parametrize("query, reason", [
    ("SELECT version, p95 FROM version_stats WHERE version = %(baseline)s",
     "the SQL query returned no row for the candidate v2"),
    ("INSERT INTO version_stats VALUES (%(candidate)s, 0, 1, 0.1) RETURNING version, errors, requests",
     "read-only transaction"),
    ("SELECT %(candidate)s, 1 FROM pg_sleep(3)", "the SQL query ran past its statement timeout (0.3 s)"),
    ("SELECT version, nope FROM version_stats", 'column "nope" does not exist'),
    ("SELECT version FROM version_stats", "rows of 1 columns; expected (version, value) or (version, events, trials)"),
])
def test_sql_without_an_answer_is_no_data_and_never_writes(stats_db, query, reason):
    reading = fetch("db", sql(stats_db, timeout=0.3), MetricQuery(query), WINDOW)
    assert reading.missing is not None and reason in reading.missing, reading.missing
    with psycopg.connect(stats_db) as conn:
        assert conn.execute("SELECT count(*) FROM version_stats").fetchone()[0] == 2


def test_sql_reads_another_database_from_the_variable_it_names(stats_db, monkeypatch):
    name = f"STATS_URL_{uuid.uuid4().hex[:6].upper()}"
    unset = fetch("db", sql("", dsn_env=name), MetricQuery("SELECT 'v2', 1"), WINDOW)
    assert unset.missing == f"the SQL source reads its database URL from {name}, which is unset here"
    monkeypatch.setenv(name, stats_db)
    reading = fetch("db", sql("", dsn_env=name), MetricQuery("SELECT version, p95 FROM version_stats"), WINDOW)
    assert reading.measurements["candidate"].value == pytest.approx(0.95)
    monkeypatch.setenv(name, f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    down = fetch("db", sql("", timeout=1, dsn_env=name), MetricQuery("SELECT 'v2', 1"), WINDOW)
    assert down.missing.startswith("the SQL source's database is unreachable")


# -- HTTP JSON --------------------------------------------------------------------------------------

def http(url: str, timeout: float = 5.0, auth: dict | None = None):
    return build(HttpJsonConfig(type="http_json", url=url, timeout=timeout, auth=auth), NO_DB)


def test_http_json_counts_values_and_templating():
    with StatsServer() as server:
        source = http(server.url + "/stats/{version}?since={since}&window={window}")
        counts = fetch("api", source, MetricQuery("stats.errors", "stats.requests"), WINDOW)
        assert counts.measurements["candidate"].to_dict() == {"events": 40, "trials": 800}
        assert counts.measurements["baseline"].to_dict() == {"events": 2, "trials": 800}
        assert f"/stats/v2?since={START}&window=3600" in server.paths
        value = fetch("api", source, MetricQuery("p95.1"), WINDOW)
        assert value.measurements["candidate"].value == 0.7
        assert judge_metric(gate(query="p95.1", threshold=0.5), value, Thresholds(), 0.01).status is GateStatus.FAILED


@pytest.mark.parametrize("url, query, timeout, reason", [
    ("/stats/{version}", "stats.nope", 5, "the answer has no stats.nope (candidate v2)"),
    ("/stats/{version}", "p95.7", 5, "the answer has no p95.7"),
    ("/stats/{version}", "stats", 5, "stats is not a number"),
    ("/broken/{version}", "stats.errors", 5, "HTTP 500 from http://127.0.0.1:"),
    ("/slow/{version}", "stats.errors", 0.3, "did not answer within 0.3 s"),
])
def test_http_json_without_an_answer_is_no_data(url, query, timeout, reason):
    with StatsServer() as server:
        reading = fetch("api", http(server.url + url, timeout), MetricQuery(query), WINDOW)
    assert reading.missing is not None and reason in reading.missing, reading.missing


def test_http_sources_send_credentials_read_from_files(tmp_path):
    token, password = tmp_path / "token", tmp_path / "password"
    token.write_text("s3cret-token\n")
    password.write_text("hunter2\n")
    with StatsServer() as server:
        server.authorization = "Bearer s3cret-token"
        url = server.url + "/stats/{version}"
        refused = fetch("api", http(url), MetricQuery("stats.errors", "stats.requests"), WINDOW)
        assert "HTTP 401 from http://127.0.0.1:" in refused.missing
        allowed = fetch("api", http(url, auth={"bearer_token_file": str(token)}), MetricQuery("stats.errors"), WINDOW)
        assert allowed.measurements["candidate"].value == 40
        token.write_text("rotated")  # read at each request: a rotated token is used at once
        server.authorization = "Bearer rotated"
        assert fetch("api", http(url, auth={"bearer_token_file": str(token)}), MetricQuery("stats.errors"),
                     WINDOW).missing is None
        prometheus = build(PrometheusConfig(type="prometheus", url=server.url, timeout=2,
                                            auth={"username": "rollout", "password_file": str(password)}), NO_DB)
        fetch("prom", prometheus, ERRORS, WINDOW)
        assert server.authorizations[-1] == "Basic cm9sbG91dDpodW50ZXIy"  # base64 of rollout:hunter2
    missing = fetch("api", http(url, auth={"bearer_token_file": str(tmp_path / "none")}), MetricQuery("a"), WINDOW)
    assert missing.missing.startswith(f"cannot read the credentials file {tmp_path / 'none'}")


@pytest.mark.parametrize("auth, message", [
    ({"bearer_token_file": "t", "username": "u", "password_file": "p"}, "not both"),
    ({"username": "u"}, "needs both username and password_file"),
    ({}, "give bearer_token_file, or username and password_file"),
    ({"token": "inline"}, "Extra inputs are not permitted"),
])
def test_http_credentials_are_files_and_one_scheme(auth, message):
    with pytest.raises(ValueError, match=message):
        HttpJsonConfig(type="http_json", url="http://127.0.0.1:1/x", auth=auth)


def test_http_json_down_is_no_data():
    reading = fetch("api", http(f"http://127.0.0.1:{free_port()}/{{version}}", 2), MetricQuery("a"), WINDOW)
    assert "is unreachable" in reading.missing


# -- query_log -------------------------------------------------------------------------------------

def test_query_log_measures_count_what_the_gates_count(runtime):
    at = datetime.fromtimestamp(START + 10, UTC)
    rows = [record(logged_at=at, routed_version="v1", served_version="v1") for _ in range(40)]
    rows += [record(logged_at=at, routed_version="v2", served_version=None if i < 4 else "v2",
                    error_kind="database" if i < 4 else None) for i in range(40)]
    rows += [record(logged_at=at, routed_version="v2", served_version="v2", reason="forced")]  # not judged
    insert(runtime.pool, rows)
    source = build(QueryLogConfig(), SourceContext(runtime.database_url, runtime.pool))
    errors = fetch("query_log", source, MetricQuery("errors"), WINDOW)
    assert errors.measurements["candidate"].to_dict() == {"events": 4, "trials": 40}
    assert errors.measurements["baseline"].to_dict() == {"events": 0, "trials": 40}
    p95 = fetch("query_log", source, MetricQuery("latency_p95_ms"), WINDOW)
    assert p95.measurements["candidate"].value > 0
    later = fetch("query_log", source, MetricQuery("errors"), Window("v1", "v2", END, END + 60))
    assert later.missing == "query_log has no errors for the candidate v2 in the window"


def test_no_rollout_no_reading():
    reading = fetch("api", http("http://127.0.0.1:9/{version}"), MetricQuery("a"), Window("v1", "", START, END))
    assert reading.missing == "no candidate: no rollout is under way"


def test_the_prometheus_server_stops_its_process(tmp_path: Path):
    server = PrometheusServer(tmp_path, "# EOF\n")
    with server:
        process = server.process
        assert process is not None and process.poll() is None
    assert process.poll() is not None
