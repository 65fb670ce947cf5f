"""Benchmark the gateway over HTTP: hits against a bare aiohttp handler, misses against upstream.

Run: make bench   (or .venv/bin/python -m bench.serve_bench [--seconds 5] [--rounds 3] [--quick])
Run it as a module, from the repository root: as a script, its directory would come first on
sys.path, where this file's name hides the standard library's `http`.

Everything listens on 127.0.0.1, each server in its own process: a fake Parallel upstream, a
bare aiohttp handler serving the same 529 bytes, and `parallel-gateway serve` with its default
config (access log on). One load generator (wrk if installed, else an aiohttp client) drives
the bare handler and the gateway in alternating rounds; the table quotes medians, and quotes
throughput as a ratio to the bare handler measured in the same run, since the machine is noisy.
It also quotes the CPU time each server spent per request, which other work on a shared machine
disturbs far less than throughput.

Targets: hit throughput >= 0.85x bare and hit p99 <= bare p99 + 0.5 ms; a miss adds <= 1 ms
to calling upstream directly; 1,000 concurrent requests for one cold run make exactly one
upstream request; with 100,000 and 1,000,000 cached runs, RSS <= 150 MB and start-up <= 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import http.client
import importlib
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import NoReturn

import aiohttp
import orjson
from aiohttp import web

# bench/ is not a package (mypy checks its files as top-level modules), so the shared example
# input is looked up by name rather than imported statically.
EXAMPLE: dict[str, object] = importlib.import_module("bench.cache_io").EXAMPLE
BODY = orjson.dumps(EXAMPLE)
JSON = "application/json"
HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
TEAM_KEY = "bench-team-key-0123456789abcdef"
STORED_AT = "2026-11-22T07:00:00.000000Z"

CONNECTIONS = 64
MISS_REQUESTS = 300
COLLAPSE_REQUESTS = 1_000
COLLAPSE_DELAY = 0.2  # long enough for the concurrent requests to overlap upstream's answer
FOOTPRINT_SIZES = (100_000, 1_000_000)
LRU_FILL = 12_000  # distinct runs fetched after start-up: more than cache.memory_entries
FILL_CONCURRENCY = 32

TARGET_RATIO = 0.85
TARGET_P99_MS = 0.5
TARGET_MISS_MS = 1.0
TARGET_RSS_MB = 150.0
TARGET_STARTUP_S = 1.0
STARTED = time.perf_counter()


class BenchError(Exception):
    """A server that would not start, or an answer that was not the expected one."""


def say(message: str) -> None:
    """Progress on stderr; stdout carries only the table."""
    print(f"[{time.perf_counter() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


# ---- The servers under test (run in child processes by `--serve fake|bare`) ----


class FakeUpstream:
    """Parallel's input route for any run id, counting requests, with a settable delay."""

    def __init__(self) -> None:
        self.count = 0
        self.delay = 0.0

    async def run_input(self, request: web.Request) -> web.Response:
        self.count += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if request.headers.get("x-api-key") != TEAM_KEY:
            return web.json_response({"type": "error", "error": {"message": "bad key"}}, status=401)
        return web.Response(body=BODY, content_type=JSON)

    async def get_count(self, request: web.Request) -> web.Response:
        return web.json_response({"count": self.count})

    async def set_delay(self, request: web.Request) -> web.Response:
        self.delay = float(request.query["seconds"])
        return web.json_response({"delay": self.delay})


def fake_upstream_app() -> web.Application:
    fake = FakeUpstream()
    app = web.Application()
    app.router.add_get("/v1/tasks/runs/{run_id}/input", fake.run_input)
    app.router.add_get("/count", fake.get_count)
    app.router.add_put("/delay", fake.set_delay)
    return app


def bare_app() -> web.Application:
    """The floor: aiohttp answering the same bytes with no gateway logic at all."""

    async def run_input(request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type=JSON)

    app = web.Application()
    app.router.add_get("/v1/tasks/runs/{run_id}/input", run_input)
    return app


def serve(role: str, port: int) -> None:
    app = fake_upstream_app() if role == "fake" else bare_app()
    # As the gateway's `serve` runs: plain asyncio, handlers cancelled when clients go away.
    web.run_app(app, host=HOST, port=port, access_log=None, print=None, handler_cancellation=True)


# ---- Processes ----


