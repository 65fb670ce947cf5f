"""Domain code reaches storage only through its protocols: no SQL, and no sqlite3 or aiosqlite,
outside gateway/storage/sqlite/; and only open_storage picks the SQLite backend."""

from __future__ import annotations

import ast
import re
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
BACKEND = GATEWAY / "storage" / "sqlite"
CHOOSER = GATEWAY / "storage" / "open.py"
DRIVERS = {"sqlite3", "aiosqlite"}
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
    found = {m.split(".")[0] for m in modules_imported(tree)} & DRIVERS
    found |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in DRIVERS}
    return found


def domain_files() -> list[Path]:
    return sorted(p for p in GATEWAY.rglob("*.py") if not p.is_relative_to(BACKEND))


def offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text("utf-8"))
    found = [f"names {name}" for name in sorted(driver_names(tree))]
    found += [f"holds SQL: {text[:60]!r}" for text in strings(tree) if SQL.search(text)]
    if path != CHOOSER:
        found += [
            f"imports the SQLite backend ({module})"
            for module in sorted(modules_imported(tree))
            if re.search(r"(^|\.)storage\.sqlite\b|^\.sqlite\b", module)
        ]
    return found


def test_no_file_outside_storage_sqlite_names_a_driver_or_holds_sql() -> None:
    found = {
        str(path.relative_to(GATEWAY)): offences(path) for path in domain_files() if offences(path)
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
    assert [s for s in strings(tree) if SQL.search(s)] == [
        "SELECT revoked_at FROM app_keys WHERE name = ?",
        "UPDATE app_keys SET revoked_at = ?",
    ]
    assert ".storage.sqlite.database" in modules_imported(tree)
    # Words in messages are not SQL.
    assert not SQL.search("Select the runs to purge, then update the key; delete it with --yes.")


def test_the_backend_holds_the_sql() -> None:
    """The walk sees the backend's files, so an empty answer above is not a walk that missed."""
    backend = sorted(
        p.name
        for p in BACKEND.glob("*.py")
        if any(map(SQL.search, strings(ast.parse(p.read_text("utf-8")))))
    )
    assert backend == [
        "app_keys.py",
        "database.py",
        "migrate.py",
        "run_access.py",
        "run_inputs.py",
        "status.py",
    ]
