"""The registry of embedding versions (`embedding_versions`): which exist, which is the baseline,
which is the candidate being rolled out.

A version is a provider, a model, a dimension and its own table of embeddings with an HNSW
index. Each change here (add, promote, retire, drop) is one transaction that checks its
preconditions under a lock of the registry, so a refused change leaves nothing behind and
two changes never interleave. The request path never reads this table: the runtime takes a
snapshot of it when it starts and again in the background (see `Runtime.refresh_versions`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from rollout.embedders.registry import provider
from rollout.errors import RolloutError
from rollout.routing import Roles
from rollout.version_spec import VersionSettings

NAME = re.compile(r"^[a-z0-9_-]{1,32}$")
MAX_DIMENSIONS = {"vector": 2000, "halfvec": 4000}  # pgvector's limits for an HNSW index
STATUSES = ("baseline", "candidate", "ready", "read_only", "retired")
RECENT_TRAFFIC_S = 24 * 3600  # `drop` refuses a version that answered within this, unless forced
_LOCK = "rollout:versions"
_COLUMNS = ("name, provider, model, dimensions, vector_type, table_name, status, created_at, "
            "retired_at, notes")


class VersionError(RolloutError):
    """A registry change that cannot be made as asked (the message says why; nothing changed)."""


class UnknownVersion(VersionError):
    """A name the registry does not hold (the API answers 404)."""


@dataclass(frozen=True)
class EmbeddingVersion:
    name: str
    provider: str
    model: str
    dimensions: int
    vector_type: str
    table_name: str
    status: str
    created_at: datetime | None = None
    retired_at: datetime | None = None
    notes: str = ""

    @property
    def settings(self) -> VersionSettings:
        """What embedders, backends and the backfill take: every version, v1 and v2 included, embeds as
        its row says (V1_*/V2_* only seeded the first two rows; credentials come from the environment)."""
        return VersionSettings(version=self.name, embedder=self.provider, model=self.model,
                               dimensions=self.dimensions, table=self.table_name,
                               vector_type=self.vector_type)  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("created_at", "retired_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


def check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise VersionError(f"invalid version name {name!r}: 1-32 characters of lowercase letters, digits, - and _")
    return name


def table_for(name: str) -> str:
    """The embeddings table of a version (`-` becomes `_`: a plain identifier)."""
    return f"doc_embeddings_{check_name(name).replace('-', '_')}"


def index_definition(table: str, vector_type: str) -> str:
    ops = "halfvec_cosine_ops" if vector_type == "halfvec" else "vector_cosine_ops"
    return (f"CREATE INDEX {table}_hnsw ON {table} USING hnsw (embedding {ops}) "
            "WITH (m = 16, ef_construction = 64)")


def create_table(conn: psycopg.Connection, table: str, vector_type: str, dimensions: int) -> None:
    """A version's embeddings table and its HNSW index (the layout of sql/001_core.sql)."""
    conn.execute(f"""CREATE TABLE {table} (
        document_id   text PRIMARY KEY REFERENCES documents (id) ON DELETE CASCADE,
        embedding     {vector_type}({int(dimensions)}) NOT NULL,
        model         text NOT NULL,
        content_hash  text NOT NULL,
        embedded_at   timestamptz NOT NULL DEFAULT now())""")
    conn.execute(index_definition(table, vector_type))


