"""Request-head limits (414, 431, 400), the header timeout (408), and what they must not cut."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine, LineTooLong

from gateway.config import ConfigError, ServerSettings, Settings, settings_from_dict
from gateway.http.connection import Refusal, refusal_for
from gateway.http.request_head import ParserLimits, over_limits, parser_limits
from tests.conftest import (
    Gateway,
    ServerFactory,
    StartGateway,
    capture_logs,
)
from tests.fake_upstream import TEAM_KEY, FakeUpstream
from tests.raw_http import RawReply, connect, read_reply, request, send_raw
from tests.serve_support import launch_serve

UUID_LENGTH = 36
# Small limits, so a test can stand just at and just past each one; the line and field limits
# differ, so each status is told apart by either route aiohttp offers. The gateway measures a
# request line by its URL, and a header field by its name and its value apart, as aiohttp's C
# parser does, with its Python parser too (make test-pure-python).
SMALL = {"max_line_bytes": 100, "max_header_bytes": 80, "max_headers": 10, "header_timeout": 0.3}


async def trickle(writer: asyncio.StreamWriter, data: bytes, pause: float) -> None:
    """Send `data` a byte at a time, until it is all sent or the server hangs up."""
    with contextlib.suppress(ConnectionError):
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(pause)


def assert_error_response(reply: RawReply, status: int, message: str) -> str:
    """The reply is the gateway's own ErrorResponse; return its ref_id."""
    assert reply.status == status
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.headers["x-gateway-request-id"]
    assert reply.closed
    body = orjson.loads(reply.body)
    assert body == {
        "type": "error",
        "error": {"ref_id": body["error"]["ref_id"], "message": message, "detail": None},
    }
    ref_id: str = body["error"]["ref_id"]
    assert len(ref_id) == UUID_LENGTH
    return ref_id


@pytest.fixture
async def small(start_gateway: StartGateway, make_settings: Callable[..., Settings]) -> Gateway:
    return await start_gateway(make_settings(server=SMALL))


LINE_414 = "Request line is longer than the gateway's limit of 100 bytes."
FIELD_431 = "A request header field is longer than the gateway's limit of 80 bytes."
COUNT_431 = "Request has more header fields than the gateway's limit of 10."
BAD_400 = "Bad request: not a valid HTTP/1.0 or HTTP/1.1 request."


@pytest.mark.parametrize(
    ("data", "status", "message", "reason"),
    [
        pytest.param(request("/v1/" + "a" * 97), 414, LINE_414, "uri-too-long", id="url-101"),
        pytest.param(request("/v1/" + "a" * 5000), 414, LINE_414, "uri-too-long", id="url-5000"),
        pytest.param(
            b"\r\n" + request("/v1/" + "a" * 97), 414, LINE_414, "uri-too-long", id="after-crlf"
        ),
        pytest.param(
            request("/v1/x", "x-long: " + "v" * 81), 431, FIELD_431, "header-too-large", id="value"
        ),
        pytest.param(
            request("/v1/x", "x-" + "n" * 79 + ": v"), 431, FIELD_431, "header-too-large", id="name"
        ),
        pytest.param(
            request("/v1/x", *[f"x-{n}: v" for n in range(10)]),
            431,
            COUNT_431,
            "too-many-headers",
            id="11-fields",
        ),
        pytest.param(b"HELLO\r\n\r\n", 400, BAD_400, "bad-request", id="not-http"),
        pytest.param(request("/v1/x", "bad header"), 400, BAD_400, "bad-request", id="no-colon"),
        pytest.param(request("/v1/x", "x-nul: a\x00b"), 400, BAD_400, "bad-request", id="nul"),
        pytest.param(
            b"GET /v1/x HTTP/1.1\r\n\r\n", 400, BAD_400, "bad-request", id="no-host-header"
        ),
    ],
)
async def test_refused_heads_get_an_error_response_and_reach_nothing(
    small: Gateway,
    upstream: FakeUpstream,
    data: bytes,
    status: int,
    message: str,
    reason: str,
) -> None:
    with capture_logs() as logs:
        reply = await send_raw(small.url, data)

    ref_id = assert_error_response(reply, status, message)
    errors = [line for line in logs if line["event"] == "gateway.error"]
    assert [(e["status"], e["reason"], e["ref_id"]) for e in errors] == [(status, reason, ref_id)]
    assert errors[0]["request_id"] == reply.headers["x-gateway-request-id"]
    assert upstream.count() == 0


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(request("/v1/tasks/runs/" + "a" * 85), id="url-100"),
        pytest.param(request("/v1/x", "x-long: " + "v" * 72), id="field-80"),
        pytest.param(request("/v1/x", *[f"x-{n}: v" for n in range(9)]), id="10-fields"),
    ],
)
async def test_a_head_just_at_each_limit_is_served(small: Gateway, data: bytes) -> None:
    reply = await send_raw(small.url, data)
    # Past the parser: the gateway itself answers, here for the missing key.
    assert reply.status == 401


