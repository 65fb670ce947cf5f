"""The gateway's own client (gateway/upstream/wire.py) against a raw TCP upstream: what it sends,
how it keeps connections, and how it fails. The gateway's answers to each failure are in
test_faults.py, which runs over this client (and over aiohttp's in `make test-fallback`)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.config import UpstreamSettings
from gateway.errors import UpstreamTimeoutError
from gateway.upstream import wire
from gateway.upstream.client import UpstreamClient
from gateway.upstream.errors import before_sending, cause_of, error_name
from tests.conftest import eventually
from tests.fault_servers import FaultServer, hang_up, head, raw, respond, slow, trickle
from tests.fault_servers import faulty as faulty  # the fixture

PATH = "/v1/tasks/runs/trun_wire"
GOOD = b'{"run_id":"trun_wire","status":"completed"}'


@pytest.fixture
async def pool(faulty: FaultServer) -> AsyncIterator[wire.WirePool]:
    pool = wire.WirePool(faulty.base_url, connect_timeout=5)
    yield pool
    pool.close()


async def get(
    pool: wire.WirePool, method: str = "GET", seconds: float = 5, *, silence: bool = False
) -> bytes:
    answer = await pool.request(method, PATH, {"x-api-key": "team"}, None, seconds, silence=silence)
    try:
        assert answer.status == 200
        return await answer.read()
    finally:
        answer.release()


def test_the_request_head_is_the_one_aiohttp_would_write() -> None:
    headers = {"x-api-key": "team", "Content-Type": "application/json"}
    assert wire.request_head("POST", "/v1/tasks/runs", "api.parallel.ai", headers, b"{}") == (
        b"POST /v1/tasks/runs HTTP/1.1\r\nHost: api.parallel.ai\r\nx-api-key: team\r\n"
        b"Content-Type: application/json\r\nAccept: */*\r\nContent-Length: 2\r\n\r\n"
    )
    assert wire.request_head("GET", PATH + "?a=1", "h:8080", {"Accept": "text/plain"}, None) == (
        b"GET /v1/tasks/runs/trun_wire?a=1 HTTP/1.1\r\nHost: h:8080\r\nAccept: text/plain\r\n\r\n"
    )
    assert wire.request_head("POST", "/v1/x", "h", {}, None).endswith(b"Content-Length: 0\r\n\r\n")


async def test_calls_one_after_another_share_one_connection(
    faulty: FaultServer, pool: wire.WirePool
) -> None:
    faulty.routes[PATH] = GOOD
    assert [await get(pool) for _ in range(3)] == [GOOD] * 3
    assert (faulty.count(PATH), faulty.connections) == (3, 1)


async def test_an_answer_that_says_close_closes_its_connection(
    faulty: FaultServer, pool: wire.WirePool
) -> None:
    faulty.add(PATH, [respond(200, GOOD, {"Connection": "close"})])
    faulty.routes[PATH] = GOOD
    assert [await get(pool), await get(pool)] == [GOOD, GOOD]
    assert faulty.connections == 2


async def test_a_kept_connection_upstream_drops_sends_a_get_again_once(
    faulty: FaultServer, pool: wire.WirePool
) -> None:
    faulty.add(PATH, [respond(200, GOOD), hang_up(reset=False)])
    faulty.routes[PATH] = GOOD
    assert [await get(pool), await get(pool)] == [GOOD, GOOD]
    assert (faulty.count(PATH), faulty.connections) == (3, 2)


async def test_a_post_is_never_sent_again(faulty: FaultServer, pool: wire.WirePool) -> None:
    faulty.add(PATH, [respond(200, GOOD), hang_up(reset=False)])
    assert await get(pool, "POST") == GOOD
    with pytest.raises(wire.Disconnected) as caught:
        await get(pool, "POST")
    assert faulty.count(PATH) == 2
    assert (error_name(caught.value), before_sending(caught.value)) == (
        "ServerDisconnectedError",
        False,
    )
    assert cause_of(caught.value) == "closed the connection before answering"


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + GOOD,  # until the connection closes
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n"
        + GOOD[:5]
        + f"\r\n{len(GOOD) - 5:x}\r\n".encode()
        + GOOD[5:]
        + b"\r\n0\r\n\r\n",
    ],
    ids=["until-close", "chunked"],
)
async def test_a_body_without_content_length_is_read_whole(
    faulty: FaultServer, pool: wire.WirePool, answer: bytes
) -> None:
    faulty.add(PATH, [raw(answer)])
    assert await get(pool) == GOOD


async def test_a_large_body_comes_in_pieces_and_whole(
    faulty: FaultServer, pool: wire.WirePool
) -> None:
    body = bytes(range(256)) * 8192  # 2 MiB, past the high-water mark
    faulty.add(PATH, [respond(200, body)])
    answer = await pool.request("GET", PATH, {}, None, 10)
    assert answer.content_length == len(body)
    pieces = [piece async for piece in answer.content.iter_any()]
    answer.release()
    assert b"".join(pieces) == body
    assert len(pieces) > 1
    faulty.routes[PATH] = GOOD
    assert await get(pool) == GOOD
    assert faulty.connections == 1  # read whole: kept


async def test_a_call_past_its_time_fails_and_its_connection_goes(
    faulty: FaultServer, pool: wire.WirePool
) -> None:
    faulty.add(PATH, [slow(5.0, respond(200, GOOD))])
    with pytest.raises(TimeoutError) as caught:
        await get(pool, seconds=0.2)
    assert cause_of(caught.value) == "did not answer in time"
    faulty.routes[PATH] = GOOD
    assert await get(pool) == GOOD
    assert faulty.connections == 2


async def test_an_answer_that_is_not_http_fails_as_such(
    faulty: FaultServer, pool: wire.WirePool
) -> None:
    faulty.add(PATH, [raw(b"SSH-2.0-OpenSSH_9.6\r\n")])
    with pytest.raises(wire.NotHttp) as caught:
        await get(pool)
    assert (error_name(caught.value), cause_of(caught.value)) == (
        "ClientResponseError",
        "answered something that is not HTTP",
    )


async def test_a_refused_connection_sent_nothing(faulty: FaultServer) -> None:
    await faulty.stop()
    pool = wire.WirePool(faulty.base_url, connect_timeout=5)
    with pytest.raises(wire.ConnectFailed) as caught:
        await get(pool)
    assert (error_name(caught.value), before_sending(caught.value)) == (
        "ClientConnectorError",
        True,
    )
    assert cause_of(caught.value) == "could not be reached: the connection was refused"


async def held_call(faulty: FaultServer, pool: wire.WirePool) -> asyncio.Task[bytes]:
    """A GET that upstream has received and holds (5 s) before answering."""
    faulty.add(PATH, [slow(5.0, respond(200, GOOD))])
    call = asyncio.create_task(get(pool))
    await eventually(lambda: faulty.count(PATH) == 1)
    return call


@pytest.fixture
def unaccepting() -> Iterator[str]:
    """An upstream whose accept queue is full: a new connection is never accepted."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            for filler in fillers:
                filler.close()


