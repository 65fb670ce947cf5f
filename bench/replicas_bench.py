"""Benchmark the PostgreSQL backend against SQLite, and what replicas share.

Run: make bench   (or .venv/bin/python -m bench.replicas_bench [--seconds 5] [--rounds 3])

It starts a throwaway PostgreSQL server (as tests/postgres_server.py does), a fake upstream, a
gateway on SQLite and one on PostgreSQL, each with its default config, and drives their hit
paths in alternating rounds; then three replicas on one PostgreSQL database for revocation.

Targets: hit throughput on PostgreSQL >= 0.95x SQLite's; a miss <= 1 ms slower than on SQLite.
Quoted with no target: how long a revocation takes to reach 3 replicas (median and max of 20),
and what shared rate limits cost a replica per request (CPU, a limited key against an
unlimited one, on the same gateway).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

# bench/ files are checked as top-level modules: the shared parts are looked up by name.
serve_bench: Any = importlib.import_module("bench.serve_bench")
postgres_server: Any = importlib.import_module("tests.postgres_server")

HOT_RUN = "trun_" + "cd" * 16
PROPAGATIONS = 20
MISSES = 200
TARGET_HIT_RATIO = 0.95
TARGET_MISS_MS = 1.0
Row = tuple[str, str, str, str, str, str]


@dataclass(frozen=True)
class Setup:
    name: str
    url: str
    key: str
    pid: int


def say(message: str) -> None:
    serve_bench.say(message)


def configure(work: Path, name: str, fake_url: str, database: str) -> tuple[Path, int]:
    """A gateway's directory and port: the default config but for them and its database."""
    directory = work / name
    directory.mkdir()
    port = serve_bench.free_port()
    (directory / "config.toml").write_text(
        f'[server]\nport = {port}\n\n[storage]\ndatabase = "{database}"\n\n'
        f'[upstream]\nbase_url = "{fake_url}"\n'
    )
    return directory, port


def start(procs: Any, name: str, directory: Path, port: int, key: str) -> Setup:
    gateway = serve_bench.Gateway(directory, port, key)
    process, _ = serve_bench.start_gateway(procs, gateway)
    return Setup(name, gateway.url, key, process.pid)


async def miss_ms(setup: Setup, prefix: str) -> float:
    """Median ms of sequential cold requests (each stored) through one gateway."""
    times: list[float] = []
    async with aiohttp.ClientSession() as session:
        for n in range(-10, MISSES):
            url = setup.url + serve_bench.input_path(f"trun_{prefix}{n + 10:08d}")
            elapsed, _ = await serve_bench.get_input(session, url, setup.key, "stored")
            if n >= 0:
                times.append(elapsed)
    return statistics.median(times) * 1e3


async def propagation(urls: Sequence[str], database: str, key: str) -> list[float]:
    """Seconds from a revocation's commit until every replica refuses the key, PROPAGATIONS
    times (the key is restored, and accepted everywhere again, between tries)."""
    seconds: list[float] = []
    async with aiohttp.ClientSession() as session:

        async def statuses() -> list[int]:
            answers = []
            for url in urls:
                async with session.get(
                    url + serve_bench.input_path(HOT_RUN), headers={"x-api-key": key}
                ) as response:
                    await response.read()
                    answers.append(response.status)
            return answers

        async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
            for _ in range(PROPAGATIONS):
                while await statuses() != [200] * len(urls):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                at = datetime.now(UTC).isoformat()
                await conn.execute(
                    "UPDATE app_keys SET revoked_at = %s WHERE name = 'bench'", (at,)
                )
                committed = time.perf_counter()
                while await statuses() != [401] * len(urls):
                    pass
                seconds.append(time.perf_counter() - committed)
                await conn.execute("UPDATE app_keys SET revoked_at = NULL WHERE name = 'bench'")
    return seconds


