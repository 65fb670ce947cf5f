"""A throwaway PostgreSQL server for the tests: its own cluster, port and socket, gone at the end.

The suite starts it itself, with no manual step. It needs PostgreSQL's server binaries (initdb,
pg_ctl); where none are found, starting fails with the one command that installs them, so a
suite that needs PostgreSQL is never skipped in silence. initdb and pg_ctl refuse to run as
root: as root, the cluster is made and run as the `postgres` user, in a directory it owns.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from gateway.config import StorageSettings
from gateway.storage.postgres import open_postgres
from gateway.storage.protocols import Storage

INSTALL = "apt-get install -y postgresql"
SUPERUSER = "gateway"
# Settings for a test server: no fsync (the machine does not crash under a test, so data
# written to the kernel survives the server's own crash), no full-page images.
SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1",
    "-c fsync=off",
    "-c full_page_writes=off",
    "-c max_connections=300",
)
# And, where no test crashes the server, commits that do not wait for their WAL write.
FAST_COMMITS = "-c synchronous_commit=off"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's server binaries cannot be found, or the server did not start."""


def find_bindir() -> Path:
    """The directory holding initdb and pg_ctl: pg_config's, else the newest Debian install."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if found.returncode == 0:
            candidates.append(found.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for bindir in candidates:
        if (Path(bindir) / "initdb").exists() and (Path(bindir) / "pg_ctl").exists():
            return Path(bindir)
    raise PostgresUnavailable(
        f"PostgreSQL's server binaries (initdb, pg_ctl) are not installed; run: {INSTALL}"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    """One cluster: `start()` it, hand `url(name)` to the code under test, `stop()` it.
    `halt()` and `start()` again take it down and bring it back, data and port kept."""

    bindir: Path
    root: Path
    port: int
    durable: bool  # every commit survives the server's crash (halt)

    @classmethod
    def create(cls, *, durable: bool = False) -> PostgresServer:
        root = Path(tempfile.mkdtemp(prefix="gateway-pg-"))
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(root, user.pw_uid, user.pw_gid)
        return cls(find_bindir(), root, free_port(), durable)

    def start(self) -> None:
        """Make the cluster (the first time), and start the server."""
        data = self.root / "data"
        if not data.exists():
            self._run(
                "initdb", "-D", str(data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                "--locale=C", "--no-sync",
            )  # fmt: skip
        fast = () if self.durable else (FAST_COMMITS,)
        options = " ".join((f"-p {self.port}", f"-k {self.root}", *SERVER_OPTIONS, *fast))
        self._run(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(data), "-o", options,
            "-l", str(self.root / "server.log"),
        )  # fmt: skip

    def halt(self) -> None:
        """Stop the server as a crash would (every connection cut), keeping its data."""
        self._run("pg_ctl", "stop", "-m", "immediate", "-D", str(self.root / "data"))

    def stop(self) -> None:
        """Stop the server and remove its files."""
        try:
            self.halt()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _run(self, program: str, *args: str) -> None:
        command: Sequence[str] = [str(self.bindir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.root)
        if done.returncode != 0:
            said = done.stderr.strip() or done.stdout.strip()
            raise PostgresUnavailable(f"{program} failed ({done.returncode}): {said}\n{self.log()}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One server for the whole session, started on first use."""
    server = PostgresServer.create()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a new, empty database on the session's server, one per test."""
    name = f"test_{next(_databases)}"
    with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return postgres_server.url(name)


_databases = itertools.count()


@pytest.fixture
async def postgres_storage(postgres_url: str) -> AsyncIterator[Storage]:
    """The PostgreSQL backend, opened (and migrated) on the test's own database."""
    opened = await open_postgres(StorageSettings(database=postgres_url))
    yield opened
    await opened.close()
