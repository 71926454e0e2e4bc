"""Real PostgreSQL+pgvector and Redis for the whole session; a clean slate for each test.

With DATABASE_URL / REDIS_URL unset (a fresh machine, CI) the session starts the
embedded services in a temporary folder and stops them at the end. Each test gets
its own Redis key prefix and empty tables, so tests never see each other's state.
The suite runs in parallel processes (pytest-xdist, `-n` in pyproject.toml): each has
its own session, so its own embedded services, or its own database on DATABASE_URL's server.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import TYPE_CHECKING

import psycopg
import pytest
from helpers import (  # noqa: F401  (also still importable from here)
    ADMIN_TOKEN,
    DATA,
    SAMPLE,
    WEBHOOK_SECRET,
    admin_headers,
    load_and_embed,
    sample_documents,
    seed_first_versions,
    settings_for,
    wait_until,
)
from tools import in_ci

from rollout.config import VERSIONS, Settings

if TYPE_CHECKING:  # the service fixtures import their modules when used: tests/unit never pays for them
    from rollout.runtime import Runtime
    from rollout.services import ServiceUrls


@pytest.fixture(scope="session")
def services(tmp_path_factory) -> ServiceUrls:
    from rollout import schema
    from rollout.services import service_urls

    folder = tmp_path_factory.mktemp("services")
    given = {k: os.environ[k] for k in ("DATABASE_URL", "REDIS_URL") if os.environ.get(k)}
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if "DATABASE_URL" in given and worker:
        given["DATABASE_URL"] = _worker_database(given["DATABASE_URL"], worker)
    settings = Settings.from_environ({"ROLLOUT_DATA_DIR": str(folder), **given})
    with service_urls(settings) as urls:
        schema.upgrade(urls.database_url, settings)
        yield urls


def _worker_database(url: str, worker: str) -> str:
    """A database of its own for one parallel worker on DATABASE_URL's server (tests empty every table, so
    two workers must never share one); created when missing. Redis needs none: keys are prefixed per test."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(url)
    name = f"{params.get('dbname') or 'postgres'}_{worker}"
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(url, dbname=name)


def _data_tables(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                        "AND tablename NOT IN ('schema_migrations', 'embedding_versions')").fetchall()
    return [r[0] for r in rows]


def _reset_versions(conn: psycopg.Connection) -> None:
    """Back to the two versions the upgrade registers: v1 the baseline, v2 the candidate (a test that
    dropped one gets it back, empty)."""
    from rollout.versions import create_table

    extra = conn.execute("SELECT table_name FROM embedding_versions WHERE name NOT IN ('v1', 'v2')").fetchall()
    for (table,) in extra:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute("DELETE FROM embedding_versions WHERE name NOT IN ('v1', 'v2')")
    defaults = Settings.from_environ({})
    for name in VERSIONS:
        version = defaults.version(name)
        if conn.execute("SELECT to_regclass(%s)", (version.table,)).fetchone()[0] is None:
            create_table(conn, version.table, version.vector_type, version.dimensions)
        conn.execute("INSERT INTO embedding_versions (name, provider, model, dimensions, table_name, status) "
                     "VALUES (%s, %s, %s, %s, %s, 'ready') ON CONFLICT (name) DO UPDATE "
                     "SET provider = excluded.provider, model = excluded.model",
                     (name, version.embedder, version.model, version.dimensions, version.table))
    conn.execute("UPDATE embedding_versions SET status = 'ready', retired_at = NULL")
    conn.execute("UPDATE embedding_versions SET status = 'baseline' WHERE name = 'v1'")
    conn.execute("UPDATE embedding_versions SET status = 'candidate' WHERE name = 'v2'")


def _truncate(conn: psycopg.Connection, tables: list[str], attempts: int = 5) -> None:
    """TRUNCATE takes every table's exclusive lock in turn, so work a previous test left finishing can
    deadlock with it: a backend whose client process the test killed runs its statement on until it
    notices, and a stopped process's last flush may still be in flight. PostgreSQL then cancels one
    side; that work is disposable, and ours is tried again once it is done."""
    for attempt in range(attempts):
        try:
            conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
            return
        except (psycopg.errors.DeadlockDetected, psycopg.errors.LockNotAvailable):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