async def test_default_limits_are_aiohttps(gateway: Gateway, upstream: FakeUpstream) -> None:
    url_8190 = "/v1/tasks/runs/" + "a" * (8190 - 15)
    at_limit = await send_raw(gateway.url, request(url_8190))
    over = await send_raw(gateway.url, request(url_8190 + "a"))
    field_over = await send_raw(gateway.url, request("/v1/x", "x-a: " + "v" * 8191))
    fields = [f"x-{n}: v" for n in range(128)]

    assert at_limit.status == 401
    assert_error_response(
        over, 414, "Request line is longer than the gateway's limit of 8190 bytes."
    )
    assert field_over.status == 431
    assert (await send_raw(gateway.url, request("/v1/x", *fields[:127]))).status == 401
    assert (await send_raw(gateway.url, request("/v1/x", *fields))).status == 431
    assert upstream.count() == 0


async def test_a_long_url_trickled_in_pieces_is_still_414(small: Gateway) -> None:
    reader, writer = await connect(small.url)
    data = request("/v1/" + "a" * 200)
    for start in range(0, len(data), 30):
        writer.write(data[start : start + 30])
        await writer.drain()
    reply = await read_reply(reader)
    writer.close()
    await writer.wait_closed()

    assert_error_response(reply, 414, LINE_414)


async def test_a_long_header_trickled_in_pieces_is_431(small: Gateway) -> None:
    reader, writer = await connect(small.url)
    data = request("/v1/x", "x-long: " + "v" * 300)
    for start in range(0, len(data), 30):
        writer.write(data[start : start + 30])
        await writer.drain()
    reply = await read_reply(reader)
    writer.close()
    await writer.wait_closed()

    assert_error_response(reply, 431, FIELD_431)


@pytest.mark.parametrize(
    ("target", "fields", "expected"),
    [
        pytest.param("/" + "a" * 99, [("x", "v")] * 10, None, id="at-each-limit"),
        pytest.param("/" + "a" * 100, [], 414, id="target"),
        pytest.param("/", [("n" * 81, "v")], 431, id="name"),
        pytest.param("/", [("x", "v" * 81)], 431, id="value"),
        pytest.param("/", [("x", "v")] * 11, 431, id="count"),
    ],
)
def test_over_limits_measures_as_llhttp(
    target: str, fields: list[tuple[str, str]], expected: int | None
) -> None:
    limits = ServerSettings(**SMALL)  # type: ignore[arg-type]
    raw = [(name.encode(), value.encode()) for name, value in fields]
    refusal = over_limits(target, raw, limits)
    assert (refusal.status if refusal else None) == expected


def test_the_python_parser_gets_limits_the_gateways_reach_first() -> None:
    limits = ServerSettings(**SMALL)  # type: ignore[arg-type]
    assert parser_limits(limits, whole_lines=False) == ParserLimits(100, 80, 10, checked=False)
    # A whole line holds a method, a version, a name and its value: room for the largest.
    assert parser_limits(limits, whole_lines=True) == ParserLimits(224, 224, 12, checked=True)


async def test_a_pipelined_long_url_is_told_by_the_limit_it_broke(small: Gateway) -> None:
    reader, writer = await connect(small.url)
    writer.write(request("/healthz") + request("/v1/" + "a" * 200))
    replies = [await read_reply(reader)]
    while not replies[-1].closed:
        replies.append(await read_reply(reader))
    writer.close()
    await writer.wait_closed()

    # aiohttp's C parser refuses the whole chunk, its Python parser the second request only:
    # either way the refusal is the second request's, whose line was the one too long.
    assert [r.status for r in replies[:-1]] in ([], [200])
    assert_error_response(replies[-1], 414, LINE_414)


