"""The registry of embedding versions: `rollout versions ...`, its refusals, and the upgrade that creates it."""

from __future__ import annotations

import json
import shutil

import psycopg
import pytest

from rollout import schema
from rollout.config import Settings


def registry(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT name, status, dimensions, vector_type FROM embedding_versions "
                            "ORDER BY name").fetchall()


def declared_type(url: str, table: str) -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                           "WHERE attrelid = to_regclass(%s) AND attname = 'embedding'", (table,)).fetchone()
        return row[0] if row else None


def hnsw_indexes(url: str, table: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = to_regclass(%s) AND a.amname = 'hnsw'",
            (table,)).fetchall()]


def complete_rollout(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO rollout_state (id, status, percentage) VALUES (1, 'complete', 100) "
                     "ON CONFLICT (id) DO UPDATE SET status = 'complete', percentage = 100")


def test_the_upgrade_registers_v1_as_baseline_and_v2_as_candidate(run):
    listed = run("versions", "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split()[:2] == ["v1", "baseline"] and "local/local-lexical-v1 vector(1536)" in lines[0]
    assert lines[1].split()[:2] == ["v2", "candidate"] and "vector(768) doc_embeddings_v2" in lines[1]
    as_json = json.loads(run("versions", "list", "--json").output)
    assert [(v["name"], v["status"], v["table_name"]) for v in as_json] == [
        ("v1", "baseline", "doc_embeddings_v1"), ("v2", "candidate", "doc_embeddings_v2")]
    shown = json.loads(run("versions", "show", "v2", "--json").output)
    assert shown["provider"] == "local" and shown["dimensions"] == 768 and shown["created_at"]


def test_add_creates_the_table_and_its_index(run, settings):
    added = run("versions", "add", "v3", "--provider", "local", "--dimensions", "1024", "--json")
    assert added.exit_code == 0, added.output
    version = json.loads(added.output)
    assert version | {"created_at": None} == {
        "name": "v3", "provider": "local", "model": "local-lexical-v3", "dimensions": 1024,
        "vector_type": "vector", "table_name": "doc_embeddings_v3", "status": "ready", "created_at": None,
        "retired_at": None, "notes": ""}
    assert declared_type(settings.database_url, "doc_embeddings_v3") == "vector(1024)"
    assert hnsw_indexes(settings.database_url, "doc_embeddings_v3") == ["doc_embeddings_v3_hnsw"]

    half = run("versions", "add", "big-model_2", "--provider", "local", "--dimensions", "3072", "--halfvec")
    assert half.exit_code == 0, half.output
    assert half.output.startswith("added big-model_2  ")
    assert declared_type(settings.database_url, "doc_embeddings_big_model_2") == "halfvec(3072)"
    assert hnsw_indexes(settings.database_url, "doc_embeddings_big_model_2") == ["doc_embeddings_big_model_2_hnsw"]
    with psycopg.connect(settings.database_url) as conn:
        schema.check(conn, settings)  # the new tables agree with the registry


@pytest.mark.parametrize(("args", "message"), [
    (("V3", "--provider", "local", "--dimensions", "8"), "invalid version name 'V3'"),
    (("x" * 33, "--provider", "local", "--dimensions", "8"), "1-32 characters"),
    (("v3", "--provider", "cohere", "--dimensions", "8"), "unknown embedding provider 'cohere'"),
    (("v3", "--provider", "local", "--dimensions", "0"), "0 dimensions: a vector column takes 1 to 2000"),
    (("v3", "--provider", "local", "--dimensions", "2001"), "use --halfvec up to 4000"),
    (("v3", "--provider", "local", "--dimensions", "4001", "--halfvec"), "a halfvec column takes 1 to 4000"),
    (("v2", "--provider", "local", "--dimensions", "8"), "version v2 already exists (candidate)"),
    (("v3", "--provider", "openai", "--dimensions", "8"), "needs OPENAI_API_KEY"),
])
def test_bad_input_is_one_line_and_changes_nothing(run, settings, args, message):
    before = registry(settings.database_url)
    result = run("versions", "add", *args)
    assert result.exit_code != 0
    assert result.output.count("\n") == 1 and result.output.startswith("error: ") and message in result.output
    assert registry(settings.database_url) == before
    assert declared_type(settings.database_url, "doc_embeddings_v3") is None


def test_promote_needs_a_complete_candidate_and_keeps_the_old_baseline_read_only(run, settings):
    run("versions", "add", "v3", "--provider", "local", "--dimensions", "16")
    for name, message in (("v3", "v3 is not the candidate (ready)"), ("v1", "v1 is already the baseline"),
                          ("v2", "v2 is not complete (0 %, idle)"), ("nope", "no version named nope")):
        refused = run("versions", "promote", name)
        assert refused.exit_code != 0 and message in refused.output, refused.output
    assert registry(settings.database_url)[:2] == [("v1", "baseline", 1536, "vector"),
                                                   ("v2", "candidate", 768, "vector")]
    complete_rollout(settings.database_url)
    promoted = run("versions", "promote", "v2", "--json")
    assert promoted.exit_code == 0, promoted.output
    assert json.loads(promoted.output)["status"] == "baseline"
    assert [row[:2] for row in registry(settings.database_url)] == [
        ("v1", "read_only"), ("v2", "baseline"), ("v3", "ready")]
    with psycopg.connect(settings.database_url) as conn:
        # the rollout stays complete at 100 %: with no candidate, everyone is on the new baseline
        assert conn.execute("SELECT status, percentage FROM rollout_state").fetchone() == ("complete", 100)


def test_retire_and_drop_refuse_what_is_in_use(run, settings):
    url = settings.database_url
    for args, message in ((("retire", "v1"), "v1 is the baseline"), (("retire", "v2"), "v2 is the candidate"),
                          (("drop", "v2", "--yes"), "v2 is the candidate; --force drops it anyway"),
                          (("drop", "v1"), "add --yes to confirm")):
        refused = run("versions", *args)
        assert refused.exit_code != 0 and message in refused.output, refused.output
    run("versions", "add", "v3", "--provider", "local", "--dimensions", "16")
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO embedding_migrations (version) VALUES ('v3')")
        conn.execute("INSERT INTO query_log (logged_at, request_id, mode, reason, routed_version, served_version, "
                     "query_hash, k, latency_ms, result_count, fallback) "
                     "VALUES (now() - interval '1 hour', 'r1', 'routed', 'percentage', 'v3', 'v3', 'h', 5, 1, 0, "
                     "false)")
    recent = run("versions", "drop", "v3", "--yes")
    assert recent.exit_code != 0 and "v3 served traffic at" in recent.output
    assert declared_type(url, "doc_embeddings_v3") == "vector(16)"

    retired = run("versions", "retire", "v3", "--json")
    assert retired.exit_code == 0 and json.loads(retired.output)["retired_at"]
    assert run("versions", "retire", "v3").exit_code != 0
    dropped = run("versions", "drop", "v3", "--yes", "--force")
    assert dropped.exit_code == 0, dropped.output
    assert dropped.output.startswith("dropped v3 ")
    assert declared_type(url, "doc_embeddings_v3") is None
    assert [row[0] for row in registry(url)] == ["v1", "v2"]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM embedding_migrations WHERE version = 'v3'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM query_log WHERE served_version = 'v3'").fetchone()[0] == 1


def test_upgrade_from_the_two_version_schema_loses_nothing(fresh_database, tmp_path):
    """A database made before the registry (files up to 006) with data in every table keeps it all."""
    old = tmp_path / "sql"
    old.mkdir()
    for migration in schema.migrations():
        if migration.version < 7:
            shutil.copy(migration.path, old / migration.path.name)
    settings = Settings.from_environ({"V2_EMBEDDER": "local", "V2_MODEL": "model-two", "V2_DIMENSIONS": "4",
                                      "V1_DIMENSIONS": "3"})
    schema.upgrade(fresh_database, settings, old)
    with psycopg.connect(fresh_database) as conn:
        conn.execute("INSERT INTO documents (id, title, content, content_hash) VALUES ('d1', 't', 'c', 'h')")
        conn.execute("INSERT INTO doc_embeddings_v1 VALUES ('d1', '[1,0,0]', 'm1', 'h')")
        conn.execute("INSERT INTO doc_embeddings_v2 VALUES ('d1', '[0,1,0,0]', 'model-two', 'h')")
        conn.execute("INSERT INTO query_log (logged_at, request_id, mode, reason, routed_version, served_version, "
                     "query_hash, k, latency_ms, result_count, fallback, other_version) "
                     "VALUES (now(), 'r1', 'routed', 'percentage', 'v2', 'v1', 'h', 5, 1, 1, true, 'v2')")
        conn.execute("INSERT INTO rollout_decisions (kind, action, actor, reason, percentage_before, "
                     "percentage_after, status_before, status_after, transition, plan) "
                     "VALUES ('command', 'advance', 'cli:me', 'first', 0, 10, 'idle', 'running', '{}', '{}')")
        conn.execute("UPDATE rollout_state SET percentage = 10, status = 'running'")
        conn.execute("INSERT INTO flag_audit (flag, new_value, actor) "
                     "VALUES ('FF_NEW_EMBEDDINGS_PERCENTAGE', '10', 'x')")
        before = {table: conn.execute(f"SELECT to_jsonb(t) FROM {table} t ORDER BY 1::text").fetchall()
                  for table in ("documents", "doc_embeddings_v1", "doc_embeddings_v2", "query_log",
                                "rollout_decisions", "rollout_state", "flag_audit")}

    upgraded = schema.upgrade(fresh_database, settings, schema.SQL_DIR)
    assert upgraded == [m.path.name for m in schema.migrations() if m.version >= 7]  # 007 onwards, in order
    with psycopg.connect(fresh_database) as conn:
        for table, rows in before.items():
            after = conn.execute(f"SELECT to_jsonb(t) FROM {table} t ORDER BY 1::text").fetchall()
            # every value kept; a column added later is new and empty
            assert [{k: row[0][k] for k in old[0]} for row, old in zip(after, rows, strict=True)] == \
                [old[0] for old in rows], table
            assert all(value is None for row, old in zip(after, rows, strict=True)
                       for k, value in row[0].items() if k not in old[0]), table
        # provider and model from the V1_*/V2_* settings, the dimension from each table
        assert conn.execute("SELECT name, provider, model, dimensions, status, table_name FROM embedding_versions "
                            "ORDER BY name").fetchall() == [
            ("v1", "local", "local-lexical-v1", 3, "baseline", "doc_embeddings_v1"),
            ("v2", "local", "model-two", 4, "candidate", "doc_embeddings_v2")]
        schema.check(conn, settings)
        # names are data now: a third version's rows are accepted by the query log
        conn.execute("INSERT INTO query_log (logged_at, request_id, mode, reason, routed_version, served_version, "
                     "query_hash, k, latency_ms, result_count, fallback) "
                     "VALUES (now(), 'r2', 'routed', 'percentage', 'v3', 'v3', 'h', 5, 1, 1, false)")


def test_stage_start_sets_the_candidate_and_refuses_a_second_rollout(run, settings):
    url = settings.database_url
    run("versions", "add", "v3", "--provider", "local", "--dimensions", "16")
    started = run("stage", "start", "--baseline", "v1", "--candidate", "v3", "--reason", "try v3")
    assert started.exit_code == 0, started.output
    assert "command start by cli:" in started.output and "0 % -> 10 %, running" in started.output
    assert "flag: FF_NEW_EMBEDDINGS_PERCENTAGE 0 -> 10" in started.output
    assert [row[:2] for row in registry(url)] == [("v1", "baseline"), ("v2", "ready"), ("v3", "candidate")]
    for args, message in ((("--baseline", "v1", "--candidate", "v2"), "a rollout of v3 is in progress"),):
        refused = run("stage", "start", *args)
        assert refused.exit_code != 0 and message in refused.output, refused.output
    assert run("stage", "rollback", "--reason", "not yet").exit_code == 0
    for args, message in ((("--baseline", "v2", "--candidate", "v3"), "v2 is not the baseline (ready)"),
                          (("--baseline", "v1", "--candidate", "v1"), "two different versions"),
                          (("--baseline", "v1", "--candidate", "v9"), "no version named v9")):
        refused = run("stage", "start", *args)
        assert refused.exit_code != 0 and message in refused.output, refused.output
    assert [row[:2] for row in registry(url)] == [("v1", "baseline"), ("v2", "ready"), ("v3", "candidate")]
    again = run("stage", "start", "--baseline", "v1", "--candidate", "v2")  # after a rollback to 0 %: allowed
    assert again.exit_code == 0, again.output
    assert [row[:2] for row in registry(url)] == [("v1", "baseline"), ("v2", "candidate"), ("v3", "ready")]


def test_stage_start_through_the_admin_api(client, runtime):
    """`POST /api/rollout/stage {"action": "start"}` is `rollout stage start`: admin only, the same refusals."""
    from helpers import admin_headers

    from rollout.versions import VersionRegistry

    url = runtime.settings.database_url
    VersionRegistry(url).add("v3", "local", 16)
    carol = {**admin_headers(), "X-Rollout-Actor": "carol"}

    def start(body, headers=carol):
        return client.post("/api/rollout/stage", json={"action": "start", **body}, headers=headers)

    assert start({"baseline": "v1", "candidate": "v3"}, headers={}).status_code == 401
    assert start({"baseline": "v1", "candidate": "v3"}, headers=admin_headers("wrong")).status_code == 403
    for body, problem in (({"baseline": "v1"}, "start needs a baseline and a candidate"),
                          ({"baseline": "v1", "candidate": "v1"}, "two different versions"),
                          ({"baseline": "v1", "candidate": "V 3"}, "candidate"),
                          ({"baseline": "v1", "candidate": "v3", "percentage": 10}, "only for set"),
                          ({"baseline": "v1", "candidate": "v3", "expected_percentage": 0}, "not for start")):
        refused = start(body)
        assert refused.status_code == 400 and problem in refused.get_json()["detail"], (body, refused.get_json())
    advance = client.post("/api/rollout/stage", json={"action": "advance", "candidate": "v3"}, headers=carol)
    assert advance.status_code == 400 and "only for start" in advance.get_json()["detail"]
    unknown = start({"baseline": "v1", "candidate": "v9"})
    assert unknown.status_code == 404 and unknown.get_json()["error"] == "unknown_version"
    assert "no version named v9" in unknown.get_json()["detail"]
    assert runtime.stages.store.decisions() == []  # refused input changes nothing
    assert [row[:2] for row in registry(url)] == [("v1", "baseline"), ("v2", "candidate"), ("v3", "ready")]

    started = start({"baseline": "v1", "candidate": "v3", "reason": "try v3"})
    assert started.status_code == 200, started.get_json()
    decision = started.get_json()["decision"]
    assert (decision["action"], decision["actor"], decision["percentage_after"]) == ("start", "carol", 10.0)
    assert decision["reason"] == "rollout of v3 against v1 started at 10 % by carol: try v3"
    assert started.get_json()["status"]["status"] == "running"
    assert [row[:2] for row in registry(url)] == [("v1", "baseline"), ("v2", "ready"), ("v3", "candidate")]

    busy = start({"baseline": "v1", "candidate": "v2"})
    assert busy.status_code == 409 and "a rollout of v3 is in progress" in busy.get_json()["detail"]
    back = client.post("/api/rollout/stage", json={"action": "rollback", "rollback_to": "zero"}, headers=carol)
    assert back.status_code == 200
    not_baseline = start({"baseline": "v2", "candidate": "v3"})
    assert not_baseline.status_code == 409 and "v2 is not the baseline (ready)" in not_baseline.get_json()["detail"]
    assert [row[:2] for row in registry(url)] == [("v1", "baseline"), ("v2", "ready"), ("v3", "candidate")]
    assert [d["action"] for d in runtime.stages.store.decisions()] == ["rollback", "start"]


def test_v1_to_v2_to_v3_end_to_end(run, runtime):
    """The demo's pair completes and is promoted; a third version is added, backfilled, rolled out with
    sticky users, rolled back by an alert naming it, completed and promoted; the first is dropped."""
    from alert_payloads import alertmanager
    from helpers import WEBHOOK_SECRET, load_and_embed

    from rollout.app import create_app
    from rollout.controller import Action, Command
    from rollout.migration.backfill import backfill_for

    url = runtime.settings.database_url
    client = create_app(runtime.settings, runtime=runtime).test_client()

    def served(users: range) -> dict[str, str]:
        runtime.coverage.refresh()  # what the coverage thread does every COVERAGE_REFRESH_S
        answers = {}
        for n in users:
            body = client.post("/api/rag/query", json={"query": "pool opening hours", "user_id": f"user-{n}"}
                               ).get_json()
            answers[f"user-{n}"] = body["served_by"]
        return answers

    def complete() -> None:
        runtime.stages.command(Command(Action.SET, actor="test", percentage=100))
        runtime.stages.command(Command(Action.ADVANCE, actor="test"))
        assert runtime.stages.store.read().state.status.value == "complete"

    load_and_embed(runtime)  # the demo's state: v1 the baseline, v2 the candidate, both embedded
    complete()
    assert run("versions", "promote", "v2").exit_code == 0
    assert set(served(range(20)).values()) == {"v2"}  # no candidate: everyone on the new baseline

    added = run("versions", "add", "v3", "--provider", "local", "--dimensions", "1024")
    assert added.exit_code == 0, added.output
    runtime.coverage.refresh()  # the registry's snapshot: v3 gets its backend
    report = backfill_for(runtime, "v3").run()
    with psycopg.connect(url) as conn:
        documents = conn.execute("SELECT count(*) FROM documents").fetchone()[0]
    assert report.embedded == documents > 0
    started = run("stage", "start", "--baseline", "v2", "--candidate", "v3")
    assert started.exit_code == 0, started.output
    runtime.stages.command(Command(Action.ADVANCE, actor="test"))  # 10 -> 25 %
    assert runtime.stages.store.read().state.percentage == 25

    first = served(range(200))
    on_v3 = {user for user, version in first.items() if version == "v3"}
    assert set(first.values()) == {"v2", "v3"} and 20 <= len(on_v3) <= 80  # about a quarter of 200
    assert served(range(200)) == first  # sticky: every user answered by the same version again

    bearer = {"Authorization": f"Bearer {WEBHOOK_SECRET}", "Content-Type": "application/json"}
    fired = client.post("/api/alerts/webhook", data=json.dumps(alertmanager(extra_labels={"version": "v3"})),
                        headers=bearer)
    assert fired.status_code == 200 and fired.get_json()["alerts"][0]["actions"][0] == "breaker v3 open"
    after_alert = served(range(200))
    assert set(after_alert.values()) == {"v2"}  # v3's users are back on the baseline

    client.post("/api/alerts/webhook", data=json.dumps(alertmanager("resolved", extra_labels={"version": "v3"})),
                headers=bearer)
    runtime.rollback.close("v3", actor="test", reason="fixed", source="api", force=True, restore=False)
    runtime.stages.reconcile()
    complete()
    assert set(served(range(50)).values()) == {"v3"}
    assert run("versions", "promote", "v3").exit_code == 0
    assert run("versions", "retire", "v1").exit_code == 0
    dropped = run("versions", "drop", "v1", "--yes")
    assert dropped.exit_code == 0, dropped.output
    assert [row[:2] for row in registry(url)] == [("v2", "read_only"), ("v3", "baseline")]
    assert declared_type(url, "doc_embeddings_v1") is None


def test_the_api_takes_version_names(client):
    from helpers import admin_headers

    forced = client.post("/api/rag/query", json={"query": "pool", "user_id": "u1", "version": "v3"},
                         headers=admin_headers())
    assert forced.status_code == 400
    assert "neither the baseline (v1) nor the candidate (v2)" in forced.get_json()["detail"]
    bad = client.post("/api/rag/query", json={"query": "pool", "user_id": "u1", "version": "V 1"},
                      headers=admin_headers())
    assert bad.status_code == 400
    for path in ("/api/rag/versions/v2/health", "/api/rag/v2/health"):  # the old path keeps working
        health = client.get(path)
        assert health.status_code in (200, 503) and health.get_json()["version"] == "v2", path
    assert client.get("/api/rag/versions/nope/health").status_code == 404
    unknown = client.post("/api/monitoring/circuit-breaker", json={"action": "open", "version": "v9"},
                          headers=admin_headers())
    assert unknown.status_code == 404 and unknown.get_json()["error"] == "unknown_version"


def test_an_alert_naming_another_version_than_the_candidate_rolls_nothing_back(client, runtime):
    from alert_payloads import alertmanager
    from helpers import WEBHOOK_SECRET

    from flags import GRADUAL_MIGRATION, V2_PERCENTAGE

    runtime.flags.set(GRADUAL_MIGRATION, True, actor="test")
    runtime.flags.set(V2_PERCENTAGE, 25, actor="test")
    bearer = {"Authorization": f"Bearer {WEBHOOK_SECRET}", "Content-Type": "application/json"}
    body = client.post("/api/alerts/webhook", data=json.dumps(alertmanager(extra_labels={"version": "v1"})),
                       headers=bearer).get_json()["alerts"][0]
    assert body["trips"] is False and body["outcome"] == "recorded" and body["actions"] == []
    assert body["warnings"] == ["the alert names version v1, not the candidate (v2): recorded, nothing rolled back"]
    assert runtime.breakers.state().record("v2").state == "closed" and runtime.flags.get(V2_PERCENTAGE) == 25


def test_every_version_embeds_as_its_registry_row_says(make_runtime, services):
    """V1_*/V2_* only seed the registry: a process whose V2_MODEL says otherwise embeds v2 as its row says,
    and a changed row is followed without a restart."""
    from helpers import settings_for

    from rollout.runtime import Runtime

    make_runtime()  # the registry seeded from the default settings
    url = services.database_url
    settings = settings_for(services, V2_MODEL="local-lexical-elsewhere")
    runtime = Runtime(settings, url, settings.redis_url, pool_size=2).start()  # no seeding: an old process
    try:
        assert runtime.backends["v2"].settings.model == "local-lexical-v2"
        assert runtime.version("v2").model == "local-lexical-v2"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE embedding_versions SET model = 'local-lexical-v2c' WHERE name = 'v2'")
        runtime.coverage.refresh()  # the registry's snapshot, as the coverage thread takes it
        assert runtime.backends["v2"].settings.model == "local-lexical-v2c"
        assert runtime.embedders["v2"].describe()["model"] == "local-lexical-v2c"
        assert runtime.backends["v1"].settings == runtime.settings.version("v1")  # the seed, unchanged
    finally:
        runtime.close()


def test_a_dead_workers_role_series_go_with_it(tmp_path):
    """rollout_version_role is a live gauge: once gunicorn marks a worker dead (child_exit), the pair it
    last saw is no longer exported, so the alert rules' join cannot name a stale candidate."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    root = Path(__file__).resolve().parent.parent
    worker = ("import os; from rollout.metrics import Metrics; import sys; "
              "Metrics().set_roles(sys.argv[1], sys.argv[2]); print(os.getpid())")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(root)}

    def run_worker(baseline: str, candidate: str) -> int:
        done = subprocess.run([sys.executable, "-c", worker, baseline, candidate], env=env, capture_output=True,
                              text=True, timeout=60, check=True)
        return int(done.stdout)

    def exported() -> set[tuple[str, str]]:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(tmp_path))
        found = set()
        for line in generate_latest(registry).decode().splitlines():
            if line.startswith("rollout_version_role{") and line.endswith(" 1.0"):
                labels = dict(part.split("=") for part in line[line.index("{") + 1:line.index("}")].split(","))
                found.add((labels["version"].strip('"'), labels["role"].strip('"')))
        return found

    old = run_worker("v1", "v2")  # a worker that still held the first pair when it died
    run_worker("v2", "v3")
    assert exported() == {("v1", "baseline"), ("v2", "candidate"), ("v2", "baseline"), ("v3", "candidate")}
    multiprocess.mark_process_dead(old, path=str(tmp_path))
    assert exported() == {("v2", "baseline"), ("v3", "candidate")}