class VersionRegistry:
    """Reads and changes `embedding_versions` through connections from `connect()`."""

    def __init__(self, database_url: str):
        self.database_url = database_url

    @contextmanager
    def _transaction(self, *, rollout_state: bool = False) -> Iterator[psycopg.Connection]:
        """The registry locked; with `rollout_state`, the rollout's state row first (the order a rollout's
        start takes them in, so the two never wait on each other)."""
        with psycopg.connect(self.database_url, row_factory=dict_row) as conn, conn.transaction():
            if rollout_state:
                conn.execute("INSERT INTO rollout_state (id) VALUES (1) ON CONFLICT (id) DO NOTHING")
                conn.execute("SELECT 1 FROM rollout_state WHERE id = 1 FOR UPDATE")
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_LOCK,))
            yield conn

    def versions(self) -> list[EmbeddingVersion]:
        with psycopg.connect(self.database_url, row_factory=dict_row) as conn:
            return all_versions(conn)

    def get(self, name: str) -> EmbeddingVersion:
        with psycopg.connect(self.database_url, row_factory=dict_row) as conn:
            return _require(conn, name)

    def add(self, name: str, provider_name: str, dimensions: int, *, model: str | None = None,
            halfvec: bool = False, notes: str = "",
            check: Callable[[VersionSettings], object] | None = None) -> EmbeddingVersion:
        """Register a version and create its table and HNSW index, all in one transaction.

        `check` sees the new version's set-up before anything is written and raises to refuse it
        (`rollout versions add` builds its embedder: the provider refuses what it cannot embed)."""
        check_name(name)
        kind = provider(provider_name)
        vector_type = "halfvec" if halfvec else "vector"
        limit = MAX_DIMENSIONS[vector_type]
        if not 1 <= dimensions <= limit:
            hint = " (use --halfvec up to 4000)" if vector_type == "vector" and dimensions <= 4000 else ""
            raise VersionError(f"{dimensions} dimensions: a {vector_type} column takes 1 to {limit}{hint}")
        version = EmbeddingVersion(name=name, provider=kind.name, model=model or kind.model_for(name),
                                   dimensions=dimensions, vector_type=vector_type, table_name=table_for(name),
                                   status="ready", notes=notes)
        if check is not None:  # e.g. the provider refuses what it cannot embed (a model's native size...)
            check(version.settings)
        with self._transaction() as conn:
            existing = _find(conn, name)
            if existing is not None:
                raise VersionError(f"version {name} already exists ({existing.status})")
            taken = conn.execute("SELECT name FROM embedding_versions WHERE table_name = %s",
                                 (version.table_name,)).fetchone()
            if taken or conn.execute("SELECT to_regclass(%s) AS t", (version.table_name,)).fetchone()["t"]:
                raise VersionError(f"table {version.table_name} is already in use; choose another name")
            table = version.table_name
            create_table(conn, table, vector_type, dimensions)
            row = conn.execute(f"INSERT INTO embedding_versions (name, provider, model, dimensions, vector_type, "
                               f"table_name, status, notes) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                               f"RETURNING {_COLUMNS}",
                               (name, version.provider, version.model, dimensions, vector_type, table,
                                "ready", notes)).fetchone()
        return EmbeddingVersion(**row)

    def promote(self, name: str) -> EmbeddingVersion:
        """The candidate of a complete rollout becomes the baseline; the old baseline turns read-only.

        The rollout's state and flags stay (complete, 100 %): with no candidate every user is on
        the new baseline, and gateways still holding the old pair route the same way meanwhile.
        The next `rollout stage start` begins from there.
        """
        with self._transaction(rollout_state=True) as conn:
            version = _require(conn, name)
            if version.status == "baseline":
                raise VersionError(f"{name} is already the baseline")
            if version.status != "candidate":
                raise VersionError(f"{name} is not the candidate ({version.status}); only a rollout's "
                                   "candidate can be promoted")
            state = conn.execute("SELECT percentage, status FROM rollout_state WHERE id = 1").fetchone()
            if state["status"] != "complete" or state["percentage"] < 100:
                where = f"{state['percentage']:g} %, {state['status']}"
                raise VersionError(f"{name} is not complete ({where}); promote a candidate at 100 %, complete")
            conn.execute("UPDATE embedding_versions SET status = 'read_only' WHERE status = 'baseline'")
            conn.execute("UPDATE embedding_versions SET status = 'baseline' WHERE name = %s", (name,))
            return _require(conn, name)

    def retire(self, name: str) -> EmbeddingVersion:
        """No longer written (dual-write) nor served; its table stays until `drop`."""
        with self._transaction() as conn:
            version = _require(conn, name)
            if version.status in ("baseline", "candidate"):
                raise VersionError(f"{name} is the {version.status}; it cannot be retired")
            if version.status == "retired":
                raise VersionError(f"{name} is already retired")
            conn.execute("UPDATE embedding_versions SET status = 'retired', retired_at = now() WHERE name = %s",
                         (name,))
            return _require(conn, name)

    def drop(self, name: str, *, force: bool = False) -> EmbeddingVersion:
        """Drop the version's table and its migration bookkeeping; the query log keeps its history."""
        with self._transaction() as conn:
            version = _require(conn, name)
            if not force:
                if version.status in ("baseline", "candidate"):
                    raise VersionError(f"{name} is the {version.status}; --force drops it anyway")
                served = conn.execute(
                    "SELECT max(logged_at) AS last FROM query_log WHERE logged_at > now() - make_interval(secs => %s) "
                    "AND (served_version = %s OR routed_version = %s)",
                    (RECENT_TRAFFIC_S, name, name)).fetchone()["last"]
                if served is not None:
                    raise VersionError(f"{name} served traffic at {served.isoformat()} (within 24 h); "
                                       "--force drops it anyway")
            conn.execute(f"DROP TABLE IF EXISTS {version.table_name}")
            for table in ("embedding_migrations", "embedding_migration_status", "embedding_queue",
                          "embedding_failures", "embedding_index_rebuilds"):
                conn.execute(f"DELETE FROM {table} WHERE version = %s", (name,))
            conn.execute("DELETE FROM embedding_versions WHERE name = %s", (name,))
            return version