async def test_body_over_max_body_bytes_is_413(
    start_gateway: StartGateway, make_settings: Callable[..., Settings], upstream: FakeUpstream
) -> None:
    gateway = await start_gateway(make_settings(server={"max_body_bytes": 100}))
    data = (
        "POST /v1/tasks/runs HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        f"Content-Length: 101\r\nx-api-key: {gateway.app_key}\r\nConnection: close\r\n\r\n"
    ).encode() + b"x" * 101

    reply = await send_raw(gateway.url, data)

    assert_error_response(
        reply, 413, "Request body is larger than the gateway's limit of 100 bytes."
    )
    assert upstream.count() == 0


async def test_a_trickled_head_gets_408_after_header_timeout(small: Gateway) -> None:
    reader, writer = await connect(small.url)
    started = time.monotonic()
    with capture_logs() as logs:
        # 2 s of head at this pace, far past the 0.3 s timeout.
        sending = asyncio.create_task(trickle(writer, request("/healthz", "x-slow: abc"), 0.05))
        reply = await asyncio.wait_for(read_reply(reader), 2)
        elapsed = time.monotonic() - started
        assert await reader.read() == b""
        sending.cancel()
    writer.close()
    await writer.wait_closed()

    ref_id = assert_error_response(reply, 408, "The request's head did not arrive in time.")
    assert 0.3 <= elapsed < 1.5
    errors = [line for line in logs if line["event"] == "gateway.error"]
    assert [(e["status"], e["reason"], e["ref_id"]) for e in errors] == [
        (408, "request-timeout", ref_id)
    ]


async def test_a_connection_that_sends_nothing_is_closed_quietly(small: Gateway) -> None:
    reader, writer = await connect(small.url)
    started = time.monotonic()

    assert await asyncio.wait_for(reader.read(), 2) == b""
    assert 0.3 <= time.monotonic() - started < 1.5
    writer.close()
    await writer.wait_closed()


async def test_an_idle_keep_alive_connection_is_not_cut(small: Gateway) -> None:
    reader, writer = await connect(small.url)
    replies = []
    for _ in range(3):
        writer.write(request("/healthz"))
        replies.append(await read_reply(reader))
        await asyncio.sleep(0.2)  # 0.6 s idle in all, twice the header timeout
    writer.close()
    await writer.wait_closed()

    assert [(r.status, r.closed) for r in replies] == [(200, False)] * 3


async def test_each_request_on_a_connection_gets_the_whole_timeout(small: Gateway) -> None:
    reader, writer = await connect(small.url)
    statuses = []
    for _ in range(3):  # 0.2 s per head, 0.6 s in all: each head is timed on its own
        data = request("/healthz")
        writer.write(data[:10])
        await asyncio.sleep(0.2)
        writer.write(data[10:])
        statuses.append((await read_reply(reader)).status)
    writer.close()
    await writer.wait_closed()

    assert statuses == [200, 200, 200]


