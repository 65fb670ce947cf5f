"""The PostgreSQL backend's own concerns: migrating once among replicas, errors that never show
the URL's password, and PostgreSQL's errors as StoreError kinds."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from gateway.config import StorageSettings
from gateway.storage.location import is_postgres_url, redacted
from gateway.storage.migrations import load_migrations
from gateway.storage.postgres import open_postgres
from gateway.storage.postgres.database import PgDatabase, dialect, fault_kind
from gateway.storage.postgres.migrate import postgres_migrations
from gateway.storage.types import StorageError
from tests.postgres_server import free_port


async def test_replicas_starting_at_once_apply_each_migration_exactly_once(
    postgres_url: str,
) -> None:
    settings = StorageSettings(database=postgres_url)
    opened = await asyncio.gather(*(PgDatabase.open(settings) for _ in range(5)))
    try:
        applied = sorted(database.applied_migrations for database in opened)
    finally:
        await asyncio.gather(*(database.close() for database in opened))
    shipped = load_migrations(postgres_migrations())
    assert len(shipped) > 1
    assert applied == [[], [], [], [], [m.name for m in shipped]]
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY 1").fetchall()
    assert rows == [(m.version, m.name) for m in shipped]


async def test_a_reopened_database_applies_nothing(postgres_url: str) -> None:
    settings = StorageSettings(database=postgres_url)
    await (await open_postgres(settings)).close()
    again = await open_postgres(settings)
    await again.close()
    assert again.applied_migrations == []


async def test_an_unreachable_server_is_a_storage_error_without_the_password() -> None:
    url = f"postgresql://gateway:s3cret-pw@127.0.0.1:{free_port()}/gw"
    with pytest.raises(StorageError) as raised:
        await open_postgres(StorageSettings(database=url))
    message = str(raised.value)
    assert message.startswith(
        f"Cannot connect to database postgresql://gateway:***@127.0.0.1:{url.split(':')[3]}"
    )
    assert "s3cret-pw" not in message
    assert "refused" in message.lower()


def test_urls_are_shown_without_password_or_query() -> None:
    assert redacted("postgresql://u:pw@db.internal:5432/gw?sslmode=require&password=x") == (
        "postgresql://u:***@db.internal:5432/gw?***"
    )
    assert redacted("postgresql://u@db/gw") == "postgresql://u@db/gw"
    assert redacted("postgres://db/gw") == "postgres://db/gw"
    assert is_postgres_url("postgresql://db/gw")
    assert is_postgres_url("postgres://db/gw")
    assert not is_postgres_url("/var/lib/gateway/gw.db")
    assert not is_postgres_url("postgresql.db")


def test_queries_are_written_once_for_both_backends() -> None:
    assert dialect("SELECT ? WHERE x LIKE '5%'") == b"SELECT %s WHERE x LIKE '5%%'"


@pytest.mark.parametrize(
    ("sqlstate", "kind"),
    [
        ("25006", "read-only"),
        ("53100", "disk-full"),
        ("53300", "busy"),
        ("58030", "io"),
        ("XX001", "corrupt"),
        ("40P01", "busy"),
        ("55P03", "busy"),
        ("57P01", "cannot-open"),
        ("08006", "cannot-open"),
        ("23505", "other"),
    ],
)
def test_postgresql_errors_are_reported_by_kind(sqlstate: str, kind: str) -> None:
    error = psycopg.errors.lookup(sqlstate)("")
    assert fault_kind(error) == kind
