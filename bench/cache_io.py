"""Benchmark `cache export` and `cache import` against plain sqlite3 doing the same I/O.

Run: make bench-cache   (or .venv/bin/python bench/cache_io.py --entries 100000)

Target (issue 3): export and import each at least 20,000 entries/s on a 2-core machine.
Baselines, measured in the same run on the same rows: sqlite3 `executemany` of the rows into
an identical table in one transaction (import), and a plain SELECT over them writing each body
(export). The ratio says what the gateway's validation and encoding cost on top.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from tqdm import tqdm

from gateway.cache.admin import export_entries, import_entries
from gateway.config import CacheSettings, StorageSettings
from gateway.storage.open import open_storage

TARGET = 20_000
# The example TaskRunInput from Parallel's API reference (529 bytes as JSON).
EXAMPLE = {
    "processor": "core",
    "metadata": {"my_key": "my_value"},
    "task_spec": {
        "output_schema": {
            "json_schema": {
                "type": "object",
                "properties": {
                    "gdp": {
                        "type": "string",
                        "description": (
                            "GDP in USD for the year, formatted like '$3.1 trillion (2023)'"
                        ),
                    }
                },
                "required": ["gdp"],
                "additionalProperties": False,
            },
            "type": "json",
        },
        "input_schema": {
            "json_schema": {
                "type": "object",
                "properties": {"country": {"type": "string"}, "year": {"type": "integer"}},
                "required": ["country", "year"],
                "additionalProperties": False,
            },
            "type": "json",
        },
    },
    "input": {"country": "France", "year": 2023},
}


def export_file(entries: int) -> bytes:
    body = orjson.dumps(EXAMPLE).decode()
    return "".join(
        f'{{"version":1,"run_id":"trun_{n:032x}","stored_at":"2026-11-22T07:00:00.000000Z",'
        f'"input":{body}}}\n'
        for n in range(entries)
    ).encode()


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def baseline_import(path: Path, data: bytes) -> None:
    body = orjson.dumps(EXAMPLE)
    rows = [
        (f"trun_{n:032x}", body, len(body), "2026-11-22T07:00:00.000000Z")
        for n in range(data.count(b"\n"))
    ]
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(
            "CREATE TABLE run_inputs (run_id TEXT PRIMARY KEY, body BLOB NOT NULL,"
            " size INTEGER NOT NULL, stored_at TEXT NOT NULL)"
        )
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO run_inputs VALUES (?, ?, ?, ?)", rows)
        conn.execute("COMMIT")


def baseline_export(path: Path) -> None:
    out = io.BytesIO()
    with sqlite3.connect(path) as conn:
        for run_id, body, stored_at in conn.execute(
            "SELECT run_id, body, stored_at FROM run_inputs ORDER BY run_id"
        ):
            out.write(run_id.encode() + body + stored_at.encode() + b"\n")


async def gateway_import(settings: StorageSettings, data: bytes) -> int:
    storage = await open_storage(settings)
    try:
        with tqdm(disable=True) as bar:
            report = await import_entries(
                storage, io.BytesIO(data), bar, CacheSettings().max_body_bytes
            )
        return report.imported
    finally:
        await storage.close()


async def gateway_export(settings: StorageSettings) -> int:
    storage = await open_storage(settings)
    try:
        with tqdm(disable=True) as bar:
            report = await export_entries(storage, io.BytesIO(), (), bar)
        return report.written
    finally:
        await storage.close()


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "gateway", *args], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    entries = parser.parse_args().entries
    data = export_file(entries)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        settings = StorageSettings(database=str(work / "gateway.db"))
        cli_settings = work / "cli.toml"
        cli_settings.write_text(f'[storage]\ndatabase = "{work / "cli.db"}"\n')
        (work / "runs.jsonl").write_bytes(data)

        results = {
            "import": (
                timed(lambda: baseline_import(work / "baseline.db", data)),
                timed(lambda: asyncio.run(gateway_import(settings, data))),
            ),
            "export": (
                timed(lambda: baseline_export(work / "baseline.db")),
                timed(lambda: asyncio.run(gateway_export(settings))),
            ),
        }
        cli_import = timed(
            lambda: cli(
                "cache",
                "import",
                "--create",
                str(work / "runs.jsonl"),
                "--config",
                str(cli_settings),
            )
        )
        cli_export = timed(
            lambda: cli(
                "cache", "export", "-o", str(work / "out.jsonl"), "--config", str(cli_settings)
            )
        )

    print(
        f"{entries:,} entries of {len(orjson.dumps(EXAMPLE))} bytes; Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} cores, {platform.machine()}"
    )
    print(f"| {'operation':<24} | {'entries/s':>10} | {'baseline/s':>10} | {'ratio':>5} | target |")
    print(f"|{'-' * 26}|{'-' * 12}|{'-' * 12}|{'-' * 7}|--------|")
    for name, (baseline, ours) in results.items():
        rate, base_rate = entries / ours, entries / baseline
        verdict = "met" if rate >= TARGET else "MISSED"
        print(
            f"| {name + ' (in process)':<24} | {rate:>10,.0f} | {base_rate:>10,.0f} | "
            f"{rate / base_rate:>5.2f} | {verdict:<6} |"
        )
    for name, seconds in (
        ("import (CLI, end to end)", cli_import),
        ("export (CLI, end to end)", cli_export),
    ):
        rate = entries / seconds
        verdict = "met" if rate >= TARGET else "MISSED"
        print(f"| {name:<24} | {rate:>10,.0f} | {'':>10} | {'':>5} | {verdict:<6} |")


if __name__ == "__main__":
    main()