class SlowUpstream:
    """Streams events for longer than the header timeout, and reads bodies slowly sent."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.app = web.Application()
        self.app.router.add_get("/v1/tasks/runs/{run_id}/events", self.events)
        self.app.router.add_post("/v1/tasks/runs", self.create)

    async def events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for n in range(8):
            await response.write(f"event: tick\ndata: {n}\n\n".encode())
            await asyncio.sleep(0.1)
        await response.write_eof()
        return response

    async def create(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        return web.json_response({"run_id": "trun_slow"}, status=202)


@pytest.fixture
async def slow_gateway(
    aiohttp_server: ServerFactory,
    start_gateway: StartGateway,
    make_settings: Callable[..., Settings],
) -> tuple[Gateway, SlowUpstream]:
    slow = SlowUpstream()
    server = await aiohttp_server(slow.app)
    base_url = str(server.make_url("")).rstrip("/")
    return await start_gateway(make_settings(server=SMALL, upstream={"base_url": base_url})), slow


async def test_a_stream_and_a_slow_body_outlast_the_header_timeout(
    slow_gateway: tuple[Gateway, SlowUpstream],
) -> None:
    gateway, slow = slow_gateway

    async def trickle() -> AsyncIterator[bytes]:
        for n in range(6):  # 0.6 s of body
            yield b'{"n": %d}' % n
            await asyncio.sleep(0.1)

    headers = {"x-api-key": gateway.app_key}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(f"{gateway.url}/v1/tasks/runs/trun_1/events") as resp:
            events = [line async for line in resp.content if line.startswith(b"data:")]
        async with session.post(f"{gateway.url}/v1/tasks/runs", data=trickle()) as resp:
            created = (resp.status, await resp.json())

    assert events == [f"data: {n}\n".encode() for n in range(8)]
    assert created == (202, {"run_id": "trun_slow"})
    assert slow.bodies == [b"".join(b'{"n": %d}' % n for n in range(6))]


@pytest.mark.parametrize(
    ("status", "exc", "in_line", "expected"),
    [
        pytest.param(400, LineTooLong(b"/a", 100), True, 414, id="line-in-request-line"),
        pytest.param(400, LineTooLong(b"/a", 100), False, 414, id="line-by-its-limit"),
        pytest.param(400, LineTooLong(b"v", 80), False, 431, id="field"),
        pytest.param(400, BadHttpMessage("Too many headers received"), False, 431, id="count"),
        pytest.param(400, BadStatusLine("x"), False, 400, id="bad-status-line"),
        pytest.param(500, RuntimeError("x"), False, 500, id="handler-error"),
        pytest.param(504, TimeoutError(), False, 504, id="handler-timeout"),
    ],
)
def test_refusal_for(status: int, exc: BaseException, in_line: bool, expected: int) -> None:
    limits = ServerSettings(max_line_bytes=100, max_header_bytes=80)
    assert refusal_for(status, exc, in_line, limits).status == expected


def test_equal_limits_leave_a_field_error_a_field_error() -> None:
    limits = ServerSettings()  # both 8190
    refusal = refusal_for(400, LineTooLong(b"v", 8190), False, limits)
    assert refusal == Refusal(
        431,
        "header-too-large",
        "A request header field is longer than the gateway's limit of 8190 bytes.",
    )


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("max_line_bytes", 0, "Must be a whole number from 1 to 1048576"),
        ("max_header_bytes", 1048577, "Must be a whole number from 1 to 1048576"),
        ("max_headers", -1, "Must be a whole number from 1 to 1048576"),
        ("header_timeout", 0.0, "Must be a finite number greater than 0"),
        ("header_timeout", float("inf"), "Must be a finite number greater than 0"),
    ],
)
def test_bad_limits_are_refused(key: str, value: float, why: str) -> None:
    with pytest.raises(ConfigError) as e:
        settings_from_dict({"server": {key: value}})
    assert str(e.value) == f"Config 'server.{key}' has value {value!r}. {why}."


async def test_serve_applies_the_limits_and_the_header_timeout(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        "[server]\nmax_line_bytes = 100\nmax_header_bytes = 80\nmax_headers = 10\n"
        "header_timeout = 0.3\n"
        f'[storage]\ndatabase = "{tmp_path / "gw.db"}"\n'
        f'[upstream]\nbase_url = "{upstream.base_url}"\n'
    )
    proc, url = await launch_serve(config, env={"PARALLEL_API_KEY": TEAM_KEY})
    try:
        too_long = await send_raw(url, request("/v1/" + "a" * 97))
        too_many = await send_raw(url, request("/v1/x", *[f"x-{n}: v" for n in range(10)]))
        reader, writer = await connect(url)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n")  # and nothing more
        timed_out = await asyncio.wait_for(read_reply(reader), 2)
        writer.close()
        await writer.wait_closed()
    finally:
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, err.decode()

    ref_414 = assert_error_response(too_long, 414, LINE_414)
    ref_431 = assert_error_response(too_many, 431, COUNT_431)
    ref_408 = assert_error_response(timed_out, 408, "The request's head did not arrive in time.")
    lines = [orjson.loads(line) for line in err.splitlines()]
    logged = [(e["status"], e["ref_id"]) for e in lines if e["event"] == "gateway.error"]
    assert logged == [(414, ref_414), (431, ref_431), (408, ref_408)]
    assert upstream.count() == 0