@pytest.mark.parametrize(
    ("connect_timeout", "seconds", "silence", "name", "cause"),
    [
        # The connect limit ran out: aiohttp's ConnectionTimeoutError.
        pytest.param(
            0.2, 5.0, False, "ConnectionTimeoutError", "did not accept a connection in time",
            id="connect-limit",
        ),
        # A short call's own time ran out while connecting (a retry late in upstream.deadline):
        # aiohttp's client names that a plain TimeoutError, and so does this one.
        pytest.param(5.0, 0.2, False, "TimeoutError", "did not answer in time", id="call-time"),
        # A long call's connect has the connect limit alone, as aiohttp's sock_connect.
        pytest.param(
            0.2, 0.1, True, "ConnectionTimeoutError", "did not accept a connection in time",
            id="long-call",
        ),
    ],
)  # fmt: skip
async def test_a_connection_never_accepted_fails_by_the_limit_that_ran_out(
    unaccepting: str, connect_timeout: float, seconds: float, silence: bool, name: str, cause: str
) -> None:
    pool = wire.WirePool(unaccepting, connect_timeout=connect_timeout)
    try:
        with pytest.raises(TimeoutError) as caught:
            await pool.request("POST", PATH, {}, b"{}", seconds, silence=silence)
    finally:
        pool.close()
    assert (error_name(caught.value), cause_of(caught.value)) == (name, cause)
    # Whichever limit ran out, nothing was sent: a create may be sent again.
    assert before_sending(caught.value)


