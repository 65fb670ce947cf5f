"""What an app sends reaches upstream as it was sent, or is refused with 400 and reaches nothing:
request bodies keep their Content-Encoding, header bytes are never changed, app keys stay out
of query strings, and only HTTP/1.0 and HTTP/1.1 are spoken."""

from __future__ import annotations

import gzip
import zlib

import orjson
import pytest

from tests.conftest import capture_logs
from tests.fake_upstream import TEAM_KEY, task_run_input
from tests.passthrough_support import (
    BYPASS,
    HIT,
    STORED,
    Harness,
    ServerFactory,
    Start,
    WatchedParallel,
    error_of,
)
from tests.passthrough_support import start as start  # the fixture, with upstream below
from tests.raw_http import RawReply, send_raw
from tests.serve_support import launch_serve

RUN = "trun_9907962f83aa4d9d98fd7f4bf745d654"
CREATE = b'{"input": "q", "processor": "lite"}'


@pytest.fixture
async def upstream(aiohttp_server: ServerFactory) -> WatchedParallel:
    """FakeParallel that sees request bodies as they were sent, compressed or not."""
    return await WatchedParallel().listen(aiohttp_server, auto_decompress=False)


@pytest.fixture
async def gw(start: Start) -> Harness:
    return await start()


def head(method: str, target: str, *fields: bytes, version: bytes = b" HTTP/1.1") -> bytes:
    """A request head, byte for byte as given."""
    line = method.encode() + b" " + target.encode() + version
    return b"\r\n".join([line, b"Host: gw", *fields]) + b"\r\n\r\n"


def key_field(gw: Harness) -> bytes:
    return b"x-api-key: " + gw.keys["app"].encode()


def assert_refused(reply: RawReply, status: int, message: str) -> str:
    """The gateway's own ErrorResponse, on a connection it closes; returns the ref_id."""
    assert reply.status == status
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.closed
    error = error_of(reply.body)
    assert (error["message"], error["detail"]) == (message, None)
    return str(error["ref_id"])


# Content-Encoding


ENCODED = {
    "gzip": ("gzip", gzip.compress(CREATE)),
    "deflate": ("deflate", zlib.compress(CREATE)),
    "invalid-gzip": ("gzip", b"this is not gzip at all"),
    "unknown-coding": ("x-custom", b"\x00\x01\x02 opaque"),
}


@pytest.mark.parametrize(("coding", "body"), ENCODED.values(), ids=ENCODED)
async def test_an_encoded_body_reaches_upstream_byte_for_byte(
    gw: Harness, coding: str, body: bytes
) -> None:
    reply = await gw.request(
        "POST",
        "/v1/tasks/runs",
        data=body,
        headers={"Content-Encoding": coding, "Content-Type": "application/json"},
    )

    sent = gw.fake.last("POST", "/v1/tasks/runs")
    assert sent.body == body
    assert sent.headers["content-encoding"] == coding
    # Upstream decides what to make of it (this fake does not decompress: 422, relayed).
    assert reply.status == 422
    assert error_of(reply.body)["detail"] == {"reason": "input and processor are required"}
    assert reply.headers["Cache-Status"] == BYPASS
    assert gw.sent() == [("POST", "/v1/tasks/runs")]


async def test_a_plain_body_is_still_created(gw: Harness) -> None:
    run = await gw.sdk().task_run.create(input="q", processor="lite")

    assert gw.fake.last("POST", "/v1/tasks/runs").body == orjson.dumps(
        {"input": "q", "processor": "lite"}
    )
    assert gw.fake.runs[run.run_id].run_id == run.run_id


@pytest.mark.parametrize(
    ("size", "framing"),
    [(len(CREATE), ("35", None)), (64 * 1024 + 1, (None, "chunked"))],
    ids=["small-in-one-write", "large-streamed"],
)
async def test_a_body_of_at_most_64_kib_goes_upstream_whole_and_a_larger_one_streams(
    gw: Harness, size: int, framing: tuple[str | None, str | None]
) -> None:
    body = CREATE if size == len(CREATE) else b" " * (size - len(CREATE)) + CREATE
    reply = await gw.request(
        "POST", "/v1/tasks/runs", data=body, headers={"Content-Type": "application/json"}
    )

    sent = gw.fake.last("POST", "/v1/tasks/runs")
    assert reply.status == 202
    assert sent.body == body
    # Read first, a small body is sent with its length; a larger one is sent as it arrives.
    assert (sent.headers.get("content-length"), sent.headers.get("transfer-encoding")) == framing


# HTTP versions

