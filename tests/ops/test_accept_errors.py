"""Out of file descriptors: a real `serve` with a low RLIMIT_NOFILE, and more connections than
it can accept. Accept errors are counted, and logged as one JSON line, not a traceback each;
and the loop's exception handler itself."""

from __future__ import annotations

import asyncio
import errno
import resource
import socket
from pathlib import Path

import aiohttp
import orjson
import pytest
from yarl import URL

from gateway.ops.loop_errors import loop_exception_handler
from gateway.ops.metrics import Metrics
from tests.cli_support import write_config
from tests.conftest import capture_logs
from tests.ops.test_ops import sample
from tests.serve_support import launch_serve

# Enough for the gateway to start (Python, SQLite's files, the listening socket), not for 100
# connections more.
FILE_LIMIT = 40


def limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))


async def accept_errors(url: str) -> float | None:
    """gateway_accept_errors_total{errno="EMFILE"} once the gateway answers again (asyncio
    retries accept() a second after running out); fails after 5 s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(URL(url) / "metrics") as resp:
                    return sample((await resp.read()).decode(), "gateway_accept_errors_total",
                                  errno="EMFILE")  # fmt: skip
            except aiohttp.ClientError:
                if loop.time() > deadline:
                    raise
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(("soft", "hard"), [(256, 4096), (256, 256)], ids=["raised", "at-hard"])
async def test_serve_raises_its_open_files_limit_to_the_hard_one_and_says_so(
    tmp_path: Path, soft: int, hard: int
) -> None:
    config = write_config(tmp_path / "gateway.toml", tmp_path / "gw.db", "")
    log_path = tmp_path / "serve.log"

    def low_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    with log_path.open("wb") as log_file:
        proc, _ = await launch_serve(config, env={}, stderr=log_file, preexec_fn=low_soft_limit)
        proc.terminate()
        assert await proc.wait() == 0
    events = [orjson.loads(line) for line in log_path.read_bytes().splitlines()]
    said = [e for e in events if e["event"] == "gateway.open_files_limit"]
    assert [(e["soft"], e["raised_from"], e["hard"]) for e in said] == [(hard, soft, hard)]


async def test_running_out_of_file_descriptors_is_counted_and_logged_once(tmp_path: Path) -> None:
    # asyncio's loop: uvloop (libuv) meets EMFILE itself, accepting and closing the connection
    # it has no descriptor for, and never reports it.
    config = write_config(
        tmp_path / "gateway.toml", tmp_path / "gw.db", "[server]\nuvloop = false\n"
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        proc, url = await launch_serve(config, env={}, stderr=log_file, preexec_fn=limit_files)
        try:
            port = URL(url).port
            assert port is not None
            clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
            try:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 5
                while b"server.accept_failed" not in log_path.read_bytes():
                    assert loop.time() < deadline, "the gateway never ran out of descriptors"
                    await asyncio.sleep(0.05)
            finally:
                for client in clients:
                    client.close()
            counted = await accept_errors(url)
        finally:
            proc.terminate()
            assert await proc.wait() == 0

    lines = log_path.read_bytes().splitlines()
    events = [orjson.loads(line) for line in lines]  # every line is JSON: no plain traceback
    failed = [event for event in events if event["event"] == "server.accept_failed"]
    assert [(e["level"], e["errno"], e["error"], e["count"]) for e in failed] == [
        ("error", "EMFILE", "Too many open files", 1)
    ]
    assert counted is not None
    assert counted >= 1  # each accept() that failed; how many depends on the backlog's timing
    assert len(lines) < 20


def test_any_other_loop_report_is_one_json_line_per_interval() -> None:
    metrics = Metrics()
    handle = loop_exception_handler(metrics)
    loop = asyncio.new_event_loop()
    try:
        with capture_logs() as logs:
            for _ in range(3):
                handle(loop, {"message": "Exception in callback", "exception": ValueError("x")})
                full = OSError(errno.ENFILE, "Too many open files in system")
                handle(loop, {"message": "accept", "exception": full, "socket": object()})
    finally:
        loop.close()

    assert [(line["event"], line["count"]) for line in logs] == [
        ("event_loop.error", 1),
        ("server.accept_failed", 1),
    ]
    assert isinstance(logs[0]["exc_info"], ValueError)
    assert logs[1]["errno"] == "ENFILE"
    text = metrics.exposition().decode()
    assert sample(text, "gateway_accept_errors_total", errno="ENFILE") == 3.0