async def test_a_reloaded_connect_timeout_limits_the_next_connect(unaccepting: str) -> None:
    """SIGHUP reconfigures the client: the next connect has the new limit, not the first (a
    connect still waiting on the first, 60 s, fails the test at 10 s), over either client."""
    settings = UpstreamSettings(base_url=unaccepting, connect_timeout=60.0, max_attempts=1)
    async with aiohttp.ClientSession() as session:
        client = UpstreamClient(settings, "team-key", session)
        client.reconfigure(dataclasses.replace(settings, connect_timeout=0.2))
        try:
            with pytest.raises(UpstreamTimeoutError) as caught:
                await asyncio.wait_for(client.get("/v1/tasks/runs/trun_x/input", {}), 10)
        finally:
            client.close()
    cause = caught.value.__cause__
    assert cause is not None
    assert error_name(cause) == "ConnectionTimeoutError"


async def test_an_https_upstream_is_reached_only_with_a_certificate_it_trusts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Parallel is https: the handshake checks the certificate against the system's CAs
    (which SSL_CERT_FILE names here), and a certificate it does not trust sends nothing."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=GOOD)

    app = web.Application()
    app.router.add_get(PATH, answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=context)
    base_url = f"https://127.0.0.1:{server.port}"
    untrusted = wire.WirePool(base_url, connect_timeout=5)
    trusted = None
    try:
        with pytest.raises(wire.ConnectFailed) as caught:
            await get(untrusted)
        assert cause_of(caught.value) == "could not be reached: the TLS handshake failed"
        assert before_sending(caught.value)
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
        trusted = wire.WirePool(base_url, connect_timeout=5)
        assert await get(trusted) == GOOD
    finally:
        for pool in (untrusted, trusted):
            if pool is not None:
                pool.close()
        await server.close()


async def test_an_app_that_leaves_closes_the_connection(
    faulty: FaultServer, pool: wire.WirePool
) -> None:
    call = await held_call(faulty, pool)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    faulty.routes[PATH] = GOOD
    assert await get(pool) == GOOD
    assert faulty.connections == 2  # the abandoned one was not reused


async def test_an_answer_closed_midway_ends_its_reader(
    faulty: FaultServer, pool: wire.WirePool
) -> None:
    """The gateway shutting down closes a relayed answer: its reader stops, the connection goes."""
    faulty.add(PATH, [trickle(GOOD * 100, 50, 0.05)])
    answer = await pool.request("GET", PATH, {}, None, 10)
    pieces = answer.content.iter_any()
    first = await anext(pieces)
    answer.close()
    with pytest.raises(wire.BrokenAnswer):
        await anext(pieces)
    assert 0 < len(first) < len(GOOD) * 100
    faulty.routes[PATH] = GOOD
    assert await get(pool) == GOOD
    assert faulty.connections == 2


