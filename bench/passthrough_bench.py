"""Benchmark pass-through: forwarded calls against a bare aiohttp proxy, and open calls' memory.

Run: make bench   (or .venv/bin/python -m bench.passthrough_bench [--seconds 5] [--rounds 3]
[--quick])

Everything listens on 127.0.0.1, each server in its own process: a fake Parallel that answers at
once (and holds /result and /events open), a bare aiohttp proxy (one handler, one ClientSession,
no checks), and `parallel-gateway serve` with its default config, on uvloop (the default) and
with `server.uvloop = false`; each proxy runs on the same event loop as the gateway it is
compared with. Throughput rounds alternate between the targets (wrk if installed, else an aiohttp
client); the table quotes medians as ratios to the bare proxy in the same run.

Targets: forwarded GET and POST throughput >= 0.9x the bare proxy; at one connection the gateway
adds <= 0.1 ms to calling upstream directly; <= 20 kB of RSS per open long poll or event stream.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import aiohttp

from bench import serve_bench as sb
from bench.passthrough_servers import RUN, serve
from gateway.http.fdlimit import raise_open_files_limit

CREATE = b'{"input":"What is 2+2?","processor":"lite"}'
RUN_PATH = "/v1/tasks/runs/trun_0123456789abcdef0123456789abcdef"
CREATE_PATH = "/v1/tasks/runs"
OPEN_STEPS = (1_000, 5_000)
OPEN_BATCH = 500  # connections opened at once: more would overflow the listen backlog
CREATES = 50

TARGET_RATIO = 0.9
TARGET_ADDED_MS = 0.1
TARGET_OPEN_KB = 20.0

POST_LUA = f"""wrk.method = "POST"
wrk.body = '{CREATE.decode()}'
wrk.headers["Content-Type"] = "application/json"
"""


@dataclass(frozen=True)
class Drivers:
    get: sb.Driver
    post: sb.Driver
    single: sb.Driver  # one connection, for latency
    name: str


def drivers(work: Path) -> Drivers:
    wrk = shutil.which("wrk")
    if wrk is None:
        return Drivers(
            sb.drive_aiohttp,
            functools.partial(sb.drive_aiohttp, post=CREATE),
            functools.partial(sb.drive_aiohttp, connections=1),
            f"aiohttp client, {sb.CONNECTIONS} connections (wrk not installed)",
        )
    script = work / "post.lua"
    script.write_text(POST_LUA)
    _, name = sb.load_driver()
    return Drivers(
        functools.partial(sb.drive_wrk, wrk),
        functools.partial(sb.drive_wrk, wrk, script=script),
        functools.partial(sb.drive_wrk, wrk, connections=1),
        name,
    )


def start(
    procs: sb.Processes, work: Path, name: str, *args: str
) -> tuple[str, subprocess.Popen[bytes]]:
    """Start a server of this module (`--serve ...`); return its URL and process."""
    port = sb.free_port()
    argv = [sys.executable, "-m", "bench.passthrough_bench", "--port", str(port), *args]
    process = procs.start(argv, work / f"{name}.log")
    sb.wait_until_ready(procs, process, port, RUN_PATH)
    return f"http://{sb.HOST}:{port}", process


def setup_gateways(work: Path, upstream: str) -> dict[str, sb.Gateway]:
    """A gateway for each event loop, sharing one database (and so one app key)."""
    first = sb.setup_gateway(work, "gateway-uvloop", upstream)
    gateways = {"uvloop": first}
    directory = work / "gateway-asyncio"
    directory.mkdir()
    asyncio_loop = sb.Gateway(directory, sb.free_port(), first.key)
    asyncio_loop.config.write_text(
        first.config.read_text().replace(f"port = {first.port}\n", f"port = {asyncio_loop.port}\n")
        .replace("[server]\n", "[server]\nuvloop = false\n")
    )  # fmt: skip
    gateways["asyncio"] = asyncio_loop
    return gateways


# ---- Throughput and latency ----

Row = sb.Row
LOOPS = {"uvloop": True, "asyncio": False}


def throughput_rows(
    drive: sb.Driver, method: str, targets: dict[str, sb.Target], key: str, args: Options
) -> list[Row]:
    loads = sb.hit_rounds(drive, targets, key, args.seconds, args.rounds)
    rows = []
    for loop in LOOPS:
        gateway, bare = loads[f"gateway, {loop}"], loads[f"bare proxy, {loop}"]
        ratio = gateway.rate / bare.rate
        rows.append(
            sb.row(
                f"forwarded {method} throughput, {loop}, req/s (median, {args.rounds} rounds)",
                f"{gateway.rate:,.0f} ({gateway.cpu_us:.0f} us CPU/req)",
                f"{bare.rate:,.0f} ({bare.cpu_us:.0f} us CPU/req, bare proxy)",
                f"{ratio:.2f}x",
                f">= {TARGET_RATIO:.2f}x",
                ratio >= TARGET_RATIO,
            )
        )
    return rows


def latency_rows(
    drive: sb.Driver, targets: dict[str, sb.Target], key: str, args: Options
) -> list[Row]:
    loads = sb.hit_rounds(drive, targets, key, args.seconds, args.rounds)
    direct, bare = loads["upstream directly"], loads["bare proxy, uvloop"]
    rows = [
        sb.row(
            "bare proxy GET latency p50 at one connection, uvloop, ms (the floor)",
            f"{bare.p50_ms:.3f}",
            f"{direct.p50_ms:.3f} (upstream directly)",
            f"{bare.p50_ms - direct.p50_ms:+.3f} ms",
        )
    ]
    for loop in LOOPS:
        gateway = loads[f"gateway, {loop}"]
        added = gateway.p50_ms - direct.p50_ms
        rows.append(
            sb.row(
                f"forwarded GET latency p50 at one connection, {loop}, ms",
                f"{gateway.p50_ms:.3f}",
                f"{direct.p50_ms:.3f} (upstream directly)",
                f"{added:+.3f} ms",
                f"<= +{TARGET_ADDED_MS:.1f} ms",
                added <= TARGET_ADDED_MS,
            )
        )
    return rows


# ---- Open calls: memory, and a create while they wait ----


async def held(session: aiohttp.ClientSession, upstream: str) -> int:
    async with session.get(upstream + "/held") as response:
        count: int = (await response.json())["open"]
        return count


async def until_held(session: aiohttp.ClientSession, upstream: str, count: int) -> None:
    for _ in range(6000):
        if await held(session, upstream) == count:
            return
        await asyncio.sleep(0.01)
    raise sb.BenchError(f"upstream never held {count} calls open")


async def create_ms(gateway: sb.Gateway) -> float:
    """Median ms of CREATES sequential creates through the gateway."""
    times = []
    headers = {"x-api-key": gateway.key, "content-type": sb.JSON}
    async with aiohttp.ClientSession() as session:
        for _ in range(CREATES):
            sent = time.perf_counter()
            async with session.post(gateway.url + CREATE_PATH, data=CREATE, headers=headers) as r:
                if r.status != 202 or await r.read() != RUN:
                    raise sb.BenchError(f"a create answered {r.status}")
            times.append(time.perf_counter() - sent)
    return statistics.median(times) * 1e3


@dataclass(frozen=True)
class OpenCalls:
    rss_kb: dict[int, float]  # by open calls, 0 included
    create_ms: dict[int, float]  # median create, with 0 and OPEN_STEPS[0] calls open


async def hold_open(
    gateway: sb.Gateway, pid: int, upstream: str, suffix: str, steps: tuple[int, ...]
) -> OpenCalls:
    """RSS of the gateway with 0 and each of `steps` calls to `suffix` open, held by upstream."""
    headers = {"x-api-key": gateway.key}
    if suffix == "events":
        headers["accept"] = "text/event-stream"
    url = f"{gateway.url}{RUN_PATH}/{suffix}"

    async def call(session: aiohttp.ClientSession) -> None:
        async with session.get(url, headers=headers) as response:
            await response.read()  # never ends: upstream holds it

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        creates = {0: await create_ms(gateway)}
        rss = {0: sb.rss_mb(pid) * 1e3}
        calls: list[asyncio.Task[None]] = []
        try:
            for step in steps:
                while len(calls) < step:
                    batch = min(OPEN_BATCH, step - len(calls))
                    calls += [asyncio.create_task(call(session)) for _ in range(batch)]
                    await until_held(session, upstream, len(calls))
                await asyncio.sleep(0.5)  # let the gateway settle
                rss[step] = sb.rss_mb(pid) * 1e3
                if step == steps[0] and suffix == "result":
                    creates[step] = await create_ms(gateway)
                sb.say(f"{step:,} open {suffix}: gateway RSS {rss[step] / 1e3:.1f} MB")
        finally:
            for task in calls:
                task.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
        await until_held(session, upstream, 0)
    return OpenCalls(rss, creates)


def open_rows(kind: str, result: OpenCalls) -> list[Row]:
    rows = []
    for step, rss in result.rss_kb.items():
        if step == 0:
            continue
        per_call = (rss - result.rss_kb[0]) / step
        rows.append(
            sb.row(
                f"RSS per open {kind}, {step:,} open, kB",
                f"{per_call:.1f}",
                f"{result.rss_kb[0] / 1e3:.1f} MB with none open",
                f"{rss / 1e3:.1f} MB with {step:,}",
                f"<= {TARGET_OPEN_KB:.0f} kB",
                per_call <= TARGET_OPEN_KB,
            )
        )
    return rows


def create_rows(result: OpenCalls) -> list[Row]:
    idle, busy = result.create_ms[0], result.create_ms[OPEN_STEPS[0]]
    return [
        sb.row(
            f"create, median of {CREATES} sequential, {OPEN_STEPS[0]:,} long polls open, ms",
            f"{busy:.2f}",
            f"{idle:.2f} (none open)",
            f"{busy - idle:+.2f} ms",
        )
    ]


# ---- The run ----


@dataclass(frozen=True)
class Options:
    seconds: int
    rounds: int
    quick: bool


def run(args: Options) -> list[Row]:
    raise_open_files_limit()  # this process holds the apps' end of every open call
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-pass-") as tmp, sb.Processes() as procs:
        work = Path(tmp)
        drive = drivers(work)
        sb.say(f"load generator: {drive.name}")
        upstream, upstream_process = start(procs, work, "upstream", "--serve", "upstream")
        gateways = setup_gateways(work, upstream)
        key = gateways["uvloop"].key  # the bare proxy and the fake take any key
        servers: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
        for loop, gateway in gateways.items():
            servers[f"gateway, {loop}"] = (gateway.url, sb.start_gateway(procs, gateway)[0])
            proxy = ["--serve", "proxy", "--upstream", upstream]
            proxy += [] if LOOPS[loop] else ["--no-uvloop"]
            servers[f"bare proxy, {loop}"] = start(procs, work, f"proxy-{loop}", *proxy)
        servers["upstream directly"] = (upstream, upstream_process)

        def at(path: str, names: list[str]) -> dict[str, sb.Target]:
            return {n: sb.Target(servers[n][0] + path, servers[n][1].pid) for n in names}

        sb.say("forwarded GET throughput")
        proxied = [n for n in servers if n != "upstream directly"]
        rows += throughput_rows(drive.get, "GET", at(RUN_PATH, proxied), key, args)
        sb.say("forwarded POST throughput")
        rows += throughput_rows(drive.post, "POST", at(CREATE_PATH, proxied), key, args)
        sb.say("latency at one connection")
        single = [n for n in servers if n != "bare proxy, asyncio"]
        rows += latency_rows(drive.single, at(RUN_PATH, single), key, args)
        for name in proxied:
            procs.stop(servers[name][1])

        steps = OPEN_STEPS[:1] if args.quick else OPEN_STEPS
        for suffix, kind in (("result", "long poll"), ("events", "event stream")):
            gateway = sb.setup_gateway(work, f"open-{suffix}", upstream)
            process, _ = sb.start_gateway(procs, gateway)
            result = asyncio.run(hold_open(gateway, process.pid, upstream, suffix, steps))
            rows += open_rows(kind, result)
            if suffix == "result":
                rows += create_rows(result)
            procs.stop(process)
    machine = sb.machine_rows(drive.name, args.seconds, args.rounds)
    software = f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, uvloop "
    software += f"{version('uvloop')} and asyncio (as named in each row)"
    return rows + [sb.row("software", software) if r[0] == "software" else r for r in machine]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="seconds per round (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per target (default 3)")
    parser.add_argument("--quick", action="store_true", help="open 1,000 calls, not 5,000")
    parser.add_argument("--serve", choices=("upstream", "proxy"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", default="", help=argparse.SUPPRESS)
    parser.add_argument("--no-uvloop", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        uvloop = not args.no_uvloop
        serve(args.serve, args.port, uvloop=uvloop, upstream=args.upstream, team_key=sb.TEAM_KEY)
        return
    if args.seconds < 1 or args.rounds < 1:
        parser.error("--seconds and --rounds must be at least 1")
    signal.signal(signal.SIGTERM, sb._exit_on_signal)
    try:
        rows = run(Options(args.seconds, args.rounds, args.quick))
    except sb.BenchError as e:
        sys.exit(f"bench: {e}")
    except KeyboardInterrupt:
        sys.exit("bench: interrupted; servers stopped, files removed")
    print(sb.render(rows))
    sb.say("done")


if __name__ == "__main__":
    main()
