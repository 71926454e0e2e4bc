"""What tests share besides fixtures: settings on the test services, sample documents, waiting.

Fixtures live in conftest.py; these are plain functions and constants, imported by name
(`from helpers import load_and_embed`).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from rollout.config import VERSIONS, Settings
from rollout.documents import Document, DocumentStore

if TYPE_CHECKING:
    from rollout.runtime import Runtime
    from rollout.services import ServiceUrls

ADMIN_TOKEN = "test-admin-token"
WEBHOOK_SECRET = "test-webhook-secret"
DATA = Path(__file__).parent / "data"


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


def wait_until(predicate, timeout_s: float = 10.0, interval_s: float = 0.01) -> bool:
    """Poll `predicate` until it holds or `timeout_s` passes (bounded: tests never hang)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


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