class Processes:
    """The servers this run started, each in its own process group, all stopped on exit."""

    def __init__(self) -> None:
        self._running: list[subprocess.Popen[bytes]] = []
        self._logs: dict[int, Path] = {}

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for process in reversed(self._running.copy()):
            self.stop(process)

    def start(
        self, argv: Sequence[str], log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: Ctrl-C reaches us, and we stop it
            )
        self._running.append(process)
        self._logs[process.pid] = log
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
        _signal_group(process.pid, signal.SIGKILL)  # any worker left behind
        if process in self._running:
            self._running.remove(process)

    def log_tail(self, process: subprocess.Popen[bytes]) -> str:
        data = self._logs[process.pid].read_bytes()
        return data[-2000:].decode(errors="replace")


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def wait_until_ready(
    procs: Processes, process: subprocess.Popen[bytes], port: int, path: str
) -> float:
    """Poll `path` until it answers 200; return the perf_counter time it first did."""
    deadline = time.perf_counter() + 60
    while True:
        if process.poll() is not None:
            raise BenchError(
                f"{process.args!r} exited with {process.returncode}:\n{procs.log_tail(process)}"
            )
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            try:
                conn.request("GET", path)
                if conn.getresponse().status == 200:
                    return time.perf_counter()
            finally:
                conn.close()
        except (OSError, http.client.HTTPException):
            pass
        if time.perf_counter() > deadline:
            raise BenchError(f"{process.args!r} did not answer GET {path} within 60 s")
        time.sleep(0.002)


def start_server(procs: Processes, work: Path, role: str) -> tuple[str, int]:
    """Start the fake upstream or the bare handler; return its URL and process id."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.serve_bench", "--serve", role, "--port", str(port)]
    process = procs.start(argv, work / f"{role}.log")
    wait_until_ready(procs, process, port, "/count" if role == "fake" else input_path("ready"))
    return f"http://{HOST}:{port}", process.pid


# ---- The gateway ----


@dataclass(frozen=True)
class Gateway:
    """One gateway setup: its directory, config file (database, port, upstream) and app key."""

    directory: Path
    port: int
    key: str

    @property
    def config(self) -> Path:
        return self.directory / "config.toml"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def gateway_command() -> str:
    command = Path(sys.executable).parent / "parallel-gateway"
    if not command.exists():
        raise BenchError(f"{command} not found: run `make install` first")
    return str(command)


def gateway_env() -> dict[str, str]:
    return {**os.environ, "PARALLEL_API_KEY": TEAM_KEY}


def gateway_cli(gateway_dir: Path, *args: str) -> str:
    argv = [gateway_command(), *args, "--config", str(gateway_dir / "config.toml")]
    done = subprocess.run(argv, cwd=REPO, env=gateway_env(), capture_output=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(args)} exited with {done.returncode}: {done.stderr!r}")
    return done.stdout.decode()


def setup_gateway(work: Path, name: str, upstream_url: str) -> Gateway:
    """Default config except the database, the port and upstream's base_url; an app key."""
    directory = work / name
    directory.mkdir()
    port = free_port()
    (directory / "config.toml").write_text(
        f'[server]\nport = {port}\n\n[storage]\ndatabase = "{directory / "gateway.db"}"\n\n'
        f'[upstream]\nbase_url = "{upstream_url}"\n'
    )
    key = gateway_cli(directory, "keys", "create", "bench", "--create").strip()
    return Gateway(directory, port, key)


def start_gateway(
    procs: Processes, gateway: Gateway, *extra: str
) -> tuple[subprocess.Popen[bytes], float]:
    """Start `parallel-gateway serve`; return it and its start-up time (until /healthz answers)."""
    argv = [gateway_command(), "serve", "--config", str(gateway.config), *extra]
    started = time.perf_counter()
    process = procs.start(argv, gateway.directory / "serve.log", gateway_env())
    ready = wait_until_ready(procs, process, gateway.port, "/healthz")
    return process, ready - started


def serve_has_workers() -> bool:
    done = subprocess.run(
        [gateway_command(), "serve", "--help"], capture_output=True, check=True, cwd=REPO
    )
    return "--workers" in done.stdout.decode()


