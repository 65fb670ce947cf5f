"""Schema migrations on real SQLite files, the SQL splitter, and the migrations inside the wheel."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import zipfile
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.config import StorageSettings
from gateway.storage.migrations import Migration, MigrationError, load_migrations
from gateway.storage.sqlite.database import Connection, Database
from gateway.storage.sqlite.migrate import apply_migrations, sqlite_migrations
from gateway.storage.types import StorageError
from tests.cli_support import APPLIED_ALL, MIGRATION_FILES, MIGRATIONS, REPO, query

TABLES = [
    "app_keys",
    "billing_calls",
    "cache_purges",
    "create_recordings",
    "final_answers",
    "retired_keys",
    "run_access",
    "run_inputs",
    "schema_migrations",
    "sqlite_sequence",
]

Snapshot = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]


def tables(path: Path) -> list[str]:
    return [row[0] for row in query(path, "SELECT name FROM sqlite_master WHERE type = 'table'")]


def columns(path: Path, table: str) -> list[tuple[Any, ...]]:
    """(name, type, notnull, pk) of each column."""
    return [(r[1], r[2], r[3], r[5]) for r in query(path, f"PRAGMA table_info({table})")]


def snapshot(path: Path) -> Snapshot:
    return (
        query(path, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name"),
        query(path, "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"),
    )


def storage(path: Path) -> StorageSettings:
    return StorageSettings(database=str(path))


async def test_open_on_an_empty_file_creates_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    path.touch()
    before = datetime.now(UTC)

    db = await Database.open(storage(path))
    await db.close()

    after = datetime.now(UTC)
    assert sorted(tables(path)) == TABLES
    assert columns(path, "run_inputs") == [
        ("run_id", "TEXT", 0, 1),
        ("body", "BLOB", 1, 0),
        ("size", "INTEGER", 1, 0),
        ("stored_at", "TEXT", 1, 0),
    ]
    assert columns(path, "app_keys") == [
        ("name", "TEXT", 0, 1),
        ("key_hash", "TEXT", 1, 0),
        ("prefix", "TEXT", 1, 0),
        ("created_at", "TEXT", 1, 0),
        ("last_used_at", "TEXT", 0, 0),
        ("revoked_at", "TEXT", 0, 0),
        ("allow", "TEXT", 0, 0),
        ("rate", "REAL", 0, 0),
        ("burst", "INTEGER", 0, 0),
        ("expires_at", "TEXT", 0, 0),
        ("max_open", "INTEGER", 0, 0),
        ("replay", "TEXT", 1, 0),
        ("budget_usd", "REAL", 0, 0),
        ("budget_per", "TEXT", 0, 0),
    ]
    rows = query(path, "SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
    assert MIGRATION_FILES[0] == "0001_initial.sql"
    assert [(v, n) for v, n, _ in rows] == [(int(n[:4]), n) for n in MIGRATION_FILES]
    for _, _, applied_at in rows:
        stamp = datetime.fromisoformat(applied_at)
        assert stamp.utcoffset() == timedelta(0)
        assert before <= stamp <= after
    assert columns(path, "retired_keys") == [
        ("key_hash", "TEXT", 1, 1),
        ("app", "TEXT", 1, 0),
        ("prefix", "TEXT", 1, 0),
        ("created_at", "TEXT", 1, 0),
        ("retires_at", "TEXT", 1, 0),
    ]
    assert columns(path, "cache_purges") == [
        ("seq", "INTEGER", 0, 1),
        ("run_ids", "TEXT", 0, 0),
        ("purged_at", "TEXT", 1, 0),
    ]
    assert query(path, "PRAGMA journal_mode") == [("wal",)]


async def test_second_apply_applies_nothing_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    conn = await Connection.open(storage(path), "migrations")
    try:
        assert await conn.run(apply_migrations) == MIGRATION_FILES
        first = snapshot(path)
        assert await conn.run(apply_migrations) == []
    finally:
        await conn.close()
    assert snapshot(path) == first

    db = await Database.open(storage(path))
    await db.close()
    assert snapshot(path) == first
    assert len(first[1]) == len(MIGRATION_FILES)


async def test_a_migration_failing_midway_leaves_nothing_applied(tmp_path: Path) -> None:
    # apply_migrations always reads the packaged migrations, so the failure is provoked with a
    # table that 0001's second statement (CREATE TABLE app_keys) collides with; its first
    # statement (CREATE TABLE run_inputs) has run by then and must be rolled back.
    path = tmp_path / "gw.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE app_keys (unrelated TEXT)")
        conn.commit()

    with pytest.raises(StorageError, match=r"table app_keys already exists\.$"):
        await Database.open(storage(path))

    assert sorted(tables(path)) == ["app_keys", "schema_migrations"]
    assert columns(path, "app_keys") == [("unrelated", "TEXT", 0, 0)]
    assert query(path, "SELECT * FROM schema_migrations") == []

    with closing(sqlite3.connect(path)) as conn:
        conn.execute("DROP TABLE app_keys")
        conn.commit()
    db = await Database.open(storage(path))
    await db.close()
    assert sorted(tables(path)) == TABLES
    assert [row[0] for row in query(path, "SELECT name FROM schema_migrations")] == MIGRATION_FILES


def test_a_failing_migration_leaves_nothing_of_itself(tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_good.sql").write_text(
        "CREATE TABLE a (x); CREATE TABLE b (y);  /* two on one line */\n", "utf-8"
    )
    (migrations / "0002_bad.sql").write_text(
        "CREATE TABLE c (z);\n-- the next one fails\nINSERT INTO missing VALUES (1);\n", "utf-8"
    )
    path = tmp_path / "gw.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        with pytest.raises(sqlite3.OperationalError, match=r"^no such table: missing$"):
            apply_migrations(conn, migrations)
        assert not conn.in_transaction

    assert sorted(tables(path)) == ["a", "b", "schema_migrations"]
    assert [row[0] for row in query(path, "SELECT name FROM schema_migrations")] == [
        "0001_good.sql"
    ]


def test_a_migration_recorded_by_another_process_is_skipped(tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_only.sql").write_text("CREATE TABLE a (x);\n", "utf-8")
    path = tmp_path / "gw.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        assert apply_migrations(conn, migrations) == ["0001_only.sql"]
        assert apply_migrations(conn, migrations) == []
    assert query(path, "SELECT version, name FROM schema_migrations") == [(1, "0001_only.sql")]


def test_load_migrations_finds_numbered_files_in_order(tmp_path: Path) -> None:
    (tmp_path / "0010_tenth.sql").write_text("CREATE TABLE ten (x);\n", "utf-8")
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE one (x);\n", "utf-8")
    (tmp_path / "0002_second_step.sql").write_text("CREATE TABLE two (x);\n", "utf-8")
    for ignored in ["README.md", "0004_x.sql.bak"]:
        (tmp_path / ignored).write_text("not a migration", "utf-8")

    assert load_migrations(tmp_path) == [
        Migration(1, "0001_first.sql", "CREATE TABLE one (x);\n"),
        Migration(2, "0002_second_step.sql", "CREATE TABLE two (x);\n"),
        Migration(10, "0010_tenth.sql", "CREATE TABLE ten (x);\n"),
    ]


def test_load_migrations_rejects_a_shared_version(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;\n", "utf-8")
    (tmp_path / "0001_b.sql").write_text("SELECT 2;\n", "utf-8")
    with pytest.raises(MigrationError, match=r"^Two migrations share a version number: \[1, 1\]$"):
        load_migrations(tmp_path)


@pytest.mark.parametrize("name", ["0003-dash.sql", "3_short.sql", "0005_.sql", "0006_Caps.sql"])
def test_load_migrations_rejects_a_misnamed_sql_file(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("SELECT 1;\n", "utf-8")
    with pytest.raises(MigrationError, match=rf"^Migration file '{re.escape(name)}' is not named"):
        load_migrations(tmp_path)


def test_load_migrations_defaults_to_the_repository_files() -> None:
    assert [(m.name, m.sql) for m in load_migrations(sqlite_migrations())] == [
        (name, (MIGRATIONS / name).read_text("utf-8")) for name in MIGRATION_FILES
    ]


def run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("PARALLEL_GATEWAY_CONFIG", "PYTHONPATH")
    }
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.timeout(300)
def test_wheel_ships_the_migrations_and_migrates_outside_the_repository(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = run(
        sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, REPO, cwd=tmp_path
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = {
            n: zf.read(n) for n in zf.namelist() if n.startswith("gateway/migrations/sqlite/")
        }
        postgresql = [n for n in zf.namelist() if n.startswith("gateway/migrations/postgresql/")]
    assert "gateway/migrations/sqlite/0001_initial.sql" in shipped
    assert shipped == {
        f"gateway/migrations/sqlite/{name}": (MIGRATIONS / name).read_bytes()
        for name in MIGRATION_FILES
    }
    assert "gateway/migrations/postgresql/0001_initial.sql" in postgresql

    venv = tmp_path / "venv"
    made = run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    installed = run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    where = run(
        venv / "bin" / "python",
        "-c",
        "import gateway.storage.sqlite.migrate as m; print(m.sqlite_migrations())",
        cwd=tmp_path,
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).resolve().is_relative_to(venv.resolve())

    database = tmp_path / "data" / "gw.db"
    config = tmp_path / "gateway.toml"
    config.write_text(f'[storage]\ndatabase = "{database}"\n', "utf-8")
    migrate = (venv / "bin" / "parallel-gateway", "migrate", "--config", config)

    first = run(*migrate, cwd=tmp_path)
    assert (first.returncode, first.stderr) == (0, "")
    latest = f"Database {database} is at the latest schema.\n"
    assert first.stdout == APPLIED_ALL + latest
    assert sorted(tables(database)) == TABLES
    applied = snapshot(database)
    assert [row[1] for row in applied[1]] == MIGRATION_FILES

    second = run(*migrate, cwd=tmp_path)
    assert (second.returncode, second.stdout, second.stderr) == (0, latest, "")
    assert snapshot(database) == applied


def test_final_answers_keep_their_rows_when_events_become_a_kind(tmp_path: Path) -> None:
    before = tmp_path / "before"
    before.mkdir()
    for migration in load_migrations(MIGRATIONS):
        if migration.version < 10:
            (before / migration.name).write_text(migration.sql, "utf-8")
    path = tmp_path / "gw.db"
    row = ("trun_a", "result", "b-1", b"{\x00\xff}", 4, "2026-01-02T03:04:05.000006Z")
    insert = "INSERT INTO final_answers VALUES (?, ?, ?, ?, ?, ?)"
    events = ("trun_a", "events", "", b"data: {}\n\n", 10, "2026-01-02T03:04:05.000006Z")
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        apply_migrations(conn, before)
        conn.execute(insert, row)
        with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
            conn.execute(insert, events)
        assert apply_migrations(conn, MIGRATIONS) == ["0010_final_events.sql"]
        conn.execute(insert, events)
    assert query(path, "SELECT * FROM final_answers ORDER BY kind") == [events, row]
    assert columns(path, "final_answers")[0] == ("run_id", "TEXT", 1, 1)
