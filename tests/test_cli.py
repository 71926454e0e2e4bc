"""The `rollout` command: output and exit codes of the foundation commands."""

import json
import re

import pytest

from rollout.services.ports import free_port


def test_db_upgrade_is_idempotent(run):
    result = run("db", "upgrade")
    assert result.exit_code == 0 and result.output.strip() == "schema is up to date"


def test_flags_show_set_and_reset(run):
    shown = run("flags", "show")
    assert shown.exit_code == 0
    assert re.search(r"^FF_NEW_EMBEDDINGS_PERCENTAGE +0  \(default\)$", shown.output, re.M)
    changed = run("flags", "set", "FF_NEW_EMBEDDINGS_PERCENTAGE", "25", "--reason", "stage 2")
    assert changed.exit_code == 0
    assert changed.output.startswith("FF_NEW_EMBEDDINGS_PERCENTAGE: 0 -> 25 (version ")
    as_json = json.loads(run("flags", "show", "--json").output)
    row = next(f for f in as_json["flags"] if f["name"] == "FF_NEW_EMBEDDINGS_PERCENTAGE")
    assert row["value"] == 25.0 and row["source"] == "redis" and as_json["redis"] == "ok"
    assert run("flags", "set", "ff_enable_gradual_migration", "on").exit_code == 0
    reset = run("flags", "reset", "FF_NEW_EMBEDDINGS_PERCENTAGE")
    assert reset.exit_code == 0 and "25 -> 0 (override dropped)" in reset.output


def test_flags_show_reflects_the_environment(run):
    shown = run("flags", "show", FF_ENABLE_GRADUAL_MIGRATION="true")
    assert re.search(r"^FF_ENABLE_GRADUAL_MIGRATION +true  \(env\)$", shown.output, re.M)


@pytest.mark.parametrize("args, message", [
    (("flags", "set", "FF_NEW_EMBEDDINGS_PERCENTAGE", "150"), "must be between 0 and 100"),
    (("flags", "set", "FF_NEW_EMBEDDINGS_PERCENTAGE", "ten"), "takes a number from 0 to 100"),
    (("flags", "set", "FF_USE_PARALLEL_RAG", "perhaps"), "takes true or false"),
    (("flags", "set", "FF_NOPE", "1"), "unknown flag 'FF_NOPE'"),
    (("flags", "reset", "FF_NOPE"), "unknown flag 'FF_NOPE'"),
])
def test_bad_flag_values_are_refused_with_a_message(run, args, message):
    result = run(*args)
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and message in result.output
    assert "Traceback" not in result.output


def test_unreachable_redis_is_a_message_not_a_traceback(run):
    result = run("flags", "set", "FF_USE_PARALLEL_RAG", "true", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert result.exit_code == 3 and result.output.startswith("error: Redis is unreachable")


def test_invalid_configuration_names_the_variable(run):
    result = run("flags", "show", V2_DIMENSIONS="many")
    assert result.exit_code == 2
    assert "invalid configuration" in result.output and "V2_DIMENSIONS" in result.output


def test_an_invalid_flag_default_in_the_environment_is_named(run):
    result = run("flags", "show", FF_NEW_EMBEDDINGS_PERCENTAGE="200")
    assert result.exit_code != 0 and "FF_NEW_EMBEDDINGS_PERCENTAGE must be between 0 and 100" in result.output


def test_serve_refuses_a_database_without_the_schema(run, fresh_database):
    result = run("serve", "--port", str(free_port()), DATABASE_URL=fresh_database)
    assert result.exit_code == 4 and "run `rollout db upgrade`" in result.output


def test_serve_refuses_a_dimension_mismatch(run):
    result = run("serve", "--port", str(free_port()), V2_DIMENSIONS="512")
    assert result.exit_code == 4 and "V2_DIMENSIONS=512" in result.output


def test_help_lists_the_commands(run):
    result = run("--help")
    assert result.exit_code == 0
    for command in ("demo", "serve", "db", "flags"):
        assert command in result.output


def test_version_is_printed(run):
    from importlib.metadata import version

    result = run("--version")
    assert result.exit_code == 0 and result.output.strip() == f"rollout {version('rag-rollout')}"


def test_setting_a_flag_to_its_current_value_changes_and_records_nothing(run, settings):
    assert run("flags", "set", "FF_USE_PARALLEL_RAG", "true").exit_code == 0
    result = run("flags", "set", "FF_USE_PARALLEL_RAG", "TRUE")
    assert result.exit_code == 0
    assert result.output.strip() == "FF_USE_PARALLEL_RAG: already true; nothing changed, nothing recorded"
    import psycopg

    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute("SELECT count(*) FROM flag_audit WHERE flag = 'FF_USE_PARALLEL_RAG'").fetchone()[0]
    assert rows == 1


def test_a_closed_pipe_ends_the_command_quietly(settings, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "REDIS_KEY_PREFIX": settings.redis_key_prefix}
    for args in (["flags", "show"], ["--help"]):
        reader = subprocess.Popen([sys.executable, "-m", "rollout.cli", *args], cwd=tmp_path, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        reader.stdout.close()  # like `| head -0`: the reader is gone before anything is written
        error = reader.stderr.read().decode()
        assert reader.wait(60) == 1, error
        assert "Traceback" not in error and "BrokenPipe" not in error and "unexpected error" not in error