def cpu_seconds(group: int) -> float:
    """User and system CPU time of every live process in a process group (a server and any
    workers it started)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # Fields after the ")" that ends the command name: state, ppid, pgrp, ...
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # the process has gone
            continue
        if int(fields[2]) == group:
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise BenchError(f"no VmRSS for process {pid}")


def write_export(path: Path, entries: int) -> None:
    """An export file (README "The export format") of `entries` runs of the example input."""
    body = BODY.decode()
    with path.open("w") as out:
        for start in range(0, entries, 10_000):
            out.write(
                "".join(
                    f'{{"version":1,"run_id":"{cached_run_id(n)}","stored_at":"{STORED_AT}",'
                    f'"input":{body}}}\n'
                    for n in range(start, min(start + 10_000, entries))
                )
            )


def cached_run_id(n: int) -> str:
    return f"trun_{n:032x}"


def input_path(run_id: str) -> str:
    return f"/v1/tasks/runs/{run_id}/input"


# ---- Load ----


@dataclass(frozen=True)
class Load:
    rate: float  # requests per second
    p50_ms: float
    p99_ms: float
    cpu_us: float = math.nan  # the server's CPU time per request


Driver = Callable[[str, str, int], Load]  # (url, key, seconds) -> Load
WRK_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
WRK_PERCENTILE = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
WRK_SOCKET_ERRORS = re.compile(r"Socket errors: .*")
WRK_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def drive_wrk(
    wrk: str,
    url: str,
    key: str,
    seconds: int,
    *,
    connections: int = CONNECTIONS,
    script: Path | None = None,
) -> Load:
    """wrk's figures; `script` (Lua) may change the request, such as to a POST with a body."""
    argv = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    argv += ["-H", f"x-api-key: {key}", url]
    if script is not None:
        argv += ["-s", str(script)]
    output = subprocess.run(argv, capture_output=True, check=True, text=True).stdout
    non_2xx = WRK_NON_2XX.search(output)
    if non_2xx:
        raise BenchError(f"{non_2xx.group(1)} answers from {url} were not 2xx:\n{output}")
    socket_errors = WRK_SOCKET_ERRORS.search(output)
    if socket_errors:
        say(f"wrk against {url}: {socket_errors.group(0)}")
    rate = WRK_RATE.search(output)
    percentiles = {p: float(v) * WRK_UNIT_MS[u] for p, v, u in WRK_PERCENTILE.findall(output)}
    if rate is None or set(percentiles) != {"50", "99"}:
        raise BenchError(f"cannot read wrk's output:\n{output}")
    return Load(float(rate.group(1)), percentiles["50"], percentiles["99"])


def drive_aiohttp(
    url: str, key: str, seconds: int, *, connections: int = CONNECTIONS, post: bytes | None = None
) -> Load:
    return asyncio.run(aiohttp_load(url, key, seconds, connections, post))


