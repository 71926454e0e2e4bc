"""Real PostgreSQL+pgvector and Redis for the whole session; a clean slate for each test.

With DATABASE_URL / REDIS_URL unset (a fresh machine, CI) the session starts the
embedded services in a temporary folder and stops them at the end. Each test gets
its own Redis key prefix and empty tables, so tests never see each other's state.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from prometheus_client import CollectorRegistry
from tools import in_ci

from rollout import schema
from rollout.app import create_app
from rollout.config import VERSIONS, Settings
from rollout.documents import Document, DocumentStore
from rollout.migration.index import VectorIndex
from rollout.runtime import Runtime
from rollout.services import ServiceUrls, service_urls
from rollout.services.ports import free_port
from rollout.services.redis import EmbeddedRedis
from rollout.versions import create_table

ADMIN_TOKEN = "test-admin-token"
WEBHOOK_SECRET = "test-webhook-secret"
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def services(tmp_path_factory) -> ServiceUrls:
    folder = tmp_path_factory.mktemp("services")
    settings = Settings.from_environ({
        "ROLLOUT_DATA_DIR": str(folder),
        **{k: os.environ[k] for k in ("DATABASE_URL", "REDIS_URL") if os.environ.get(k)},
    })
    with service_urls(settings) as urls:
        schema.upgrade(urls.database_url, settings)
        yield urls


def settings_for(services: ServiceUrls, **overrides: str) -> Settings:
    """Settings for a test: real services, a private Redis namespace, known secrets."""
    environ = {
        "DATABASE_URL": services.database_url,
        "REDIS_URL": services.redis_url,
        "REDIS_KEY_PREFIX": f"test-{uuid.uuid4().hex[:12]}",
        "ROLLOUT_ADMIN_TOKEN": ADMIN_TOKEN,
        "ALERT_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "FLAGS_CHECK_INTERVAL_S": "0.5",
        "DB_POOL_MIN_SIZE": "0",
        "DB_POOL_MAX_SIZE": "4",
    }
    environ.update(overrides)
    return Settings.from_environ(environ)


def _data_tables(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                        "AND tablename NOT IN ('schema_migrations', 'embedding_versions')").fetchall()
    return [r[0] for r in rows]


def _reset_versions(conn: psycopg.Connection) -> None:
    """Back to the two versions the upgrade registers: v1 the baseline, v2 the candidate (a test that
    dropped one gets it back, empty)."""
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


@pytest.fixture
def clean_db(services):
    """Empty every data table and restore the vector indexes before the test (what a failed or
    killed test left behind goes too)."""
    with psycopg.connect(services.database_url, autocommit=True) as conn:
        _reset_versions(conn)
        tables = _data_tables(conn)
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        for version in VERSIONS:  # an index a killed bulk load left dropped: built again (empty: instant)
            VectorIndex(Settings.from_environ({}).version(version)).ensure(conn)
    return services


@pytest.fixture
def settings(services, clean_db) -> Settings:
    return settings_for(services)


def seed_first_versions(settings: Settings) -> None:
    """Register v1's and v2's provider and model from `settings`, as the upgrade does on a new database
    (the tests share one database: a test's V1_*/V2_* settings seed it as if it were new). Every
    version then embeds as its registry row says."""
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for name in VERSIONS:
            version = settings.version(name)
            conn.execute("UPDATE embedding_versions SET provider = %s, model = %s WHERE name = %s "
                         "AND table_name = %s AND dimensions = %s",
                         (version.embedder, version.model, name, version.table, version.dimensions))


@pytest.fixture
def make_runtime(services, clean_db):
    """Build started runtimes (each like one gateway process); all are closed after the test."""
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
    return create_app(runtime.settings, runtime=runtime)


@pytest.fixture
def client(app):
    return app.test_client()


def admin_headers(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


SAMPLE = [
    ("pool-hours", "facilities", "Pool opening hours", "The indoor pool opens at 6am on weekdays and 8am on weekends."),
    ("parking-rates", "parking", "Car park rates",
     "Parking in the garage costs 12 dollars per day; members park free."),
    ("day-pass", "pricing", "Day pass price", "A coworking day pass costs 35 dollars and includes coffee."),
    ("jazz-night", "events", "Jazz night on the roof", "Live jazz on the rooftop garden every Friday at 7pm."),
    ("gym-induction", "facilities", "Gym induction", "New members book a free gym induction with a trainer."),
    ("refund-policy", "policies", "Refund policy", "Memberships are refundable within 14 days of purchase."),
]


def sample_documents(extra: int = 0) -> list[Document]:
    docs = [Document(i, t, c, cat, {"source": "test"}) for i, cat, t, c in SAMPLE]
    docs += [Document(f"filler-{n:04d}", f"Notice {n}", f"Noticeboard item {n} about topic {n % 13} and room {n % 7}.",
                      ("facilities", "events", "pricing")[n % 3], {"n": n}) for n in range(extra)]
    return docs


def load_and_embed(runtime: Runtime, documents: list[Document] | None = None) -> list[Document]:
    """Store documents and embed them for both versions, the way the demo does."""
    from rollout.demo import embed_corpus

    documents = documents if documents is not None else sample_documents()
    DocumentStore(runtime.pool).upsert_many(documents)
    embed_corpus(runtime)
    return documents


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


def wait_until(predicate, timeout_s: float = 10.0, interval_s: float = 0.01) -> bool:
    """Poll `predicate` until it holds or `timeout_s` passes (bounded: tests never hang)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


@pytest.fixture
def private_redis(tmp_path):
    """A Redis of this test's own, so the test can stop and restart it."""
    server = EmbeddedRedis(tmp_path)
    port = free_port()
    url = server.start(port)
    yield server, port, url
    server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (CI=true) a skip of any kind (a marker, a helper in tests/tools.py) is a failure."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and in_ci():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI=true), where nothing may skip: {reason}"
