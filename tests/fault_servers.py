"""A raw TCP upstream for faults below HTTP: slow, trickling, cut off, reset, or not HTTP at all.

aiohttp's own server always speaks correct HTTP, so faults that break the protocol are written
here byte by byte. Each request's answer is an `Answer`: an async function that writes to the
connection and says whether it may serve another request (keep-alive).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import pytest

REASONS = {
    200: "OK",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class Peer:
    """One accepted connection, as an answer sees it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        # drain() then waits until the kernel has every byte, so a reset lands after them.
        writer.transport.set_write_buffer_limits(high=0)

    async def send(self, data: bytes) -> bool:
        """Write `data` and wait until the kernel has it; False if the client has gone."""
        try:
            self.writer.write(data)
            await self.writer.drain()
        except ConnectionError:
            return False
        return not self.writer.transport.is_closing()

    async def pause(self, seconds: float) -> bool:
        """Wait `seconds`; False as soon as the client hangs up (the answer should stop)."""
        try:
            async with asyncio.timeout(seconds):
                await self.reader.read(1)  # b"" at end of stream; clients never pipeline
        except TimeoutError:
            return True
        except ConnectionError:
            return False
        return False

    def reset(self) -> None:
        """Abort the connection with a TCP RST rather than an orderly FIN."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Answer = Callable[[Peer], Awaitable[bool]]


def head(status: int, length: int | None, headers: Mapping[str, str] | None = None) -> bytes:
    """A status line and headers, with Content-Length when `length` is given."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def respond(
    status: int,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    content_type: str = "application/json",
) -> Answer:
    """A well-formed answer; the connection stays open for the next request."""

    async def answer(peer: Peer) -> bool:
        return await peer.send(
            head(status, len(body), {"Content-Type": content_type, **(headers or {})}) + body
        )

    return answer


def slow(delay: float, then: Answer) -> Answer:
    """Say nothing at all for `delay` seconds, then answer as `then` does."""

    async def answer(peer: Peer) -> bool:
        return await peer.pause(delay) and await then(peer)

    return answer


def trickle(body: bytes, pieces: int, interval: float, status: int = 200) -> Answer:
    """The head at once, then the body in `pieces` parts, `interval` seconds apart."""
    size = -(-len(body) // pieces)
    parts = [body[i : i + size] for i in range(0, len(body), size)]

    async def answer(peer: Peer) -> bool:
        if not await peer.send(head(status, len(body), {"Content-Type": "application/json"})):
            return False
        for part in parts:
            if not (await peer.pause(interval) and await peer.send(part)):
                return False
        return True

    return answer


def cut(body: bytes, after: int, *, reset: bool) -> Answer:
    """Promise all of `body` (Content-Length) but send `after` bytes, then close or reset."""

    async def answer(peer: Peer) -> bool:
        sent = await peer.send(head(200, len(body), {"Content-Type": "application/json"}))
        if sent and await peer.send(body[:after]) and reset:
            # Let the client read what was sent, so the reset lands mid-body, not before it.
            await peer.pause(0.02)
            peer.reset()
        return False

    return answer


def hang_up(*, reset: bool) -> Answer:
    """Read the request, then close (FIN) or reset (RST) without a byte of answer."""

    async def answer(peer: Peer) -> bool:
        if reset:
            peer.reset()
        return False

    return answer


def swallow() -> Answer:
    """Read the whole request, body included, and never answer: wait until the client hangs up."""

    async def answer(peer: Peer) -> bool:
        with contextlib.suppress(ConnectionError):
            while await peer.reader.read(64 * 1024):
                pass
        return False

    return answer


def raw(data: bytes) -> Answer:
    """Send `data` as it is (not HTTP, or not valid HTTP), then close."""

    async def answer(peer: Peer) -> bool:
        if data:
            await peer.send(data)
        return False

    return answer


class FaultServer:
    """Answers each path from its script (once per answer), then from `routes` (200), else 404."""

    def __init__(self) -> None:
        self.script: defaultdict[str, deque[Answer]] = defaultdict(deque)
        self.routes: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.connections = 0  # accepted, ever
        self.port = 0
        self._server: asyncio.Server | None = None
        self._peers: dict[asyncio.StreamWriter, asyncio.Task[Any]] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, path: str, answers: Iterable[Answer]) -> None:
        self.script[path].extend(answers)

    def count(self, path: str) -> int:
        return self.requests.count(path)

    async def start(self) -> None:
        """Listen on 127.0.0.1: a new port the first time, the same port after `stop`."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every open connection: connections are refused from now."""
        if self._server is None:
            return
        self._server.close()
        for writer in self._peers:
            writer.transport.abort()
        await asyncio.gather(*self._peers.values())
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._peers[writer] = task
        self.connections += 1
        peer = Peer(reader, writer)
        try:
            while True:
                try:
                    request = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                path = request.split(b" ", 2)[1].decode("latin-1")
                self.requests.append(path)
                if not await self._answer(path)(peer):
                    return
        finally:
            del self._peers[writer]
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _answer(self, path: str) -> Answer:
        if self.script[path]:
            return self.script[path].popleft()
        body = self.routes.get(path)
        if body is not None:
            return respond(200, body)
        return respond(
            404,
            b'{"type":"error","error":{"ref_id":"fault-server-404",'
            b'"message":"Run id not found","detail":null}}',
        )


@pytest.fixture
async def faulty() -> AsyncIterator[FaultServer]:
    """A FaultServer listening, stopped after the test (a test module takes it by importing it:
    `from tests.fault_servers import faulty as faulty`)."""
    server = FaultServer()
    await server.start()
    yield server
    await server.stop()