def set_candidate(conn: psycopg.Connection, baseline: str, candidate: str) -> None:
    """Make `candidate` the one rolled out against `baseline`, in the caller's transaction (a rollout's
    start commits it with the rollout's state)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_LOCK,))
    if baseline == candidate:
        raise VersionError("the baseline and the candidate must be two different versions")
    base, cand = _require(conn, baseline), _require(conn, candidate)
    if base.status != "baseline":
        raise VersionError(f"{baseline} is not the baseline ({base.status}); a rollout starts from the baseline")
    if cand.status not in ("ready", "candidate"):
        raise VersionError(f"{candidate} cannot be a candidate: it is {cand.status}")
    conn.execute("UPDATE embedding_versions SET status = 'ready' WHERE status = 'candidate' AND name <> %s",
                 (candidate,))
    conn.execute("UPDATE embedding_versions SET status = 'candidate' WHERE name = %s", (candidate,))


def all_versions(conn: psycopg.Connection) -> list[EmbeddingVersion]:
    """Every registered version, the baseline first, then the candidate, then by creation."""
    cursor = conn.cursor(row_factory=dict_row)
    rows = cursor.execute(f"SELECT {_COLUMNS} FROM embedding_versions ORDER BY "
                          "array_position(%s::text[], status), created_at, name", (list(STATUSES),)).fetchall()
    return [EmbeddingVersion(**row) for row in rows]


def roles_of(versions: list[EmbeddingVersion]) -> Roles | None:
    """The baseline and the candidate among `versions`; None without a baseline (a registry not set up)."""
    by_status = {v.status: v.name for v in versions if v.status in ("baseline", "candidate")}
    if "baseline" not in by_status:
        return None
    return Roles(by_status["baseline"], by_status.get("candidate"))


def serving(versions: list[EmbeddingVersion]) -> list[EmbeddingVersion]:
    """The versions a gateway can search: all but the retired."""
    return [v for v in versions if v.status != "retired"]


def _find(conn: psycopg.Connection, name: str) -> EmbeddingVersion | None:
    cursor = conn.cursor(row_factory=dict_row)
    row = cursor.execute(f"SELECT {_COLUMNS} FROM embedding_versions WHERE name = %s", (name,)).fetchone()
    return EmbeddingVersion(**row) if row else None


def _require(conn: psycopg.Connection, name: str) -> EmbeddingVersion:
    version = _find(conn, check_name(name))
    if version is None:
        raise UnknownVersion(f"no version named {name}; `rollout versions list` shows them")
    return version
