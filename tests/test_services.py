"""Embedded services: started when the URLs are unset, shared by concurrent commands, stopped by the last one."""

import os

import psycopg
import pytest
import redis

from rollout.config import Settings
from rollout.errors import ServiceError
from rollout.services import service_urls
from rollout.services.postgres import EmbeddedPostgres
from rollout.services.redis import EmbeddedRedis

pytestmark = pytest.mark.slow  # starts and stops the embedded services


def embedded(folder):
    return Settings.from_environ({"ROLLOUT_DATA_DIR": str(folder)})


def test_set_urls_are_used_as_they_are(tmp_path):
    settings = Settings.from_environ({"ROLLOUT_DATA_DIR": str(tmp_path), "DATABASE_URL": "postgresql://db/x",
                                      "REDIS_URL": "redis://cache:6379/0"})
    with service_urls(settings) as urls:
        assert (urls.database_url, urls.redis_url, urls.embedded) == ("postgresql://db/x", "redis://cache:6379/0", ())
    assert not (tmp_path / "postgres").exists()


def test_started_shared_reused_and_stopped_by_the_last_user(tmp_path):
    settings = embedded(tmp_path)
    with service_urls(settings) as outer:
        assert outer.embedded == ("postgres", "redis")
        with psycopg.connect(outer.database_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (n int)")
            assert conn.execute("SHOW server_version").fetchone()[0].startswith("18")
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        assert redis.Redis.from_url(outer.redis_url).set("kept", "yes")
        with service_urls(settings) as inner:  # a second command beside the first
            assert inner == outer
        assert EmbeddedPostgres(tmp_path).running_port() is not None, "the inner user stopped a shared service"
        assert EmbeddedRedis(tmp_path).running_port() is not None
    assert EmbeddedPostgres(tmp_path).running_port() is None
    assert EmbeddedRedis(tmp_path).running_port() is None

    with service_urls(settings) as again:  # a second run reuses the data and the ports
        assert again.database_url == outer.database_url
        with psycopg.connect(again.database_url) as conn:
            assert conn.execute("SELECT to_regclass('kept')").fetchone()[0] == "kept"
        assert redis.Redis.from_url(again.redis_url).get("kept") == b"yes"


def test_a_dead_processes_lease_does_not_keep_the_services_up(tmp_path):
    settings = embedded(tmp_path)
    with service_urls(settings):
        (tmp_path / "leases" / "999999999.dead").touch()  # no such process
    assert EmbeddedPostgres(tmp_path).running_port() is None
    assert not (tmp_path / "leases" / "999999999.dead").exists()


def test_a_service_that_cannot_start_says_what_to_set(tmp_path):
    pgdata = tmp_path / "postgres"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("9\n")  # a data folder from an incompatible server
    with pytest.raises(ServiceError, match="Set DATABASE_URL"):
        with service_urls(embedded(tmp_path)):
            pass
    assert not list((tmp_path / "leases").glob("*")), "a failed start must not leave its lease"
    assert EmbeddedRedis(tmp_path).running_port() is None


def test_nothing_is_stopped_from_a_forked_child(tmp_path):
    settings = embedded(tmp_path)
    with service_urls(settings):
        pid = os.fork()
        if pid == 0:  # the child leaves the with-block through its own exit path
            os._exit(0)
        os.waitpid(pid, 0)
        assert EmbeddedPostgres(tmp_path).running_port() is not None
