"""The hit path (gateway/http/hit_path.py): memory hits answered as they are parsed, byte for
byte as the full stack answers them, in order with everything else on the connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestServer

from gateway.app import create_app
from gateway.config import Settings
from gateway.keys.app_keys import create_key
from gateway.keys.ownership import grant
from gateway.keys.ratelimit import Limit
from gateway.state import CACHE, DRAINING
from tests.conftest import GatewayTestServer, capture_logs, eventually, fast_path_only
from tests.fake_upstream import TEAM_KEY, FakeUpstream, task_run_input
from tests.raw_http import RawReply, connect, read_reply, request
from tests.storage_support import opened_storage

RUN = "trun_hit"
OTHER = "trun_other"
PATH = f"/v1/tasks/runs/{RUN}/input"
# Headers that differ on every answer by design.
PER_ANSWER = {"Date", "x-gateway-request-id"}


@dataclass
class Gateway:
    server: TestServer
    settings: Settings
    keys: dict[str, str]
    # Paths of the requests aiohttp's full stack answered (the hit path answers none of them).
    full_stack: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    def request(self, path: str = PATH, app: str = "app", *headers: str) -> bytes:
        return request(path, f"x-api-key: {self.keys[app]}", *headers)


Start = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def start(
    make_settings: Callable[..., Settings], upstream: FakeUpstream, tmp_path: Path
) -> AsyncIterator[Start]:
    upstream.add(RUN, task_run_input(1))
    upstream.add(OTHER, task_run_input(2))
    servers: list[BaseTestServer] = []

    async def start_one(
        hit_path: bool = True,
        limits: dict[str, Limit] | None = None,
        allow: dict[str, list[str]] | None = None,
        keepalive_timeout: float | None = None,
        **settings: dict[str, object],
    ) -> Gateway:
        database = str(tmp_path / f"gateway-{len(servers)}.db")
        config = make_settings(storage={"database": database}, **settings)
        async with opened_storage(config.storage) as storage:
            keys = {
                name: await create_key(
                    storage.app_keys,
                    name,
                    allow=(allow or {}).get(name),
                    limit=(limits or {}).get(name),
                )
                for name in ("app", "other")
            }
        app = create_app(config, env={"PARALLEL_API_KEY": TEAM_KEY})
        gateway = Gateway(GatewayTestServer(app, hit_path=hit_path), config, keys)

        async def record(request: web.Request, _: web.StreamResponse) -> None:
            gateway.full_stack.append(request.path)

        app.on_response_prepare.append(record)
        extra: dict[str, Any] = (
            {} if keepalive_timeout is None else {"keepalive_timeout": keepalive_timeout}
        )
        await gateway.server.start_server(**extra)
        servers.append(gateway.server)
        return gateway

    yield start_one
    while servers:
        await servers.pop().close()


async def exchange(gateway: Gateway, *requests: bytes) -> list[RawReply]:
    """Send `requests` pipelined in one write on one connection; read their answers in order."""
    reader, writer = await connect(gateway.url)
    try:
        writer.write(b"".join(requests))
        return [await read_reply(reader) for _ in requests]
    finally:
        writer.close()
        await writer.wait_closed()


async def primed(gateway: Gateway, *run_ids: str) -> Gateway:
    """Fetch each run once through the full stack, so memory holds it."""
    for run_id in run_ids:
        [reply] = await exchange(gateway, gateway.request(f"/v1/tasks/runs/{run_id}/input"))
        assert reply.status == 200
        assert reply.headers["Cache-Status"] == "parallel-gateway; fwd=uri-miss; stored"
    gateway.full_stack.clear()
    return gateway


def head_without_per_answer(reply: RawReply) -> list[tuple[str, str]]:
    return [(k, v) for k, v in reply.headers.items() if k not in PER_ANSWER]


@fast_path_only
async def test_a_hit_is_answered_as_the_full_stack_answers_it(
    start: Start, upstream: FakeUpstream
) -> None:
    fast = await primed(await start(), RUN)
    full = await primed(await start(hit_path=False), RUN)
    with capture_logs() as logs:
        [by_hit_path] = await exchange(fast, fast.request())
        [by_full_stack] = await exchange(full, full.request())
    assert fast.full_stack == []  # the hit path answered it
    assert full.full_stack == [PATH]
    assert by_hit_path.status == by_full_stack.status == 200
    assert by_hit_path.body == by_full_stack.body == upstream.inputs[RUN]
    # The same headers, in the same order, with the same values.
    assert head_without_per_answer(by_hit_path) == head_without_per_answer(by_full_stack)
    assert [k for k in by_hit_path.headers if k in PER_ANSWER] == [
        k for k in by_full_stack.headers if k in PER_ANSWER
    ]
    assert by_hit_path.headers["Cache-Status"] == "parallel-gateway; hit"
    # And the same access line.
    access = [e for e in logs if e["event"] == "access"]
    assert [e["request_id"] for e in access] == [
        by_hit_path.headers["x-gateway-request-id"],
        by_full_stack.headers["x-gateway-request-id"],
    ]
    for entry in access:
        del entry["request_id"], entry["duration_ms"]
    assert (
        access[0]
        == access[1]
        == {
            "event": "access",
            "log_level": "info",
            "method": "GET",
            "path": PATH,
            "route": "tasks.runs.input",
            "status": 200,
            "app": "app",
            "cache": "hit",
        }
    )
    assert upstream.count(RUN) == 2  # one priming fetch per gateway, none for the hits


def assert_hit(reply: RawReply, upstream: FakeUpstream, run_id: str = RUN) -> None:
    assert reply.status == 200
    assert reply.headers["Cache-Status"] == "parallel-gateway; hit"
    assert reply.body == upstream.inputs[run_id]


@fast_path_only
async def test_what_follows_a_request_left_to_the_full_stack_waits_its_turn(
    start: Start, upstream: FakeUpstream
) -> None:
    gateway = await primed(await start(), RUN)
    upstream.delay = 0.2  # the miss is slow: a hit answered out of turn would overtake it
    other = f"/v1/tasks/runs/{OTHER}/input"
    replies = await exchange(
        gateway,
        gateway.request(),
        gateway.request(other),
        gateway.request(),
        request(PATH, "x-api-key: pgw_not_a_key_of_this_gateway"),
        gateway.request(),
    )
    assert [r.status for r in replies] == [200, 200, 200, 401, 200]
    assert_hit(replies[0], upstream)
    assert replies[1].headers["Cache-Status"] == "parallel-gateway; fwd=uri-miss; stored"
    assert replies[1].body == upstream.inputs[OTHER]
    assert_hit(replies[2], upstream)
    assert replies[3].headers["Cache-Status"] == "parallel-gateway; detail=unauthenticated"
    assert_hit(replies[4], upstream)
    # The first hit was answered at once; from the miss on, aiohttp answered them in order.
    assert gateway.full_stack == [other, PATH, PATH, PATH]
    assert upstream.count(OTHER) == 1


@fast_path_only
async def test_more_pipelined_hits_than_aiohttp_queues_are_all_answered(
    start: Start, upstream: FakeUpstream
) -> None:
    gateway = await primed(await start(), RUN)
    # aiohttp's parser stops at MAX_MSG_QUEUE_SIZE (32) requests until its queue drains.
    replies = await asyncio.wait_for(exchange(gateway, *[gateway.request()] * 100), 10)
    for reply in replies:
        assert_hit(reply, upstream)
    assert len({r.headers["x-gateway-request-id"] for r in replies}) == 100
    assert gateway.full_stack == []


@fast_path_only
async def test_a_miss_among_more_pipelined_hits_than_aiohttp_queues(
    start: Start, upstream: FakeUpstream
) -> None:
    gateway = await primed(await start(), RUN)
    other = f"/v1/tasks/runs/{OTHER}/input"
    # The parser stops at 32: four are answered at once, the miss and the 27 behind it are
    # queued, and the 8 still in the parser must follow them.
    requests = [gateway.request()] * 40
    requests[4] = gateway.request(other)
    replies = await asyncio.wait_for(exchange(gateway, *requests), 10)
    assert [r.status for r in replies] == [200] * 40
    for i, reply in enumerate(replies):
        if i != 4:
            assert_hit(reply, upstream)
    assert replies[4].body == upstream.inputs[OTHER]
    assert gateway.full_stack == [other] + [PATH] * 35


@fast_path_only
async def test_answers_to_a_client_that_does_not_read_are_not_piled_up(
    start: Start, upstream: FakeUpstream
) -> None:
    gateway = await primed(await start(), RUN)
    count = 20_000  # about 8 MB of answers: more than the socket buffers hold
    reader, writer = await connect(gateway.url)
    try:
        writer.write(gateway.request() * count)  # and not a byte read yet
        assert gateway.server.runner is not None
        [connection] = gateway.server.runner.server.connections  # type: ignore[union-attr]
        await eventually(lambda: connection.writing_paused, within=10)
        assert connection.transport is not None
        # Paused at asyncio's high-water mark (64 KiB): at most one more answer goes in.
        assert connection.transport.get_write_buffer_size() < 64 * 1024 + 1024
        replies = [await read_reply(reader) for _ in range(count)]
    finally:
        writer.close()
        await writer.wait_closed()
    for reply in replies:
        assert_hit(reply, upstream)
    assert 0 < len(gateway.full_stack) < count  # aiohttp took over while the client lagged
    assert upstream.count(RUN) == 1


@fast_path_only
async def test_a_connection_answered_on_the_hit_path_is_kept_alive_then_closed(
    start: Start, upstream: FakeUpstream
) -> None:
    gateway = await primed(await start(keepalive_timeout=1.0), RUN)
    reader, writer = await connect(gateway.url)
    try:
        # Eight hits over two seconds: each answer restarts the connection's idle time.
        for _ in range(8):
            writer.write(gateway.request())
            assert_hit(await read_reply(reader), upstream)
            await asyncio.sleep(0.25)
        # Then idle: the gateway closes it once the keep-alive timeout has passed.
        assert await asyncio.wait_for(reader.read(), 10) == b""
    finally:
        writer.close()
        await writer.wait_closed()
    assert gateway.full_stack == []


@fast_path_only
@pytest.mark.parametrize(
    ("data", "hit_path"),
    [
        (f"GET {PATH}?fields=all HTTP/1.1\r\nHost: gw\r\n{{key}}\r\n\r\n", True),
        (f"GET {PATH} HTTP/1.1\r\nHost: gw\r\nauthorization: Bearer {{bare}}\r\n\r\n", True),
        (f"GET {PATH} HTTP/1.0\r\nHost: gw\r\n{{key}}\r\n\r\n", False),
        (f"GET {PATH} HTTP/1.1\r\nHost: gw\r\n{{key}}\r\nConnection: close\r\n\r\n", False),
        (f"GET {PATH} HTTP/1.1\r\nHost: gw\r\n{{key}}\r\nContent-Length: 2\r\n\r\n{{{{}}}}", False),
        (
            f"GET {PATH} HTTP/1.1\r\nHost: gw\r\n{{key}}\r\nTransfer-Encoding: chunked\r\n\r\n"
            "0\r\n\r\n",
            False,
        ),
    ],
    ids=["query", "bearer", "http-1.0", "connection-close", "body", "chunked"],
)
async def test_which_hits_the_hit_path_answers(
    start: Start, upstream: FakeUpstream, data: str, hit_path: bool
) -> None:
    gateway = await primed(await start(), RUN)
    key = gateway.keys["app"]
    raw = data.format(key=f"x-api-key: {key}", bare=key).encode()
    reader, writer = await connect(gateway.url)
    try:
        writer.write(raw)
        reply = await read_reply(reader)
    finally:
        writer.close()
        await writer.wait_closed()
    assert_hit(reply, upstream)
    assert gateway.full_stack == ([] if hit_path else [PATH])


@fast_path_only
async def test_refusals_of_a_run_in_memory_are_the_full_stacks(
    start: Start, upstream: FakeUpstream
) -> None:
    gateway = await primed(
        await start(
            limits={"app": Limit(rate=0.001, burst=3)},
            allow={"other": ["GET /v1/tasks/runs/*"]},
        ),
        RUN,
    )
    replies = await exchange(
        gateway,
        *[gateway.request()] * 4,  # the burst is 3, and priming took one
        gateway.request(app="other"),  # its allowlist leaves out the input route
    )
    assert [r.status for r in replies] == [200, 200, 429, 429, 403]
    assert_hit(replies[0], upstream)
    assert_hit(replies[1], upstream)
    assert replies[2].headers["retry-after"] == "1000"
    assert replies[4].headers["Cache-Status"] == "parallel-gateway; detail=forbidden"
    # Only the two hits took a token; the refusals were made by the full stack, in its order.
    assert gateway.full_stack == [PATH, PATH, PATH]
    gateway.server.app[DRAINING][0] = True
    [draining] = await exchange(gateway, gateway.request())
    assert draining.status == 503
    assert upstream.count(RUN) == 1


async def test_under_app_isolation_every_hit_goes_the_full_way(
    start: Start, upstream: FakeUpstream
) -> None:
    gateway = await start(isolation={"mode": "app"})
    async with opened_storage(gateway.settings.storage) as storage:
        await grant(storage.run_access, storage.app_keys, RUN, "app")
    await primed(gateway, RUN)
    mine, theirs = await exchange(gateway, gateway.request(), gateway.request(app="other"))
    assert_hit(mine, upstream)
    assert theirs.status == 404  # another app's run is answered as if it did not exist
    assert gateway.full_stack == [PATH, PATH]


async def test_memory_is_read_only_for_an_authenticated_request(
    start: Start, upstream: FakeUpstream
) -> None:
    # Memory holds two runs; RUN is the least recently used, so a third evicts it, unless a
    # read moved it to the front. A request with no valid key must not be that read.
    gateway = await primed(await start(cache={"memory_entries": 2}), RUN, OTHER)
    strangers = [request(PATH, "x-api-key: pgw_not-a-key"), request(PATH)]
    assert [r.status for r in await exchange(gateway, *strangers)] == [401, 401]
    upstream.add("trun_third", task_run_input(3))
    await primed(gateway, "trun_third")
    memory = gateway.server.app[CACHE].memory
    assert (memory.get(RUN), memory.get(OTHER) is not None) == (None, True)


async def test_a_refused_call_takes_no_token_on_any_route(
    start: Start, upstream: FakeUpstream
) -> None:
    gateway = await start(
        limits={"app": Limit(rate=0.001, burst=1)}, allow={"app": ["GET /v1/tasks/runs/*/input"]}
    )
    refused = [
        gateway.request("/v1/tasks/runs/x/result"),  # 403: the allowlist leaves it out
        gateway.request("/v1/tasks/runs/a%2Fb/input"),  # 400: an encoded slash
        gateway.request("/v1/tasks/runs/a.b/input"),  # 422: not a run id
    ]
    replies = await exchange(gateway, *refused, gateway.request(), gateway.request())
    assert [r.status for r in replies] == [403, 400, 422, 200, 429]
    assert upstream.count(RUN) == 1
