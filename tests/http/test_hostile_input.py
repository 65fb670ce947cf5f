"""Property-based tests: generated paths, headers, keys and bodies against a real gateway.

The gateway and an upstream that answers 200 to everything run on their own event loop in a
background thread; each generated request goes over a raw socket, so nothing a client library
would refuse or normalise is kept from the gateway. With such an upstream, every error status
is the gateway's own. Properties, for every input:

- no 5xx;
- every error is in the ErrorResponse shape;
- a refused request (any error) sent nothing upstream, nor did an unauthenticated one or one
  naming an invalid run id;
- neither the team key nor the app key appears in any response, body or header.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.cache.policy import RUN_ID
from gateway.config import settings_from_dict
from gateway.keys.app_keys import create_key
from tests.conftest import GatewayTestServer
from tests.fake_upstream import TEAM_KEY
from tests.storage_support import opened_storage

MAX_EXAMPLES = 300
MAX_BODY_BYTES = 1024
# Deterministic in CI: a fixed seed per test, and no example database left behind.
PROPERTY = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
examples_run: dict[str, int] = {}


def run_property(name: str, prop: Callable[[], None]) -> None:
    """Run a @given property, and check that it really ran all its examples."""
    examples_run[name] = 0
    prop()
    assert examples_run[name] >= MAX_EXAMPLES  # and any @example given too


@dataclass(frozen=True)
class Sent:
    method: str
    raw_path: str
    body: bytes


class EchoUpstream:
    """Answers 200 to every request, after reading its whole body, and keeps what it got."""

    def __init__(self) -> None:
        self.received: list[Sent] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{path:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(Sent(request.method, request.raw_path, body))
        return web.json_response({"ok": True})


@dataclass(frozen=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class Harness:
    """A gateway in front of EchoUpstream, on an event loop in a background thread."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.upstream = EchoUpstream()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.servers: list[TestServer] = []
        self.app_key = ""
        self.port = 0

    def __enter__(self) -> Harness:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _start(self) -> None:
        upstream = TestServer(self.upstream.app)
        await upstream.start_server()
        self.servers.append(upstream)
        config = settings_from_dict(
            {
                "server": {"max_body_bytes": MAX_BODY_BYTES},
                "storage": {"database": str(self.tmp / "gateway.db")},
                "upstream": {"base_url": str(upstream.make_url("")).rstrip("/"), "timeout": 5.0},
            }
        )
        async with opened_storage(config.storage) as storage:
            self.app_key = await create_key(storage.app_keys, "hostile")
        app = create_app(config, env={"PARALLEL_API_KEY": TEAM_KEY})
        gateway = GatewayTestServer(app)
        await gateway.start_server()
        self.servers.append(gateway)
        assert gateway.port is not None
        self.port = gateway.port

    async def _stop(self) -> None:
        while self.servers:
            await self.servers.pop().close()

    @property
    def upstream_count(self) -> int:
        return len(self.upstream.received)

    def send(self, method: str, head: bytes, body: bytes = b"") -> Reply:
        """Send a request exactly as given, and read the one answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(head + body)
            response = http.client.HTTPResponse(sock, method=method)
            try:
                response.begin()
                return Reply(response.status, response.getheaders(), response.read())
            finally:
                response.close()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    with Harness(tmp_path_factory.mktemp("hostile")) as running:
        yield running
    print(f"hypothesis examples run: {examples_run} ({sum(examples_run.values())} in all)")


def head(method: str, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: gw"]
    lines += [name + b": " + value for name, value in headers]
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def check(harness: Harness, reply: Reply, before: int, test: str) -> None:
    """The properties every answer must have."""
    examples_run[test] += 1
    assert reply.status < 500, reply
    if reply.status >= 400:
        assert harness.upstream_count == before, "a refused request reached upstream"
        if reply.body:  # a HEAD answer has none
            body = orjson.loads(reply.body)
            assert body["type"] == "error"
            assert set(body["error"]) == {"ref_id", "message", "detail"}
            assert isinstance(body["error"]["ref_id"], str)
            assert isinstance(body["error"]["message"], str)
    everything = reply.body + repr(reply.headers).encode()
    for secret in (TEAM_KEY, harness.app_key):
        assert secret.encode() not in everything


# Path segments: plain, dot segments (plain and encoded), percent-encodings good and bad,
# unicode (raw UTF-8 and percent-encoded), control characters, and very long ones.
PLAIN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~", max_size=12)
TRICKY = st.sampled_from(
    [
        *(".", "..", "%2e", "%2E%2e", ".%2e", "%2F", "%2f..", "%00", "%", "%zz", "%25", "%41"),
        *("%7E", "", ";", "a;b=c", "trun_" + "0" * 32, "a" * 129, "a" * 3000, "*", "@", "\\"),
    ]
)
ENCODED = st.text(max_size=8).map(lambda text: urllib.parse.quote(text, safe=""))
RAW_TEXT = st.text(st.characters(exclude_characters=" \r\n#?"), max_size=8)
CONTROL = st.text(st.characters(max_codepoint=0x1F, exclude_characters="\r\n"), max_size=3)
HOSTILE_SEGMENT = st.one_of(TRICKY, ENCODED, RAW_TEXT, CONTROL)
SEGMENT = st.one_of(PLAIN, HOSTILE_SEGMENT)
PREFIX = st.sampled_from(
    [*("/v1/", "/v1beta/", "/v1/tasks/runs/", "/v1/tasks/groups/") * 3, "/", "/healthz/", "//", ""]
)
PRINTABLE = st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#")
QUERY = st.one_of(
    st.just(""),
    st.text(PRINTABLE, max_size=20).map(lambda q: "?" + q),
    st.text(max_size=20).map(lambda q: "?" + q),
)
METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])


@st.composite
def raw_paths(draw: st.DrawFn) -> bytes:
    """Plain segments with at most one hostile one among them, so that many paths get past
    the parser and the gateway's checks, and reach upstream."""
    segments = draw(st.lists(PLAIN, max_size=4))
    if draw(st.booleans()):
        segments.insert(draw(st.integers(0, len(segments))), draw(HOSTILE_SEGMENT))
    path = draw(PREFIX) + "/".join(segments) + draw(QUERY)
    return path.encode()


