"""Schema migrations, as files: migrations/<backend>/NNNN_name.sql, numbered, loaded in order.
Each backend applies its own (storage/sqlite/migrate.py, storage/postgres/migrate.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

MIGRATION_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


class MigrationError(Exception):
    """The migration files themselves are wrong."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations_dir(backend: str) -> Traversable:
    """Where a backend's SQL files are: inside the installed package, else the repository's
    migrations/<backend>/."""
    packaged = resources.files("gateway") / "migrations" / backend
    if packaged.is_dir():
        return packaged
    # An editable install runs from the source tree, where migrations/ sits beside gateway/.
    return Path(__file__).resolve().parents[2] / "migrations" / backend


def load_migrations(directory: Traversable) -> list[Migration]:
    """The migrations in `directory`, in version order."""
    found = []
    for entry in directory.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        m = MIGRATION_NAME.fullmatch(entry.name)
        if m is None:
            raise MigrationError(f"Migration file {entry.name!r} is not named NNNN_name.sql.")
        found.append(Migration(int(m.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"Two migrations share a version number: {versions}")
    return found


def missing_versions(directory: Traversable, applied: set[int]) -> list[int]:
    """The versions of the migrations in `directory` not among `applied`, in order."""
    return sorted({migration.version for migration in load_migrations(directory)} - applied)