async def test_a_long_call_is_bounded_by_silence_not_by_its_length(
    faulty: FaultServer, pool: wire.WirePool
) -> None:
    """A stream that keeps talking lasts as long as it talks; one that goes quiet is cut."""
    body = GOOD * 10
    faulty.add(PATH, [trickle(body, 10, 0.05), slow(5.0, respond(200, GOOD))])
    answer = await pool.request("GET", PATH, {}, None, 0.3, silence=True)
    assert await answer.read() == body  # 0.5 s in all, never 0.3 s quiet
    answer.release()
    with pytest.raises(wire.WentSilent) as caught:
        await get(pool, seconds=0.2, silence=True)
    assert (error_name(caught.value), cause_of(caught.value)) == (
        "SocketTimeoutError",
        "did not answer in time",
    )


@pytest.mark.parametrize("size", [len(GOOD), 2 * wire.HIGH_WATER], ids=["small", "large"])
async def test_an_answer_read_twice_gives_its_body_twice(
    faulty: FaultServer, pool: wire.WirePool, size: int
) -> None:
    """As aiohttp's: the relay reads a create's answer to store it, then again to record it."""
    body = (GOOD * (size // len(GOOD) + 1))[:size]
    faulty.add(PATH, [respond(200, body)])
    answer = await pool.request("GET", PATH, {}, None, 10)
    assert [await answer.read(), await answer.read()] == [body, body]
    answer.release()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-note", "a\r\nx-api-key: other"),
        ("x-note", "a\nGET /v1/x HTTP/1.1"),
        ("x-note", "a\rb"),
        ("x-note", "a\x00b"),
        ("x-note\r\nx-api-key", "other"),
    ],
    ids=["crlf", "lf", "cr", "nul", "in-name"],
)
def test_a_line_break_in_a_header_never_reaches_upstream(name: str, value: str) -> None:
    """Defence in depth: the gateway's parser refuses these first, but were one to get here it
    would split the head, and a second header or request would go upstream with the team key."""
    with pytest.raises(ValueError, match="A line break or NUL"):
        wire.request_head("GET", PATH, "h", {name: value, "x-api-key": "team"}, None)


async def test_an_interim_answer_is_skipped_and_the_answer_is_the_calls(
    faulty: FaultServer, pool: wire.WirePool
) -> None:
    """A 103 (or 100 Continue) before the answer is not the answer: were it taken for one, the
    real answer would reach the next call on the connection."""
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n"
    faulty.add(PATH, [lambda peer: peer.send(early + head(200, 2) + b"ok")])
    faulty.routes[PATH] = GOOD
    assert [await get(pool), await get(pool)] == [b"ok", GOOD]
    assert faulty.connections == 1


async def test_a_connection_with_bytes_past_its_answer_is_never_reused(
    faulty: FaultServer, pool: wire.WirePool
) -> None:
    """Bytes after the answer, in the same read, would be the next call's answer."""
    stale = head(200, 2) + b"ok" + head(200, 5) + b"STALE"
    faulty.add(PATH, [lambda peer: peer.send(stale)])
    faulty.routes[PATH] = GOOD
    assert [await get(pool), await get(pool)] == [b"ok", GOOD]
    assert faulty.connections == 2


async def test_a_slow_reader_is_not_upstreams_silence(
    faulty: FaultServer, pool: wire.WirePool
) -> None:
    """Past its buffers the gateway stops reading a stream its app is slow to take; upstream,
    still sending, is not silent, and the stream goes on."""
    body = bytes(2 * wire.HIGH_WATER) + b"end"
    faulty.add(PATH, [trickle(body, 40, 0.02)])
    answer = await pool.request("GET", PATH, {}, None, 0.2, silence=True)
    await asyncio.sleep(1.0)  # the app reads nothing for longer than the silence allowed
    assert await answer.read() == body
    answer.release()


async def test_closing_the_pool_ends_a_call_waiting_for_its_answer(
    faulty: FaultServer, pool: wire.WirePool
) -> None:
    call = await held_call(faulty, pool)
    pool.close()
    with pytest.raises(wire.Disconnected):
        await call