async def aiohttp_load(
    url: str, key: str, seconds: int, connections: int = CONNECTIONS, post: bytes | None = None
) -> Load:
    """wrk's stand-in: `connections` connections, each sending its next request when one ends;
    a GET, or a POST of `post` (JSON)."""
    latencies: list[float] = []
    headers = {"x-api-key": key, "content-type": JSON}
    method = "GET" if post is None else "POST"
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        deadline = started + seconds

        async def connection() -> None:
            while (sent := time.perf_counter()) < deadline:
                async with session.request(method, url, headers=headers, data=post) as response:
                    await response.read()
                if response.status >= 300:
                    raise BenchError(f"{method} {url} answered {response.status}")
                latencies.append(time.perf_counter() - sent)

        await asyncio.gather(*(connection() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return Load(
        len(latencies) / elapsed, percentile(latencies, 50) * 1e3, percentile(latencies, 99) * 1e3
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank, as wrk reports it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def load_driver() -> tuple[Driver, str]:
    wrk = shutil.which("wrk")
    if wrk is None:
        return drive_aiohttp, f"aiohttp client, {CONNECTIONS} connections (wrk not installed)"
    banner = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    version = re.search(r"wrk (\S+)", banner.stdout + banner.stderr)
    name = f"wrk {version.group(1) if version else ''}".strip()
    return functools.partial(drive_wrk, wrk), f"{name}, -t1 -c{CONNECTIONS}"


@dataclass(frozen=True)
class Target:
    url: str
    group: int  # the server's process group, for its CPU time


def hit_rounds(
    drive: Driver, targets: dict[str, Target], key: str, seconds: int, rounds: int
) -> dict[str, Load]:
    """Alternate the targets round by round; the median of each measure per target."""
    for target in targets.values():
        drive(target.url, key, 1)  # warm-up, not counted
    loads: dict[str, list[Load]] = {name: [] for name in targets}
    for n in range(1, rounds + 1):
        for name, target in targets.items():
            cpu = cpu_seconds(target.group)
            load = drive(target.url, key, seconds)
            cpu_us = (cpu_seconds(target.group) - cpu) / (load.rate * seconds) * 1e6
            loads[name].append(Load(load.rate, load.p50_ms, load.p99_ms, cpu_us))
            say(
                f"round {n}/{rounds} {name}: {load.rate:,.0f} req/s, "
                f"p50 {load.p50_ms:.2f} ms, p99 {load.p99_ms:.2f} ms, {cpu_us:.0f} us CPU/request"
            )
    return {
        name: Load(
            statistics.median(x.rate for x in runs),
            statistics.median(x.p50_ms for x in runs),
            statistics.median(x.p99_ms for x in runs),
            statistics.median(x.cpu_us for x in runs),
        )
        for name, runs in loads.items()
    }


async def get_input(
    session: aiohttp.ClientSession, url: str, key: str, cache_status: str | None = None
) -> tuple[float, str]:
    """GET a run input, checking the bytes; return the seconds taken and the Cache-Status."""
    sent = time.perf_counter()
    async with session.get(url, headers={"x-api-key": key}) as response:
        body = await response.read()
    elapsed = time.perf_counter() - sent
    status = response.headers.get("Cache-Status", "")
    if response.status != 200 or body != BODY:
        raise BenchError(f"GET {url} answered {response.status}: {body[:200]!r}")
    if cache_status is not None and not status.endswith(cache_status):
        raise BenchError(f"GET {url} has Cache-Status {status!r}, not ...{cache_status!r}")
    return elapsed, status


async def miss_latency(gateway: Gateway, fake_url: str, requests: int) -> tuple[float, float]:
    """Median ms of sequential cold requests through the gateway, and straight to the fake."""
    through: list[float] = []
    direct: list[float] = []
    async with aiohttp.ClientSession() as session:
        for n in range(-10, requests):  # the first ten open the connections and do not count
            fake_time, _ = await get_input(
                session, fake_url + input_path(f"trun_direct_{n + 10}"), TEAM_KEY
            )
            gateway_time, _ = await get_input(
                session, gateway.url + input_path(f"trun_cold_{n + 10}"), gateway.key, "stored"
            )
            if n >= 0:
                direct.append(fake_time)
                through.append(gateway_time)
    return statistics.median(through) * 1e3, statistics.median(direct) * 1e3


async def fake_control(session: aiohttp.ClientSession, fake_url: str, delay: float | None) -> int:
    """Set the fake's delay (unless None); return how many input requests it has had."""
    if delay is not None:
        async with session.put(f"{fake_url}/delay", params={"seconds": str(delay)}) as response:
            response.raise_for_status()
    async with session.get(f"{fake_url}/count") as response:
        count: int = (await response.json())["count"]
        return count


async def collapse(gateway: Gateway, fake_url: str, requests: int) -> tuple[int, Counter[str]]:
    """Upstream requests made by `requests` concurrent requests for one cold run, and how each
    was answered (the last Cache-Status parameter: stored, collapsed or hit)."""
    url = gateway.url + input_path("trun_collapse")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        before = await fake_control(session, fake_url, COLLAPSE_DELAY)
        try:
            answers = await asyncio.gather(
                *(get_input(session, url, gateway.key) for _ in range(requests))
            )
        finally:
            after = await fake_control(session, fake_url, 0.0)
    return after - before, Counter(status.rpartition("; ")[2] for _, status in answers)


async def fetch_distinct(gateway: Gateway, run_ids: Sequence[str]) -> None:
    """Hit each run once, FILL_CONCURRENCY at a time: fills the memory LRU from SQLite."""
    pending = iter(run_ids)
    connector = aiohttp.TCPConnector(limit=FILL_CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def fetcher() -> None:
            for run_id in pending:
                await get_input(session, gateway.url + input_path(run_id), gateway.key, "hit")

        await asyncio.gather(*(fetcher() for _ in range(FILL_CONCURRENCY)))


@dataclass(frozen=True)
class Footprint:
    startup_s: float
    rss_start_mb: float
    rss_filled_mb: float


def footprint(procs: Processes, work: Path, fake_url: str, entries: int) -> Footprint:
    """Start-up time and RSS of a gateway whose database holds `entries` imported runs."""
    gateway = setup_gateway(work, f"cached-{entries}", fake_url)
    export = gateway.directory / "runs.jsonl"
    write_export(export, entries)
    started = time.perf_counter()
    gateway_cli(gateway.directory, "cache", "import", str(export))
    say(f"imported {entries:,} runs in {time.perf_counter() - started:.1f} s")
    export.unlink()
    process, startup = start_gateway(procs, gateway)
    try:
        rss_start = rss_mb(process.pid)
        fill = [cached_run_id(n) for n in range(0, entries, max(1, entries // LRU_FILL))]
        asyncio.run(fetch_distinct(gateway, fill[:LRU_FILL]))
        result = Footprint(startup, rss_start, rss_mb(process.pid))
    finally:
        procs.stop(process)
    shutil.rmtree(gateway.directory)
    say(
        f"{entries:,} cached runs: start-up {startup:.2f} s, RSS {result.rss_start_mb:.0f} MB "
        f"at start, {result.rss_filled_mb:.0f} MB after {LRU_FILL:,} distinct hits"
    )
    return result


# ---- The report ----

Row = tuple[str, str, str, str, str, str]
HEADER: Row = ("measurement", "result", "baseline (same run)", "vs baseline", "target", "verdict")


def row(
    measure: str,
    result: str,
    baseline: str = "",
    diff: str = "",
    target: str = "",
    ok: bool | None = None,
) -> Row:
    verdict = "" if ok is None else "met" if ok else "MISSED"
    return (measure, result, baseline, diff, target, verdict)


def render(rows: Sequence[Row]) -> str:
    table = [HEADER, *rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    lines = [
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |"
        for line in table
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def hit_rows(loads: dict[str, Load], rounds: int) -> list[Row]:
    gateway, bare = loads["gateway"], loads["bare"]
    ratio = gateway.rate / bare.rate
    p99_diff = gateway.p99_ms - bare.p99_ms
    rows = [
        row(
            f"hit throughput, req/s (median, {rounds} rounds)",
            f"{gateway.rate:,.0f}",
            f"{bare.rate:,.0f} (bare aiohttp)",
            f"{ratio:.2f}x",
            f">= {TARGET_RATIO:.2f}x",
            ratio >= TARGET_RATIO,
        ),
        row(
            "hit CPU time per request, us (server process)",
            f"{gateway.cpu_us:.0f}",
            f"{bare.cpu_us:.0f}",
            f"{bare.cpu_us / gateway.cpu_us:.2f}x (as throughput)",
        ),
        row(
            "hit latency p50, ms",
            f"{gateway.p50_ms:.2f}",
            f"{bare.p50_ms:.2f}",
            f"{gateway.p50_ms - bare.p50_ms:+.2f} ms",
        ),
        row(
            "hit latency p99, ms",
            f"{gateway.p99_ms:.2f}",
            f"{bare.p99_ms:.2f}",
            f"{p99_diff:+.2f} ms",
            f"<= +{TARGET_P99_MS:.2f} ms",
            p99_diff <= TARGET_P99_MS,
        ),
    ]
    workers = loads.get(WORKERS)
    if workers is None:
        rows.append(row("hit throughput, serve --workers 2", "n/a (serve has no --workers yet)"))
    else:
        rows.append(
            row(
                "hit throughput, serve --workers 2, req/s",
                f"{workers.rate:,.0f} (p99 {workers.p99_ms:.2f} ms)",
                f"{bare.rate:,.0f} (bare aiohttp)",
                f"{workers.rate / bare.rate:.2f}x",
            )
        )
    return rows


def footprint_rows(entries: int, result: Footprint | None) -> list[Row]:
    rss_name, startup_name = f"RSS, {entries:,} cached runs, MB", f"start-up, {entries:,} runs, s"
    if result is None:
        return [row(rss_name, "skipped (--quick)"), row(startup_name, "skipped (--quick)")]
    rss = max(result.rss_start_mb, result.rss_filled_mb)
    return [
        row(
            rss_name,
            f"{result.rss_start_mb:.0f} at start, {result.rss_filled_mb:.0f} after "
            f"{LRU_FILL:,} distinct hits",
            target=f"<= {TARGET_RSS_MB:.0f} MB",
            ok=rss <= TARGET_RSS_MB,
        ),
        row(
            startup_name,
            f"{result.startup_s:.2f}",
            target=f"<= {TARGET_STARTUP_S:.0f} s",
            ok=result.startup_s <= TARGET_STARTUP_S,
        ),
    ]


def machine_rows(generator: str, seconds: int, rounds: int) -> list[Row]:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.partition(":")[2].strip()
            break
    software = f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, asyncio loop"
    return [
        row("machine", f"{os.cpu_count()} cores, {cpu}"),
        row("software", software),
        row("load generator", f"{generator}; {rounds} rounds of {seconds} s, alternating"),
    ]


# ---- The run ----

HOT_RUN = "trun_" + "ab" * 16
WORKERS = "gateway --workers 2"


async def warm(urls: Sequence[str], key: str) -> None:
    """Fetch the hot run through each gateway until it is a hit."""
    async with aiohttp.ClientSession() as session:
        for url in urls:
            await get_input(session, url, key)
            await get_input(session, url, key, "hit")


def run(seconds: int, rounds: int, quick: bool) -> list[Row]:
    drive, generator = load_driver()
    say(f"load generator: {generator}")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp, Processes() as procs:
        work = Path(tmp)
        fake_url, _ = start_server(procs, work, "fake")
        bare_url, bare_pid = start_server(procs, work, "bare")
        gateway = setup_gateway(work, "gateway", fake_url)
        process, empty_startup = start_gateway(procs, gateway)
        # Each server leads its own process group (Processes.start).
        servers = {"bare": (bare_url, bare_pid), "gateway": (gateway.url, process.pid)}
        two_workers = None
        if serve_has_workers():
            two = Gateway(gateway.directory, free_port(), gateway.key)
            two_workers, _ = start_gateway(procs, two, "--port", str(two.port), "--workers", "2")
            servers[WORKERS] = (two.url, two_workers.pid)
        targets = {
            name: Target(url + input_path(HOT_RUN), pid) for name, (url, pid) in servers.items()
        }
        asyncio.run(warm([t.url for name, t in targets.items() if name != "bare"], gateway.key))
        rows += hit_rows(hit_rounds(drive, targets, gateway.key, seconds, rounds), rounds)
        if two_workers is not None:
            procs.stop(two_workers)
        rss_after_hits = rss_mb(process.pid)

        say(f"miss latency: {MISS_REQUESTS} sequential cold requests, gateway and fake directly")
        miss, direct = asyncio.run(miss_latency(gateway, fake_url, MISS_REQUESTS))
        rows.append(
            row(
                f"miss latency, median of {MISS_REQUESTS} sequential, ms",
                f"{miss:.2f}",
                f"{direct:.2f} (fake upstream directly)",
                f"{miss - direct:+.2f} ms",
                f"<= +{TARGET_MISS_MS:.2f} ms",
                miss - direct <= TARGET_MISS_MS,
            )
        )
        say(f"single flight: {COLLAPSE_REQUESTS:,} concurrent requests for one cold run")
        upstream, answers = asyncio.run(collapse(gateway, fake_url, COLLAPSE_REQUESTS))
        rows.append(
            row(
                f"upstream requests, {COLLAPSE_REQUESTS:,} concurrent for one cold run",
                str(upstream),
                "",
                "answers: " + ", ".join(f"{n} {how}" for how, n in answers.most_common()),
                "exactly 1",
                upstream == 1,
            )
        )
        rows.append(row("start-up, empty cache, s", f"{empty_startup:.2f}"))
        rows.append(row("RSS after the hit rounds, MB", f"{rss_after_hits:.0f}"))
        procs.stop(process)

        for entries in FOOTPRINT_SIZES:
            skip = quick and entries > FOOTPRINT_SIZES[0]
            rows += footprint_rows(
                entries, None if skip else footprint(procs, work, fake_url, entries)
            )
    return rows + machine_rows(generator, seconds, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="seconds per round (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server (default 3)")
    parser.add_argument(
        "--quick", action="store_true", help="skip the 1,000,000 cached runs measurement"
    )
    parser.add_argument("--serve", choices=("fake", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.port)
        return
    if args.seconds < 1 or args.rounds < 1:
        parser.error("--seconds and --rounds must be at least 1")
    # SIGTERM unwinds like Ctrl-C, so the servers are stopped and the files removed.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        rows = run(args.seconds, args.rounds, args.quick)
    except BenchError as e:
        sys.exit(f"bench: {e}")
    except KeyboardInterrupt:
        sys.exit("bench: interrupted; servers stopped, files removed")
    print(render(rows))
    say("done")


def _exit_on_signal(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    main()
