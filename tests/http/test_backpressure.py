"""A stream whose app stops reading: the gateway stops reading upstream, and holds no more."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.base_protocol import BaseProtocol

from gateway.config import StorageSettings
from gateway.keys.app_keys import create_key
from tests.conftest import ServerFactory, eventually
from tests.fake_upstream import TEAM_KEY
from tests.serve_support import launch_serve
from tests.storage_support import opened_storage

EVENT = b"event: task_run.progress_msg\ndata: " + b"x" * 16_000 + b"\n\n"
# What the app's socket may hold: set small, so the kernel does not grow it.
APP_RCVBUF = 64 * 1024
# Round trips to the gateway after upstream blocked, each one a turn of its event loop in which
# it could have read on, had it not stopped.
LATER_ROUND_TRIPS = 50
SETTLE_ATTEMPTS = 20
# The gateway's own buffers: the client StreamReader's high-water mark (2 x 64 KiB), the
# transport's write buffer (64 KiB high water, plus one chunk), a read of up to 256 KiB.
AIOHTTP_BUFFERS = 1024 * 1024
# Most the gateway's RSS may grow by while the stream is stuck (its buffers, allocator slack);
# the socket buffers are the kernel's, not in it.
GATEWAY_GROWTH = 4 * 1024 * 1024


class FloodingUpstream:
    """/events writes events as fast as its transport takes them, counting the bytes whose
    write() returned."""

    def __init__(self) -> None:
        self.sent = 0
        self.app = web.Application()
        self.app.router.add_get("/v1/tasks/runs/{run_id}/events", self.events)
        self._protocol: BaseProtocol | None = None

    @property
    def blocked(self) -> bool:
        """Whether its transport's buffer is full: the write under way waits for it to drain."""
        return self._protocol is not None and self._protocol.writing_paused

    async def events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        self._protocol = request.protocol
        while True:
            await response.write(EVENT)  # returns only once the transport has room again
            self.sent += len(EVENT)


async def round_trips(url: str, count: int) -> None:
    """`count` calls to the gateway, one after another: turns of its event loop."""
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            async with session.get(url + "/healthz") as resp:
                assert resp.status == 200


async def until_settled(upstream: FloodingUpstream, url: str) -> int:
    """The bytes upstream sent once its write stayed blocked across LATER_ROUND_TRIPS calls."""
    for _ in range(SETTLE_ATTEMPTS):
        await eventually(lambda: upstream.blocked, within=30)
        sent = upstream.sent
        await round_trips(url, LATER_ROUND_TRIPS)
        if upstream.blocked and upstream.sent == sent:
            return sent
    raise AssertionError(f"upstream never stayed blocked; it sent {upstream.sent} bytes")


def socket_buffer_bytes() -> int:
    """Most that the kernel lets the sockets between upstream and the app hold: upstream's send
    buffer, the gateway's receive and send buffers, the app's (set) receive buffer."""
    rmem = int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2])
    wmem = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    return wmem + rmem + wmem + APP_RCVBUF


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.mark.timeout(60)
async def test_a_stream_the_app_stops_reading_stops_upstream_and_holds_memory_flat(
    tmp_path: Path, aiohttp_server: ServerFactory
) -> None:
    upstream = FloodingUpstream()
    server = await aiohttp_server(upstream.app)
    database = tmp_path / "gateway.db"
    async with opened_storage(StorageSettings(database=str(database))) as storage:
        key = await create_key(storage.app_keys, "app")
    config = tmp_path / "gateway.toml"
    base_url = str(server.make_url("")).rstrip("/")
    config.write_text(f'[storage]\ndatabase = "{database}"\n[upstream]\nbase_url = "{base_url}"\n')
    log = os.open(tmp_path / "serve.log", os.O_WRONLY | os.O_CREAT)
    try:
        proc, url = await launch_serve(config, env={"PARALLEL_API_KEY": TEAM_KEY}, stderr=log)
    finally:
        os.close(log)
    port = int(url.rpartition(":")[2])
    app = socket.socket()
    app.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, APP_RCVBUF)
    app.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(app, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=app, limit=APP_RCVBUF)
        rss_before = rss_bytes(proc.pid)
        path = "/v1/tasks/runs/trun_0123456789abcdef0123456789abcdef/events"
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: gateway\r\nAccept: text/event-stream\r\n"
            f"x-api-key: {key}\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        # The app reads nothing more: the stream fills every buffer on its way (the kernel may
        # grow some as the gateway reads), then upstream's write waits for good.
        settled = await until_settled(upstream, url)
        rss_settled = rss_bytes(proc.pid)
        await round_trips(url, LATER_ROUND_TRIPS)

        bound = socket_buffer_bytes() + AIOHTTP_BUFFERS
        assert settled < bound
        assert upstream.sent < bound
        assert upstream.blocked
        # The gateway holds the little it read, not the stream: its memory stays flat.
        assert rss_settled - rss_before < GATEWAY_GROWTH
        assert rss_bytes(proc.pid) - rss_settled < GATEWAY_GROWTH
        writer.close()
    finally:
        app.close()
        proc.terminate()
        await proc.wait()
