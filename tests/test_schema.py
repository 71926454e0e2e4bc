"""Schema files: applied once each, in order, under a lock; drift and dimension mismatches refused."""

import fnmatch
import shutil
import threading
import tomllib
from pathlib import Path

import psycopg
import pytest

from rollout import schema
from rollout.config import Settings
from rollout.errors import SchemaError


def settings(**env):
    return Settings.from_environ(env)


def applied_versions(url):
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def test_schema_files_ship_inside_the_package():
    """A wheel (not only an editable install) must carry the schema: it is package data of `rollout`."""
    package = Path(schema.__file__).parent
    pyproject = tomllib.loads((package.parent / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["rollout"]
    files = [m.path for m in schema.migrations()]
    assert files and all(path.parent.parent == package for path in files)
    for path in files:
        relative = path.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative


def test_upgrade_applies_everything_once(fresh_database):
    first = schema.upgrade(fresh_database, settings())
    assert first == [m.path.name for m in schema.migrations()]
    assert schema.upgrade(fresh_database, settings()) == []
    assert applied_versions(fresh_database) == [m.version for m in schema.migrations()]
    with psycopg.connect(fresh_database) as conn:
        schema.check(conn, settings())
        assert schema.table_dimensions(conn, "doc_embeddings_v1") == 1536
        assert schema.table_dimensions(conn, "doc_embeddings_v2") == 768


def test_concurrent_upgrades_do_not_race(fresh_database):
    results, errors = [], []

    def run():
        try:
            results.append(schema.upgrade(fresh_database, settings()))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(len(r) for r in results) == [0, 0, 0, len(schema.migrations())]


def test_dimensions_come_from_the_settings_and_are_registered(fresh_database):
    schema.upgrade(fresh_database, settings(V2_DIMENSIONS="512", V2_MODEL="model-o'brien"))
    with psycopg.connect(fresh_database) as conn:
        assert schema.table_dimensions(conn, "doc_embeddings_v2") == 512
        assert conn.execute("SELECT dimensions, model, status FROM embedding_versions WHERE name = 'v2'"
                            ).fetchone() == (512, "model-o'brien", "candidate")
        schema.check(conn, settings(V2_DIMENSIONS="512"))
        with pytest.raises(SchemaError, match=r"vector\(512\) but V2_DIMENSIONS=768"):
            schema.check(conn, settings())
        conn.execute("UPDATE embedding_versions SET dimensions = 640 WHERE name = 'v2'")
        with pytest.raises(SchemaError, match="holds 512 dimensions but version v2 .* registered with 640"):
            schema.check(conn, settings(V2_DIMENSIONS="512"))


def test_a_behind_schema_is_named(fresh_database):
    with psycopg.connect(fresh_database) as conn:
        with pytest.raises(SchemaError, match="rollout db upgrade"):
            schema.check(conn, settings())


def test_an_edited_applied_file_is_refused(fresh_database, tmp_path):
    folder = tmp_path / "sql"
    shutil.copytree(schema.SQL_DIR, folder)
    schema.upgrade(fresh_database, settings(), folder)
    first = sorted(folder.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(SchemaError, match="changed after it was applied"):
        schema.upgrade(fresh_database, settings(), folder)


def test_a_failing_file_leaves_nothing_half_applied(fresh_database, tmp_path):
    folder = tmp_path / "sql"
    shutil.copytree(schema.SQL_DIR, folder)
    (folder / "900_broken.sql").write_text("CREATE TABLE half_made (id int);\nSELECT no_such_function();\n")
    with pytest.raises(SchemaError, match="900_broken.sql failed"):
        schema.upgrade(fresh_database, settings(), folder)
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT to_regclass('half_made')").fetchone()[0] is None
    assert 900 not in applied_versions(fresh_database)


def test_badly_named_files_are_refused(tmp_path):
    (tmp_path / "1_short.sql").write_text("SELECT 1;")
    with pytest.raises(SchemaError, match="NNN_name.sql"):
        schema.migrations(tmp_path)
