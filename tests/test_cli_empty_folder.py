"""Read-only commands in a folder where nothing was set up: one line saying what to run, nothing created."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # runs the CLI in subprocesses

READ_ONLY = [("stage", "status"), ("flags", "show"), ("breaker", "status"), ("migrate", "status"),
             ("stage", "history")]


def rollout(folder, *args, **env):
    clean = {k: v for k, v in os.environ.items()
             if k not in ("DATABASE_URL", "REDIS_URL", "ROLLOUT_DATA_DIR") and not k.startswith("FF_")}
    return subprocess.run([sys.executable, "-m", "rollout.cli", *args], cwd=folder, env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_a_read_only_command_in_an_empty_folder_creates_nothing_and_says_what_to_run(tmp_path, args):
    result = rollout(tmp_path, *args)
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: nothing is set up in ")
    assert "run `rollout demo` in this folder" in lines[0] and "DATABASE_URL" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_command_on_a_database_without_the_schema_says_so(tmp_path, fresh_database, services):
    result = rollout(tmp_path, "stage", "status", DATABASE_URL=fresh_database, REDIS_URL=services.redis_url)
    assert result.returncode == 4
    assert result.stderr.strip() == ("error: this database holds no rollout schema: run `rollout db upgrade` "
                                     "(or `rollout demo` for a local one)")
    assert list(tmp_path.iterdir()) == []
