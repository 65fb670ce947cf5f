"""What an app sends reaches upstream as it was sent, or is refused with 400 and reaches nothing:
request bodies keep their Content-Encoding, header bytes are never changed, app keys stay out
of query strings, and only HTTP/1.0 and HTTP/1.1 are spoken."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator, Callable

import orjson
import pytest

from gateway.config import Settings
from tests.conftest import StartGateway
from tests.passthrough_support import (
    BYPASS,
    Harness,
    ServerFactory,
    WatchedParallel,
    error_of,
    harnesses,
)
from tests.raw_http import RawReply

RUN = "trun_9907962f83aa4d9d98fd7f4bf745d654"
CREATE = b'{"input": "q", "processor": "lite"}'


@pytest.fixture
async def upstream(aiohttp_server: ServerFactory) -> WatchedParallel:
    """FakeParallel that sees request bodies as they were sent, compressed or not."""
    fake = WatchedParallel()
    fake.server = await aiohttp_server(fake.app, auto_decompress=False)
    fake.base_url = str(fake.server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
async def gw(
    start_gateway: StartGateway,
    upstream: WatchedParallel,
    make_settings: Callable[..., Settings],
) -> AsyncIterator[Harness]:
    async with harnesses(start_gateway, upstream, make_settings) as start:
        yield await start()


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