NOT_HTTP_1 = "Bad request: not a valid HTTP/1.0 or HTTP/1.1 request."


@pytest.mark.parametrize(
    "version",
    [
        pytest.param(b"", id="http-0.9-no-version"),
        pytest.param(b" HTTP/0.9", id="http-0.9"),
        pytest.param(b" HTTP/2.0", id="http-2.0"),
        pytest.param(b" HTTP/3.0", id="http-3.0"),
        pytest.param(b" HTTP/1.2", id="http-1.2"),
    ],
)
@pytest.mark.parametrize(
    "target", [f"/v1/tasks/runs/{RUN}", f"/v1/tasks/runs/{RUN}/input", "/healthz"]
)
async def test_only_http_1_0_and_1_1_are_answered(gw: Harness, version: bytes, target: str) -> None:
    with capture_logs() as logs:
        reply = await send_raw(gw.gateway.url, head("GET", target, key_field(gw), version=version))

    ref_id = assert_refused(reply, 400, NOT_HTTP_1)
    errors = [line for line in logs if line["event"] == "gateway.error"]
    assert [(e["status"], e["reason"], e["ref_id"]) for e in errors] == [
        (400, "bad-request", ref_id)
    ]
    assert gw.sent() == []


@pytest.mark.parametrize("version", [b" HTTP/1.0", b" HTTP/1.1"])
async def test_http_1_0_and_1_1_are_served(gw: Harness, version: bytes) -> None:
    stored = gw.fake.add(RUN, task_run_input())
    target = f"/v1/tasks/runs/{RUN}/input"

    reply = await send_raw(gw.gateway.url, head("GET", target, key_field(gw), version=version))

    assert (reply.status, reply.body, reply.headers["Cache-Status"]) == (200, stored, STORED)


# Header bytes

NON_ASCII = {
    "latin-1": b"x-note: caf\xe9",
    "utf-8": "x-note: café".encode(),
    "obs-text-only": b"x-note: \xff\xfe",
    "between-ascii": b"x-note: a\x80b",
}


def non_ascii_message(name: str) -> str:
    return (
        f"Bad request: header {name} holds bytes that are not ASCII; the gateway forwards "
        "header bytes unchanged or not at all. Encode the value in ASCII."
    )


@pytest.mark.parametrize("field", NON_ASCII.values(), ids=NON_ASCII)
@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", f"/v1/tasks/runs/{RUN}"),
        ("GET", f"/v1/tasks/runs/{RUN}/input"),
        ("POST", "/v1/tasks/runs"),
        ("GET", "/healthz"),
    ],
)
async def test_a_header_with_bytes_past_ascii_is_400_naming_it(
    gw: Harness, field: bytes, method: str, target: str
) -> None:
    gw.fake.add(RUN, task_run_input())
    with capture_logs() as logs:
        reply = await send_raw(gw.gateway.url, head(method, target, key_field(gw), field))

    ref_id = assert_refused(reply, 400, non_ascii_message("x-note"))
    errors = [line for line in logs if line["event"] == "gateway.error"]
    assert [(e["status"], e["reason"], e["ref_id"]) for e in errors] == [
        (400, "non-ascii-header", ref_id)
    ]
    assert gw.sent() == []


async def test_a_memory_hit_with_a_header_past_ascii_is_400_too(gw: Harness) -> None:
    stored = gw.fake.add(RUN, task_run_input())
    target = f"/v1/tasks/runs/{RUN}/input"
    first = await send_raw(gw.gateway.url, head("GET", target, key_field(gw)))
    hit = await send_raw(gw.gateway.url, head("GET", target, key_field(gw)))

    refused = await send_raw(gw.gateway.url, head("GET", target, key_field(gw), b"x-n: \xe9"))

    assert (first.status, first.body, first.headers["Cache-Status"]) == (200, stored, STORED)
    assert (hit.status, hit.body, hit.headers["Cache-Status"]) == (200, stored, HIT)
    assert_refused(refused, 400, non_ascii_message("x-n"))
    assert gw.sent() == [("GET", target)]


async def test_a_key_with_bytes_past_ascii_is_named_not_echoed(gw: Harness) -> None:
    key = b"x-api-key: " + gw.keys["app"].encode() + b"\xe9"
    with capture_logs() as logs:
        reply = await send_raw(gw.gateway.url, head("GET", f"/v1/tasks/runs/{RUN}", key))

    assert_refused(reply, 400, non_ascii_message("x-api-key"))
    assert gw.keys["app"].encode() not in reply.body
    assert gw.keys["app"] not in repr(logs)
    assert gw.sent() == []


