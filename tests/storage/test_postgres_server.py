"""The suite's own PostgreSQL server: started with no manual step, one empty database per test."""

from __future__ import annotations

import psycopg
import pytest

from tests.postgres_server import PostgresServer, PostgresUnavailable, find_bindir


@pytest.mark.parametrize("attempt", [1, 2])
def test_each_test_gets_an_empty_database_of_its_own(postgres_url: str, attempt: int) -> None:
    # Each run leaves a table behind: the second finds none only if it has a database of its own.
    with psycopg.connect(postgres_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        conn.execute("CREATE TABLE left_behind (id int)")
    assert tables == (0,)


def test_missing_binaries_name_the_command_that_installs_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("glob.glob", lambda pattern: [])
    with pytest.raises(PostgresUnavailable) as raised:
        find_bindir()
    assert str(raised.value) == (
        "PostgreSQL's server binaries (initdb, pg_ctl) are not installed; "
        "run: apt-get install -y postgresql"
    )


def test_the_server_is_stopped_and_its_files_removed() -> None:
    server = PostgresServer.create()
    server.start()
    with psycopg.connect(server.url(), autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    server.stop()
    assert not server.root.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.url(), connect_timeout=2)
