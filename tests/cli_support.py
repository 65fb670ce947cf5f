"""Running the parallel-gateway command as a real subprocess against SQLite files in tmp_path."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AnyStr, Generic

from gateway.config import StorageSettings
from gateway.storage.types import StoredAnswer, StoredInput
from tests.storage_support import opened_storage

REPO = Path(__file__).resolve().parent.parent
MIGRATIONS = REPO / "migrations" / "sqlite"
MIGRATION_FILES = sorted(p.name for p in MIGRATIONS.glob("*.sql"))
APPLIED_ALL = "".join(f"Applied {name}\n" for name in MIGRATION_FILES)

CONFIG_ENV = "PARALLEL_GATEWAY_CONFIG"
MODULE = (sys.executable, "-m", "gateway")
ROWS = "SELECT run_id, body, size, stored_at FROM run_inputs ORDER BY run_id"
KEY_LINE = re.compile(r"pgw_[A-Za-z0-9_-]{43}\n")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Result(Generic[AnyStr]):
    code: int
    out: AnyStr
    err: str


def clean_env() -> dict[str, str]:
    """The caller's environment without its PARALLEL_ variables (config path, team key...)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PARALLEL")}


def cli(
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    command: Sequence[str] = MODULE,
    stdin: bytes = b"",
) -> Result[bytes]:
    """Run the CLI with `clean_env()` plus `env`; stdout as the bytes written."""
    proc = subprocess.run(
        [*command, *args],
        cwd=cwd,
        env={**clean_env(), **(env or {})},
        input=stdin,
        capture_output=True,
        timeout=30,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr.decode())


def cli_text(
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    command: Sequence[str] = MODULE,
) -> Result[str]:
    """`cli`, with stdout decoded."""
    result = cli(*args, cwd=cwd, env=env, command=command)
    return Result(result.code, result.out.decode(), result.err)


DATABASE_LINE = re.compile(r"Database: (/|postgresql://)[^\n]*\n")  # a path, or a URL


def without_database_line(err: str) -> str:
    """stderr less the first line, where it says which database a command writes."""
    said = DATABASE_LINE.match(err)
    return err[said.end() :] if said else err


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return [tuple(row) for row in conn.execute(sql)]


@dataclass(frozen=True)
class Workspace:
    dir: Path
    config: Path
    database: Path

    def run(self, *args: str, stdin: bytes = b"") -> Result[bytes]:
        """The command's result, less the `Database:` line a command that writes says first
        (tests/cli/test_cli.py checks that line, for every command)."""
        result = cli(*args, "--config", str(self.config), cwd=self.dir, stdin=stdin)
        return dataclasses.replace(result, err=without_database_line(result.err))

    def run_text(self, *args: str) -> Result[str]:
        result = cli_text(*args, "--config", str(self.config), cwd=self.dir)
        return dataclasses.replace(result, err=without_database_line(result.err))

    def ok(self, *args: str) -> Result[str]:
        """A command that must succeed."""
        result = self.run_text(*args)
        assert result.code == 0, result.err
        return result

    def refused(self, *args: str) -> str:
        """The one-line error of a command that must fail with exit code 1 and no output."""
        result = self.run_text(*args)
        assert (result.code, result.out) == (1, ""), result
        assert result.err.startswith("parallel-gateway: ")
        assert result.err.count("\n") == 1
        return result.err.removeprefix("parallel-gateway: ").removesuffix("\n")

    def create(self, name: str, *options: str) -> str:
        """`keys create`: the key it printed, alone on its line, and nothing on stderr."""
        result = self.ok("keys", "create", name, *options)
        assert result.err == ""
        assert KEY_LINE.fullmatch(result.out), result.out
        return result.out.removesuffix("\n")

    def rows(self, sql: str = ROWS) -> list[tuple[Any, ...]]:
        return query(self.database, sql)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Change the database behind the CLI's back (time passing, records made elsewhere)."""
        with closing(sqlite3.connect(self.database)) as conn, conn:
            conn.execute(sql, params)

    def raw_bytes(self) -> bytes:
        """The database file and any -wal/-shm files beside it, as stored on disk."""
        files = sorted(self.dir.glob(self.database.name + "*"))
        assert self.database in files
        return b"".join(f.read_bytes() for f in files)

    def stats(self) -> dict[str, Any]:
        result = self.run("cache", "stats")
        assert (result.code, result.err) == (0, "")
        stats: dict[str, Any] = json.loads(result.out)
        return stats

    def seed(self, entries: Sequence[StoredInput]) -> None:
        """Store entries in-process through the real store, as the gateway would."""

        async def put() -> None:
            async with opened_storage(StorageSettings(database=str(self.database))) as storage:
                await storage.run_inputs.put_many(entries)

        asyncio.run(put())

    def seed_answers(self, answers: Sequence[StoredAnswer]) -> None:
        """Store final answers in-process through the real store, as the gateway would."""

        async def put() -> None:
            async with opened_storage(StorageSettings(database=str(self.database))) as storage:
                for answer in answers:
                    await storage.final_answers.put(answer)

        asyncio.run(put())


def write_config(path: Path, database: Path | str, extra: str = "") -> Path:
    """A config file naming `database`: a SQLite file's path, or a PostgreSQL URL."""
    path.write_text(f"[storage]\ndatabase = {json.dumps(str(database))}\n{extra}", "utf-8")
    return path


def make_workspace(directory: Path, extra: str = "", *, create: bool = True) -> Workspace:
    """A gateway.toml naming gw.db (plus `extra`) in `directory`, and the database, migrated,
    as a gateway's start leaves it (unless not `create`)."""
    directory.mkdir(parents=True, exist_ok=True)
    database = directory / "gw.db"
    config = write_config(directory / "gateway.toml", database, extra)
    if create:
        # On a thread of its own: the caller may be a coroutine, inside a running loop.
        with ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, _migrated(database)).result()
    return Workspace(directory, config, database)


async def _migrated(database: Path) -> None:
    async with opened_storage(StorageSettings(database=str(database))):
        pass
