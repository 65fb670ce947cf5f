"""Domain code reaches storage only through its protocols: no SQL outside the backends
(gateway/storage/sqlite/, gateway/storage/postgres/) and the SQL they share
(gateway/storage/sql/); each driver only in its backend; only open_storage picks a backend."""

from __future__ import annotations

import ast
import re
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
STORAGE = GATEWAY / "storage"
SQLITE, POSTGRES, SHARED = STORAGE / "sqlite", STORAGE / "postgres", STORAGE / "sql"
CHOOSER = STORAGE / "open.py"
# Each driver, and the backend that alone may name it.
DRIVERS = {"sqlite3": SQLITE, "aiosqlite": SQLITE, "psycopg": POSTGRES, "psycopg_pool": POSTGRES}
SQL = re.compile(
    r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|INDEX)"
    r"|DROP\s+TABLE|ALTER\s+TABLE|PRAGMA\s+\w+|BEGIN\s+IMMEDIATE|ROLLBACK)\b",
    re.DOTALL,
)


def modules_imported(tree: ast.AST) -> set[str]:
    """Every module an import names, relative ones as written (`.storage.sqlite`)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            names.add(module)
            names.update(f"{module}.{alias.name}".replace("..", ".") for alias in node.names)
    return names


def strings(tree: ast.AST) -> list[str]:
    return [
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def driver_names(tree: ast.AST) -> set[str]:
    """The drivers a file names in code (imported, or used as `sqlite3.Error`)."""
    found = {m.split(".")[0] for m in modules_imported(tree)} & set(DRIVERS)
    found |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in DRIVERS}
    return found


def in_backend(path: Path) -> bool:
    return any(path.is_relative_to(place) for place in (SQLITE, POSTGRES, SHARED))


def offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text("utf-8"))
    found = [
        f"names {name}"
        for name in sorted(driver_names(tree))
        if not path.is_relative_to(DRIVERS[name])
    ]
    if not in_backend(path):
        found += [f"holds SQL: {text[:60]!r}" for text in strings(tree) if SQL.search(text)]
    if path != CHOOSER and not in_backend(path):
        found += [
            f"imports a backend ({module})"
            for module in sorted(modules_imported(tree))
            if re.search(
                r"(^|\.)storage\.(sqlite|postgres|sql)\b|^\.(sqlite|postgres|sql)\b", module
            )
        ]
    return found


def test_no_file_outside_the_backends_names_a_driver_or_holds_sql() -> None:
    found = {
        str(path.relative_to(GATEWAY)): offences(path)
        for path in sorted(GATEWAY.rglob("*.py"))
        if offences(path)
    }
    assert found == {}


def test_the_checks_catch_what_they_look_for() -> None:
    """The checks themselves, on code that breaks each rule."""
    tree = ast.parse(
        "import sqlite3\n"
        "from .storage.sqlite.database import Database\n"
        "q = 'SELECT revoked_at FROM app_keys WHERE name = ?'\n"
        "w = 'UPDATE app_keys SET revoked_at = ?'\n"
        "def f(e: object) -> bool:\n"
        "    return isinstance(e, aiosqlite.Error)\n"
    )
    assert driver_names(tree) == {"sqlite3", "aiosqlite"}
    assert offences_of_psycopg_in_sqlite() == ["names psycopg"]
    assert [s for s in strings(tree) if SQL.search(s)] == [
        "SELECT revoked_at FROM app_keys WHERE name = ?",
        "UPDATE app_keys SET revoked_at = ?",
    ]
    assert ".storage.sqlite.database" in modules_imported(tree)
    # Words in messages are not SQL.
    assert not SQL.search("Select the runs to purge, then update the key; delete it with --yes.")


def offences_of_psycopg_in_sqlite() -> list[str]:
    """A file in the SQLite backend that names PostgreSQL's driver."""
    path = SQLITE / "database.py"
    tree = ast.parse("import psycopg\n")
    return [f"names {n}" for n in sorted(driver_names(tree)) if not path.is_relative_to(DRIVERS[n])]


def test_the_backends_hold_the_sql() -> None:
    """The walk sees the backends' files, so an empty answer above is not a walk that missed."""
    holding = sorted(
        str(p.relative_to(STORAGE))
        for p in STORAGE.rglob("*.py")
        if any(map(SQL.search, strings(ast.parse(p.read_text("utf-8")))))
    )
    assert holding == [
        "postgres/migrate.py",
        "sql/app_keys.py",
        "sql/billing_calls.py",
        "sql/fetch_leases.py",
        "sql/final_answers.py",
        "sql/recordings.py",
        "sql/replica_usage.py",
        "sql/run_access.py",
        "sql/run_inputs.py",
        "sql/status.py",
        "sql/transfer.py",
        "sqlite/database.py",
        "sqlite/migrate.py",
    ]