# Keys in the query string

KEY_IN_QUERY = "Bad request: send the app key in the x-api-key header, never in the query string."


def query_keys(key: str) -> dict[str, str]:
    rest = key.removeprefix("pgw_")
    return {
        "api_key": "?api_key=anything",
        "apikey-any-case": "?ApiKey=anything",
        "x-api-key": "?timeout=5&x-api-key=anything",
        "encoded-name": "?api%5Fkey=anything",
        "key-pgw_": f"?key={key}",
        "key-pgw%5F": f"?key=pgw%5F{rest}",
        "key-pgw%5f": f"?key=pgw%5f{rest}",
        "inside-a-value": f"?q=x&token=Bearer%20{key}",
        "fully-encoded": "?k=" + "".join(f"%{b:02X}" for b in key.encode()),
    }


QUERY_CASES = [
    "api_key",
    "apikey-any-case",
    "x-api-key",
    "encoded-name",
    "key-pgw_",
    "key-pgw%5F",
    "key-pgw%5f",
    "inside-a-value",
    "fully-encoded",
]


@pytest.mark.parametrize("case", QUERY_CASES)
@pytest.mark.parametrize(
    "path", [f"/v1/tasks/runs/{RUN}", f"/v1/tasks/runs/{RUN}/input", "/v1/tasks/runs"]
)
async def test_a_key_in_the_query_is_400_and_goes_nowhere(
    gw: Harness, case: str, path: str
) -> None:
    stored = gw.fake.add(RUN, task_run_input())
    key = gw.keys["app"]
    query = query_keys(key)[case]
    if path.endswith("/input"):  # in memory: the hit path must refuse it too
        warm = await gw.request("GET", path)
        assert (warm.status, warm.body) == (200, stored)
    sent = len(gw.fake.started)

    with capture_logs() as logs:
        reply = await send_raw(gw.gateway.url, head("GET", path + query, key_field(gw)))

    ref_id = assert_refused(reply, 400, KEY_IN_QUERY)
    assert [(e["event"], e["reason"], e["ref_id"]) for e in logs] == [
        ("gateway.error", "key-in-query", ref_id)
    ]
    assert key.removeprefix("pgw_") not in repr(logs)
    assert gw.sent(sent) == []


@pytest.mark.parametrize(
    "query", ["?timeout=5", "?q=pgw_short", "?q=pgw", "?key=value", "?api=1&key_id=2"]
)
async def test_a_query_without_a_key_is_forwarded(gw: Harness, query: str) -> None:
    reply = await gw.request("GET", f"/v1/echo{query}")

    assert reply.status == 200
    assert orjson.loads(reply.body) == {"raw_path": f"/v1/echo{query}"}
    assert gw.sent() == [("GET", f"/v1/echo{query}")]


# The pure-Python parser, and the log of a real `serve`


async def test_serve_with_the_python_parser_refuses_the_same(gw: Harness) -> None:
    """AIOHTTP_NO_EXTENSIONS=1: a header past ASCII was a 500 (UnicodeEncodeError upstream)."""
    env = {"PARALLEL_API_KEY": TEAM_KEY, "AIOHTTP_NO_EXTENSIONS": "1"}
    proc, url = await launch_serve(gw.gateway.config, env=env)
    key = gw.keys["app"]
    try:
        latin = await send_raw(url, head("GET", f"/v1/tasks/runs/{RUN}", key_field(gw), b"x: \xe9"))
        version = await send_raw(url, head("GET", "/healthz", version=b" HTTP/2.0"))
        in_query = await send_raw(
            url, head("GET", f"/v1/tasks/runs/{RUN}?key=pgw%5F{key[4:]}", key_field(gw))
        )
        # llhttp refuses a request target with a byte past ASCII; so must the Python parser.
        targets = [b"/v1/echo/\xc3\xa9", b"/v1/echo?q=\xc3\xa9", b"/v1/tasks/runs/\xe9/input"]
        past_ascii = [
            await send_raw(url, head("GET", "TARGET", key_field(gw)).replace(b"TARGET", target))
            for target in targets
        ]
    finally:
        proc.terminate()
        _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()

    assert_refused(latin, 400, non_ascii_message("x"))
    assert_refused(version, 400, NOT_HTTP_1)
    assert_refused(in_query, 400, KEY_IN_QUERY)
    for reply in past_ascii:
        assert_refused(reply, 400, NOT_HTTP_1)
    assert key[4:].encode() not in err
    assert gw.sent() == []