@pytest.fixture
def clean_db(services):
    """Empty every data table and restore the vector indexes before the test (what a failed or
    killed test left behind goes too)."""
    from rollout.migration.index import VectorIndex

    with psycopg.connect(services.database_url, autocommit=True) as conn:
        _reset_versions(conn)
        tables = _data_tables(conn)
        if tables:
            _truncate(conn, tables)
        for version in VERSIONS:  # an index a killed bulk load left dropped: built again (empty: instant)
            VectorIndex(Settings.from_environ({}).version(version)).ensure(conn)
    return services


@pytest.fixture
def settings(services, clean_db) -> Settings:
    return settings_for(services)


@pytest.fixture
def make_runtime(services, clean_db):
    """Build started runtimes (each like one gateway process); all are closed after the test."""
    from prometheus_client import CollectorRegistry

    from rollout.runtime import Runtime

    built = []

    def make(settings: Settings | None = None, **overrides) -> Runtime:
        settings = settings or settings_for(services, **overrides)
        seed_first_versions(settings)
        runtime = Runtime(settings, settings.database_url, settings.redis_url,
                          metrics_registry=CollectorRegistry()).start()
        built.append(runtime)
        return runtime

    yield make
    for runtime in built:
        runtime.close()


@pytest.fixture
def runtime(make_runtime, settings) -> Runtime:
    return make_runtime(settings)


@pytest.fixture
def app(runtime):
    from rollout.app import create_app

    return create_app(runtime.settings, runtime=runtime)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def fresh_database(services):
    """An empty database of this test's own on the session's server (dropped afterwards)."""
    name = f"fresh_{uuid.uuid4().hex[:10]}"
    admin = psycopg.conninfo.conninfo_to_dict(services.database_url)
    with psycopg.connect(**{**admin, "dbname": "postgres"}, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield psycopg.conninfo.make_conninfo(services.database_url, dbname=name)
    with psycopg.connect(**{**admin, "dbname": "postgres"}, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def private_redis(tmp_path):
    """A Redis of this test's own, so the test can stop and restart it."""
    from rollout.services.ports import free_port
    from rollout.services.redis import EmbeddedRedis

    server = EmbeddedRedis(tmp_path)
    port = free_port()
    url = server.start(port)
    yield server, port, url
    server.stop()


@pytest.fixture
def run(settings, tmp_path, monkeypatch):
    """`rollout ...` in this process, in an empty folder (no stray .env), against the test's services and
    Redis namespace; keyword arguments add environment variables. `run.env` holds the environment."""
    from click.testing import CliRunner

    from rollout.cli import command_group

    monkeypatch.chdir(tmp_path)
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "REDIS_KEY_PREFIX": settings.redis_key_prefix}
    group = command_group()

    def invoke(*args: str, **extra_env: str):
        return CliRunner().invoke(group, list(args), env={**env, **extra_env}, catch_exceptions=False)

    invoke.env = env
    return invoke


# Variables the SDKs (OpenAI, Gemini) read on their own; none may leak in from the machine running the tests.
SDK_VARIABLES = (
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_CUSTOM_HEADERS",
    "GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_ENTERPRISE",
    "GOOGLE_GENAI_API_VERSION", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
)


@pytest.fixture
def offline_sdk(monkeypatch):
    """The provider SDKs reach only the loopback fakes a test starts (`pytest.mark.usefixtures`)."""
    for name in SDK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


SLOW_FIXTURES = frozenset({"services", "private_redis", "fresh_database"})  # each starts or uses a server


def pytest_collection_modifyitems(config, items):
    """A test that needs a server is `slow`, so `pytest -m "not slow"` selects the fast tier by itself."""
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (CI=true) a skip of any kind (a marker, a helper in tests/tools.py) is a failure."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and in_ci():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI=true), where nothing may skip: {reason}"