def test_generated_paths(harness: Harness) -> None:
    @PROPERTY
    @given(method=METHODS, target=raw_paths(), keyed=st.sampled_from([True, True, True, False]))
    def prop(method: str, target: bytes, keyed: bool) -> None:
        headers = [(b"x-api-key", harness.app_key.encode())] if keyed else []
        before = harness.upstream_count
        reply = harness.send(method, head(method, target, headers))
        check(harness, reply, before, "paths")
        if not keyed:
            assert harness.upstream_count == before

    run_property("paths", prop)


def test_only_valid_run_ids_reach_upstream(harness: Harness) -> None:
    @PROPERTY
    @given(segment=st.one_of(SEGMENT, st.from_regex(RUN_ID, fullmatch=True)))
    # Decoded, %0A is a newline: a route pattern of `.*` did not match it (404, not 400).
    @example(segment="%0A")
    @example(segment="%0d%0a")
    def prop(segment: str) -> None:
        target = f"/v1/tasks/runs/{segment}/input".encode()
        headers = [(b"x-api-key", harness.app_key.encode())]
        before = harness.upstream_count
        reply = harness.send("GET", head("GET", target, headers))
        check(harness, reply, before, "run ids")
        if "/" not in segment and RUN_ID.fullmatch(segment) is None:
            assert reply.status in (400, 422), reply
            assert harness.upstream_count == before

    run_property("run ids", prop)


# Header names from RFC 9110's token characters, with some that are not; values of any byte
# but CR and LF (which would end the field), control characters and obs-text included.
TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
FRAMING = {b"host", b"content-length", b"transfer-encoding", b"connection", b"expect", b"upgrade"}
CREDENTIALS = {b"x-api-key", b"authorization"}
NAMES = st.one_of(
    st.text(TCHAR, min_size=1, max_size=20),
    st.sampled_from(["accept", "accept-encoding", "content-type", "parallel-beta", "te", "cookie"]),
).map(str.encode)
BAD_NAMES = st.text(TCHAR + ' :"(),/;<=>?@[\\]{}\x00\x7f', min_size=1, max_size=10).map(str.encode)
VALUES = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).map(str.encode),
    st.text(st.characters(min_codepoint=0x80), max_size=20).map(str.encode),  # obs-text to HTTP
)
BAD_VALUES = st.binary(max_size=60).map(lambda value: value.replace(b"\r", b"").replace(b"\n", b""))


def allowed(header: tuple[bytes, bytes]) -> bool:
    return header[0].lower() not in FRAMING | CREDENTIALS