def run(seconds: int, rounds: int) -> list[Row]:
    drive, generator = serve_bench.load_driver()
    say(f"load generator: {generator}")
    rows: list[Row] = []
    server = postgres_server.PostgresServer.create(durable=True)
    server.start()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp,
            serve_bench.Processes() as procs,
        ):
            work = Path(tmp)
            fake_url, _ = serve_bench.start_server(procs, work, "fake")
            with psycopg.connect(server.url(), autocommit=True) as conn:
                for name in ("single", "replicas"):
                    conn.execute(f"CREATE DATABASE {name}")
            # The keys are made on SQLite and copied (hashes) into both PostgreSQL databases,
            # so one key drives every gateway.
            sqlite_dir, sqlite_port = configure(work, "sqlite", fake_url, str(work / "gw.db"))
            key = serve_bench.gateway_cli(sqlite_dir, "keys", "create", "bench", "--create")
            key = key.strip()
            limited_key = serve_bench.gateway_cli(
                sqlite_dir, "keys", "create", "limited", "--rate", "1000000"
            ).strip()
            for name in ("single", "replicas"):
                serve_bench.gateway_cli(
                    sqlite_dir, "storage", "copy", "--from", str(work / "gw.db"),
                    "--to", server.url(name),
                )  # fmt: skip
            sqlite = start(procs, "sqlite", sqlite_dir, sqlite_port, key)
            pg_dir, pg_port = configure(work, "postgresql", fake_url, server.url("single"))
            postgres = start(procs, "postgresql", pg_dir, pg_port, key)
            setups = {s.name: s for s in (sqlite, postgres)}
            targets = {
                name: serve_bench.Target(s.url + serve_bench.input_path(HOT_RUN), s.pid)
                for name, s in setups.items()
            }
            asyncio.run(serve_bench.warm([t.url for t in targets.values()], key))
            loads = serve_bench.hit_rounds(drive, targets, key, seconds, rounds)
            ratio = loads["postgresql"].rate / loads["sqlite"].rate
            rows.append(
                serve_bench.row(
                    "hit throughput, req/s (median)",
                    f"{loads['postgresql'].rate:,.0f}",
                    f"{loads['sqlite'].rate:,.0f} (SQLite)",
                    f"{ratio:.2f}x",
                    f">= {TARGET_HIT_RATIO:.2f}x",
                    ratio >= TARGET_HIT_RATIO,
                )
            )
            limited = serve_bench.hit_rounds(
                drive, {"limited": targets["postgresql"]}, limited_key, seconds, rounds
            )["limited"]
            rows.append(
                serve_bench.row(
                    "CPU per hit, us: a rate-limited key vs none",
                    f"{limited.cpu_us:.1f}",
                    f"{loads['postgresql'].cpu_us:.1f} (no limit)",
                    f"{limited.cpu_us - loads['postgresql'].cpu_us:+.1f} us",
                )
            )
            say(f"miss latency: {MISSES} sequential cold requests on each backend")
            sqlite_miss = asyncio.run(miss_ms(sqlite, "s"))
            postgres_miss = asyncio.run(miss_ms(postgres, "p"))
            rows.append(
                serve_bench.row(
                    f"miss latency, median of {MISSES} sequential, ms",
                    f"{postgres_miss:.2f}",
                    f"{sqlite_miss:.2f} (SQLite)",
                    f"{postgres_miss - sqlite_miss:+.2f} ms",
                    f"<= +{TARGET_MISS_MS:.2f} ms",
                    postgres_miss - sqlite_miss <= TARGET_MISS_MS,
                )
            )
            say(f"revocation: {PROPAGATIONS} times across 3 replicas")
            replicas = [
                start(
                    procs,
                    f"replica-{n}",
                    *configure(work, f"replica-{n}", fake_url, server.url("replicas")),
                    key,
                )
                for n in range(3)
            ]
            hot = serve_bench.input_path(HOT_RUN)
            asyncio.run(serve_bench.warm([r.url + hot for r in replicas], key))
            taken = asyncio.run(propagation([r.url for r in replicas], server.url("replicas"), key))
            rows.append(
                serve_bench.row(
                    f"revocation reaching 3 replicas, ms (median, max of {PROPAGATIONS})",
                    f"{statistics.median(taken) * 1e3:.1f}",
                    "",
                    f"max {max(taken) * 1e3:.1f}",
                    "< 1000",
                    max(taken) < 1.0,
                )
            )
    finally:
        server.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="seconds per round (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server (default 3)")
    parser.add_argument("--quick", action="store_true", help="(accepted, as make bench passes it)")
    args = parser.parse_args()
    try:
        rows = run(args.seconds, args.rounds)
    except serve_bench.BenchError as e:
        sys.exit(f"bench: {e}")
    print(serve_bench.render(rows))
    say("done")


if __name__ == "__main__":
    main()
