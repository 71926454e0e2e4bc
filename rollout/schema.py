"""Schema migrations: the numbered files in `rollout/sql/`, applied in order, once each.

Each file runs in its own transaction and is recorded in `schema_migrations` with
a checksum; a session advisory lock keeps two processes from racing. Files may use
`{{v1_dimensions}}`, `{{v1_provider}}`, `{{v1_model}}` (and the same for v2), filled in
from the settings: the two versions the schema started with. Those settings only seed the
registry (`embedding_versions`): once registered, v1 and v2 embed as their rows say, like
every version added since.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from rollout.config import VERSIONS, Settings
from rollout.errors import SchemaError

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parent / "sql"  # package data: a wheel carries it
_LOCK_KEY = 0x726F6C6C  # "roll": one advisory lock id for schema changes
_FILE_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z0-9_]+)\s*\}\}")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def render(self, values: dict[str, object]) -> str:
        def fill(match: re.Match) -> str:
            key = match.group(1)
            if key not in values:
                raise SchemaError(f"{self.path.name}: unknown placeholder {{{{{key}}}}}")
            return str(values[key])
        return _PLACEHOLDER.sub(fill, self.path.read_text())


def migrations(folder: Path = SQL_DIR) -> list[Migration]:
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise SchemaError(f"{path.name}: schema files are named NNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise SchemaError("two schema files share a number in sql/")
    return found


def _placeholders(settings: Settings) -> dict[str, object]:
    values: dict[str, object] = {}
    for name in VERSIONS:
        version = settings.version(name)
        values[f"{name}_dimensions"] = version.dimensions
        values[f"{name}_provider"] = _literal(version.embedder)
        values[f"{name}_model"] = _literal(version.model)
    return values


def _literal(text: str) -> str:
    """A SQL string literal (standard_conforming_strings: only quotes need doubling)."""
    return "'" + text.replace("'", "''") + "'"


def upgrade(database_url: str, settings: Settings, folder: Path = SQL_DIR) -> list[str]:
    """Apply what is missing; return the names applied (empty when up to date)."""
    applied_now = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                                version int PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                                applied_at timestamptz NOT NULL DEFAULT now())""")
            done = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
            for migration in migrations(folder):
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise SchemaError(
                            f"sql/{migration.path.name} was changed after it was applied; "
                            "add a new numbered file instead of editing an applied one")
                    continue
                sql = migration.render(_placeholders(settings))
                try:
                    with conn.transaction():
                        conn.execute(sql)
                        conn.execute("INSERT INTO schema_migrations (version, name, checksum) "
                                     "VALUES (%s, %s, %s)",
                                     (migration.version, migration.name, migration.checksum))
                except psycopg.Error as exc:
                    raise SchemaError(f"sql/{migration.path.name} failed: {exc}".strip()) from None
                applied_now.append(migration.path.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def pending(conn: psycopg.Connection, folder: Path = SQL_DIR) -> list[str]:
    """Schema files not yet applied on this database."""
    try:
        rows = conn.execute("SELECT version FROM schema_migrations").fetchall()
    except psycopg.errors.UndefinedTable:
        conn.rollback()
        rows = []
    done = {row[0] for row in rows}
    return [m.path.name for m in migrations(folder) if m.version not in done]


def table_dimensions(conn: psycopg.Connection, table: str) -> int | None:
    """The declared dimension of `table.embedding` (pgvector keeps it in atttypmod)."""
    row = conn.execute("""SELECT a.atttypmod FROM pg_attribute a
                          WHERE a.attrelid = to_regclass(%s) AND a.attname = 'embedding'""",
                       (table,)).fetchone()
    return row[0] if row else None


def check(conn: psycopg.Connection, settings: Settings) -> None:
    """Raise SchemaError when the schema is behind or a version's table disagrees with the registry."""
    missing = pending(conn)
    if missing and len(missing) == len(migrations()):
        raise SchemaError("this database holds no rollout schema: run `rollout db upgrade` "
                          "(or `rollout demo` for a local one)")
    if missing:
        raise SchemaError(f"the database schema is behind ({', '.join(missing)} not applied): "
                          "run `rollout db upgrade`")
    rows = conn.execute("SELECT name, provider, model, dimensions, table_name FROM embedding_versions "
                        "WHERE status <> 'retired' ORDER BY name").fetchall()
    for name, provider, model, dimensions, table in rows:
        declared = table_dimensions(conn, table)
        seed = settings.version(name) if name in VERSIONS else None
        if seed is not None and seed.table == table:
            # V1_*/V2_* only seeded these rows; the row is what runs. A dimension asked for that the table
            # cannot hold is refused (it would look like a change); a provider or model, named in the log.
            if seed.dimensions != declared:
                raise SchemaError(
                    f"{table}.embedding holds vector({declared}) but {name.upper()}_DIMENSIONS={seed.dimensions} "
                    f"({seed.model}); {name.upper()}_* only seed a new database's registry: use the dimension "
                    "the table was created with, or register a new version (`rollout versions add`)")
            if (seed.embedder, seed.model) != (provider, model):
                log.warning("%s_EMBEDDER/%s_MODEL (%s/%s) differ from version %s's registry row (%s/%s), which is "
                            "used: they only seed a new database; register a new version to change models",
                            name.upper(), name.upper(), seed.embedder, seed.model, name, provider, model)
        if declared != dimensions:
            raise SchemaError(
                f"{table}.embedding holds {declared} dimensions but version {name} ({model}) is registered "
                f"with {dimensions}; register a new version (`rollout versions add`) rather than alter a table")