@st.composite
def header_lists(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    """Well-formed fields with at most one malformed one among them."""
    headers = draw(st.lists(st.tuples(NAMES, VALUES).filter(allowed), max_size=5))
    if draw(st.booleans()):
        hostile = st.tuples(st.one_of(NAMES, BAD_NAMES), st.one_of(VALUES, BAD_VALUES))
        headers.insert(draw(st.integers(0, len(headers))), draw(hostile.filter(allowed)))
    return headers


ROUTES = st.sampled_from(
    ["/v1/tasks/runs/trun_1", "/v1/tasks/runs/trun_1/input", "/v1/monitors", "/nowhere"]
)


def test_generated_headers(harness: Harness) -> None:
    @PROPERTY
    @given(route=ROUTES, headers=header_lists())
    def prop(route: str, headers: list[tuple[bytes, bytes]]) -> None:
        key = [(b"x-api-key", harness.app_key.encode())]
        before = harness.upstream_count
        reply = harness.send("GET", head("GET", route.encode(), headers + key))
        check(harness, reply, before, "headers")

    run_property("headers", prop)


@st.composite
def wrong_keys(draw: st.DrawFn, real: str) -> str:
    """A key that is never the real one: near misses of it, lookalikes, and noise."""
    index = draw(st.integers(1, len(real) - 1))  # a space first would be stripped (OWS)
    near_misses = [
        real[:-1],
        real + "x",
        real[:index] + real[index + 1 :],
        real[:index] + ("A" if real[index] != "A" else "B") + real[index + 1 :],
        real[:index] + " " + real[index:],
        "x" + real,
        real.swapcase(),
        real.replace("pgw_", "PGW_"),
    ]
    return draw(
        st.one_of(
            st.sampled_from(near_misses),
            st.text(max_size=60).map(lambda text: "pgw_" + text),
            st.text(max_size=60),
            st.just(TEAM_KEY),
        )
    )


SCHEMES = st.sampled_from(["Bearer ", "bearer ", "BEARER ", "Bearer", "Basic ", "", "Token "])


def test_wrong_keys_are_401_and_reach_nothing(harness: Harness) -> None:
    @PROPERTY
    @given(
        key=wrong_keys(harness.app_key),
        where=st.sampled_from(["x-api-key", "authorization", "both"]),
        scheme=SCHEMES,
        route=ROUTES,
    )
    def prop(key: str, where: str, scheme: str, route: str) -> None:
        raw = key.encode().replace(b"\r", b"").replace(b"\n", b"")
        headers = []
        if where in ("x-api-key", "both"):
            headers.append((b"x-api-key", raw))
        if where in ("authorization", "both"):
            headers.append((b"authorization", scheme.encode() + raw))
        before = harness.upstream_count
        reply = harness.send("GET", head("GET", route.encode(), headers))
        check(harness, reply, before, "keys")
        assert reply.status in (400, 401), reply  # 400: bytes that are not a header value
        assert harness.upstream_count == before

    run_property("keys", prop)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=20,
).map(orjson.dumps)
BODIES = st.one_of(
    JSON,
    st.binary(max_size=2 * MAX_BODY_BYTES),
    # Just under, at and just over the limit.
    st.integers(MAX_BODY_BYTES - 2, MAX_BODY_BYTES + 2).map(lambda n: b"x" * n),
)
POSTS = st.sampled_from(
    ["/v1/tasks/runs", "/v1/search", "/v1/extract", "/v1/tasks/groups", "/v1beta/findall/runs"]
)
# ASCII only: a header value past ASCII is refused (tests/http/test_request_integrity.py).
CONTENT_TYPES = st.sampled_from(
    [b"application/json", b"text/plain; charset=utf-8", b"application/octet-stream", b"x/\x7e"]
)


def chunked(body: bytes, sizes: list[int]) -> bytes:
    out, rest = b"", body
    for size in sizes:
        piece, rest = rest[:size], rest[size:]
        if piece:
            out += b"%x\r\n%s\r\n" % (len(piece), piece)
    if rest:
        out += b"%x\r\n%s\r\n" % (len(rest), rest)
    return out + b"0\r\n\r\n"


def test_generated_bodies_pass_through_unchanged(harness: Harness) -> None:
    @PROPERTY
    @given(
        route=POSTS,
        body=BODIES,
        content_type=CONTENT_TYPES,
        chunks=st.none() | st.lists(st.integers(1, 700), max_size=4),
    )
    def prop(route: str, body: bytes, content_type: bytes, chunks: list[int] | None) -> None:
        headers = [(b"x-api-key", harness.app_key.encode()), (b"content-type", content_type)]
        if chunks is None:
            headers.append((b"content-length", str(len(body)).encode()))
            payload = body
        else:
            headers.append((b"transfer-encoding", b"chunked"))
            payload = chunked(body, chunks)
        before = harness.upstream_count
        reply = harness.send("POST", head("POST", route.encode(), headers), payload)
        check(harness, reply, before, "bodies")
        if len(body) <= MAX_BODY_BYTES:
            assert reply.status == 200, reply
            assert harness.upstream.received[-1] == Sent("POST", route, body)
        else:
            assert reply.status == 413, reply
            # A body streamed without Content-Length may start upstream, but never arrives.
            assert harness.upstream_count == before

    run_property("bodies", prop)
