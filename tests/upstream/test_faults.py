"""Fault injection: a misbehaving upstream never gets stored, never breaks cache hits, and every
error the app gets carries a ref_id that was logged."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest
from structlog.typing import EventDict

from gateway.config import Settings
from gateway.http.internals import parser_measures_whole_lines
from gateway.storage.types import StoredInput
from gateway.timestamps import now_rfc3339
from gateway.upstream.client import own_client_in_use
from tests.conftest import Gateway, Reply, StartGateway, capture_logs
from tests.fake_upstream import error_json, task_run_input
from tests.fault_servers import (
    Answer,
    FaultServer,
    cut,
    hang_up,
    head,
    raw,
    respond,
    slow,
    trickle,
)
from tests.passthrough_support import error_of
from tests.storage_support import opened_storage

T = TypeVar("T")
# aiohttp's pure-Python client parser waits for the end of a head it cannot read, and on the
# close reports a disconnect (and resends an idempotent request itself): a non-HTTP answer and
# a hang-up are one to it, so the gateway cannot say "not HTTP" there (SECURITY.md: Upstream
# faults). The gateway's own client for short calls (upstream/wire.py) always parses with
# llhttp, so only the fallback to aiohttp's client under that parser skips these.
NOT_HTTP = {"not-http", "tls-alert-not-http", "reset-then-not-http-then-200"}
C_CLIENT_PARSER_ONLY = pytest.mark.skipif(
    parser_measures_whole_lines() and not own_client_in_use(),
    reason="aiohttp's pure-Python client parser reports a non-HTTP answer as a disconnect",
)


def cases(table: Mapping[str, Any]) -> list[Any]:
    """pytest params of `table` by name; those of a non-HTTP answer only on the C parser."""
    return [
        pytest.param(*(v if isinstance(v, tuple) else (v,)), id=k, marks=C_CLIENT_PARSER_ONLY)
        if k in NOT_HTTP
        else pytest.param(*(v if isinstance(v, tuple) else (v,)), id=k)
        for k, v in table.items()
    ]


Logs = list[EventDict]


def input_path(run_id: str) -> str:
    return f"/v1/tasks/runs/{run_id}/input"


FAULT_RUN = "trun_fault"
FAULT_PATH = input_path(FAULT_RUN)
# tasks.groups.retrieve: forwarded, never cached (a group is never final; a finished run is
# cached, tests/http/test_final_answers.py).
PASS_PATH = "/v1/tasks/groups/tgrp_fault"
CACHED = {
    "trun_cached_a": orjson.dumps(task_run_input(1)),
    "trun_cached_b": orjson.dumps(task_run_input(2, input="y" * 300)),
}
# With cache.memory_entries = 1, A then B alternate between a SQLite read and a memory hit.
HIT_ORDER = ("trun_cached_a", "trun_cached_a", "trun_cached_b", "trun_cached_b")
FRESH_RUN = "trun_fresh"
FRESH_BODY = orjson.dumps(task_run_input(3))
GOOD = orjson.dumps(task_run_input(4))  # what the fault run's input really is
TASK_RUN = orjson.dumps({"run_id": FAULT_RUN, "status": "completed", "is_active": False})
# nginx's own 502 page, padded past 512 bytes so browsers show it: longer than the detail holds.
NGINX_PADDING = b"<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n"
PROXY_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
) + NGINX_PADDING * 6
BODY_IN_DETAIL = 500  # how much of an unreadable error body the app gets back in its detail
assert len(PROXY_PAGE) > BODY_IN_DETAIL

JSON = "application/json"
MADE = {"Content-Type": JSON}  # the headers of every ErrorResponse the gateway makes
CACHE = "parallel-gateway; "
MISS = CACHE + "fwd=uri-miss"
HIT, STORED, BYPASS = CACHE + "hit", MISS + "; stored", CACHE + "fwd=bypass"
TIMED_OUT = "Parallel API at {host} did not answer in time."
HEALTHY = {"status": "ok", "mode": "online", "upstream_configured": True}
ATTEMPTS = 3  # upstream.max_attempts in these tests
SLOW = {"timeout": 0.2}  # per-attempt timeout for the faults that are about time


# The cause the gateway names for each kind of failure (the host is put in for "{host}").
CAUSES = {
    "ClientPayloadError": "broke off its answer midway",
    "ClientResponseError": "answered something that is not HTTP",
    "ClientOSError": "could not be reached: Connection reset by peer",
    "ServerDisconnectedError": "closed the connection before answering",
    "ClientConnectorError": "could not be reached: the connection was refused",
    "ClientConnectorDNSError": "could not be reached: its host name could not be resolved",
}
# The gateway gave up after its own retries: the SDK must not retry on top (one retry layer).
GAVE_UP = {"x-should-retry": "false", "retry-after": "1"}


def unreachable(error: str) -> str:
    return f"Parallel API at {{host}} {CAUSES[error]}."


@dataclass(frozen=True)
class Fault:
    """What upstream does to each attempt of one request, and what the app must get for it.

    `answers` are upstream's, one per request it gets. The app gets either upstream's answer
    byte for byte (`relayed`), or an ErrorResponse the gateway made (`message`, `detail`),
    logged as gateway.error with `reason`, which is also the Cache-Status detail on the input
    route. Logged besides: `failed`, the exception of each attempt that got no HTTP answer
    (upstream.attempt_failed); `ref_ids`, one per upstream error answer (upstream.error), None
    where its body had none and the gateway minted one; `not_stored`, why a 200 was not stored
    (cache.not_stored).
    """

    answers: tuple[Answer, ...]
    status: int
    relayed: bytes | None = None
    reason: str | None = None
    message: str | None = None
    detail: Mapping[str, Any] | None = None
    failed: tuple[str, ...] = ()
    ref_ids: tuple[str | None, ...] = ()
    not_stored: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    upstream: Mapping[str, Any] = field(default_factory=dict)
    cache: Mapping[str, Any] = field(default_factory=dict)
    within: float = 1.5  # seconds the app may wait, all attempts included


def times(answer: Answer) -> tuple[Answer, ...]:
    return (answer,) * ATTEMPTS


def refusals(status: int, times: int, **headers: str) -> Fault:
    """`times` ErrorResponses with `status`, each with its own ref_id; the app gets the last,
    told not to retry it once the gateway has retried it already."""
    ref_ids = tuple(f"ref-{status}-{n}" for n in range(times))
    bodies = [error_json(f"Upstream says {status}", ref_id) for ref_id in ref_ids]
    spent = {"x-should-retry": "false"} if times > 1 else {}
    return Fault(
        tuple(respond(status, body, headers) for body in bodies),
        status,
        relayed=bodies[-1],
        ref_ids=ref_ids,
        headers={"Content-Type": JSON, **headers, **spent},
    )


def could_not_get(status: int, error: str, answers: tuple[Answer, ...], **upstream: Any) -> Fault:
    """No attempt got an HTTP answer (each failed with `error`): the gateway's own 502 or 504."""
    timed_out = status == 504
    return Fault(
        answers,
        status,
        reason="upstream-timeout" if timed_out else "upstream-unavailable",
        message=TIMED_OUT if timed_out else unreachable(error),
        failed=(error,) * ATTEMPTS,
        headers={**MADE, **GAVE_UP},
        upstream=upstream,
    )


def hung_up(error: str, answer: Answer) -> Fault:
    """A connection closed before any byte of answer: aiohttp's client sends each attempt twice
    (RFC 9112 section 9.3.1 lets a client retry an idempotent request on a closed connection);
    the gateway's own client for short calls (upstream/wire.py) sends it again only on a kept
    connection, and here each attempt's connection is new."""
    return could_not_get(502, error, times(answer) * (1 if own_client_in_use() else 2))


def not_stored(reason: str, body: bytes, content_type: str = JSON, **cache: Any) -> Fault:
    """A 200 the app gets as it came, but that is not stored."""
    answer = respond(200, body, content_type=content_type)
    headers = {"Content-Type": content_type}
    return Fault((answer,), 200, relayed=body, not_stored=reason, headers=headers, cache=cache)


def not_json(body: bytes, content_type: str = JSON) -> Fault:
    """A 200 no SDK could read: neither stored nor relayed; the app gets the gateway's 502."""
    return Fault(
        (respond(200, body, content_type=content_type),),
        502,
        reason="upstream-invalid",
        message=f"Parallel API answered 200 for run {FAULT_RUN} with a body that is not JSON; "
        "it was not stored.",
        not_stored="not-json",
        headers=MADE,
    )


def unreadable(status: int, body: bytes, content_type: str | None = None, **headers: str) -> Fault:
    """An error answer with no ErrorResponse in it, on every attempt: the app gets its status
    and retry advice, in the ErrorResponse shape, under the ref_id logged for the last one."""
    if content_type is None:  # respond() always names one; written raw, then closed
        answer = raw(head(status, len(body), {**headers, "Connection": "close"}) + body)
    else:
        answer = respond(status, body, headers, content_type)
    return Fault(
        times(answer),
        status,
        reason="upstream-error-unreadable",
        message=f"Parallel API answered {status} without an error body the gateway could read.",
        detail={
            "upstream_status": status,
            "upstream_content_type": content_type,
            "upstream_body": body[:BODY_IN_DETAIL].decode("utf-8", "replace"),
        },
        ref_ids=(None,) * ATTEMPTS,
        headers={**MADE, **headers},
    )


TOO_LARGE = orjson.dumps(task_run_input(5, input="z" * 2000))
FAULTS = {
    "slow-headers": could_not_get(
        504, "TimeoutError", times(slow(5.0, respond(200, GOOD))), **SLOW
    ),
    "body-trickles-past-timeout": could_not_get(
        504, "TimeoutError", times(trickle(GOOD, 10, 0.05)), **SLOW
    ),
    "reset-mid-body": could_not_get(502, "ClientPayloadError", times(cut(GOOD, 40, reset=True))),
    "closed-mid-body": could_not_get(502, "ClientPayloadError", times(cut(GOOD, 40, reset=False))),
    "closed-before-answering": hung_up("ServerDisconnectedError", hang_up(reset=False)),
    "reset-before-answering": hung_up("ClientOSError", hang_up(reset=True)),
    "not-http": could_not_get(502, "ClientResponseError", times(raw(b"SSH-2.0-OpenSSH_9.6\r\n"))),
    "tls-alert-not-http": could_not_get(
        502, "ClientResponseError", times(raw(b"\x15\x03\x01\x00\x02"))
    ),
    "garbage-after-the-head": could_not_get(
        502,
        "ClientResponseError",
        times(raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")),
    ),
    "truncated-json-200": not_json(GOOD[:-9]),
    "html-200": not_json(b"<html><body>Welcome</body></html>", "text/html"),
    "empty-200": not_json(b""),
    "json-not-a-run-input-200": not_stored("malformed", b'{"status":"ok"}'),
    "body-over-max-body-bytes": not_stored("too-large", TOO_LARGE, max_body_bytes=1000),
    # Not waited out: returned at once, far inside upstream.deadline (5 s here).
    "429-retry-after-3600": replace(refusals(429, 1, **{"retry-after": "3600"}), within=0.5),
    "500-is-not-retried": refusals(500, 1),
    "502-persists": refusals(502, ATTEMPTS),
    "503-persists": refusals(503, ATTEMPTS),
    "504-persists": refusals(504, ATTEMPTS),
    "502-html-from-a-proxy-persists": unreadable(502, PROXY_PAGE, "text/html"),
    "empty-body-502": unreadable(502, b"", **{"retry-after": "0"}),
}
PASS_THROUGH = (
    "slow-headers",
    "closed-before-answering",
    "not-http",
    "429-retry-after-3600",
    "500-is-not-retried",
    "503-persists",
    "502-html-from-a-proxy-persists",
    "empty-body-502",
)


# Fixtures and helpers


@pytest.fixture
async def faulty() -> AsyncIterator[FaultServer]:
    server = FaultServer()
    server.routes[input_path(FRESH_RUN)] = FRESH_BODY
    await server.start()
    yield server
    await server.stop()


Start = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def start(start_gateway: StartGateway, make_settings: Callable[..., Settings]) -> Start:
    """A gateway in front of `base_url`, with CACHED already stored and one memory entry."""

    async def start(
        base_url: str, upstream: Mapping[str, Any] = {}, cache: Mapping[str, Any] = {}
    ) -> Gateway:
        settings = make_settings(
            upstream={"base_url": base_url, "max_attempts": ATTEMPTS, **upstream},
            cache={"memory_entries": 1, **cache},
        )
        async with opened_storage(settings.storage) as storage:
            for run_id, body in CACHED.items():
                await storage.run_inputs.put(StoredInput(run_id, body, now_rfc3339()))
        return await start_gateway(settings)

    return start


def stored_run_ids(gateway: Gateway) -> list[str]:
    """Committed rows, read through a connection of our own."""
    with sqlite3.connect(gateway.settings.storage.database) as conn:
        return [row[0] for row in conn.execute("SELECT run_id FROM run_inputs ORDER BY run_id")]


@asynccontextmanager
async def cache_hits(gateway: Gateway) -> AsyncIterator[None]:
    """GETs of cached runs, one after another, from before the body runs until after it ends;
    every one must be a 200 hit with the exact stored body."""
    seen: list[tuple[str, int, bytes, str | None]] = []
    stop, started = asyncio.Event(), asyncio.Event()

    async def hit() -> None:
        async with aiohttp.ClientSession(headers={"x-api-key": gateway.app_key}) as session:
            while not stop.is_set():
                for run_id in HIT_ORDER:
                    async with session.get(gateway.url + input_path(run_id)) as resp:
                        got = (run_id, resp.status, await resp.read())
                        seen.append((*got, resp.headers.get("Cache-Status")))
                    started.set()

    task = asyncio.create_task(hit())
    try:
        await asyncio.wait_for(started.wait(), 5)
        yield
    finally:
        stop.set()
        await task
    assert len(seen) >= len(HIT_ORDER)
    assert [s for s in seen if s != (s[0], 200, CACHED[s[0]], HIT)] == []


async def timed(action: Awaitable[T]) -> tuple[T, float]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await action
    return result, loop.time() - started


def events(logs: Logs, name: str, *keys: str) -> list[tuple[Any, ...]]:
    return [tuple(line.get(key) for key in keys) for line in logs if line["event"] == name]


def check_reply(reply: Reply, logs: Logs, fault: Fault, route: str) -> None:
    """What the app got for one request, and what was logged for it."""
    assert reply.status == fault.status
    for name, value in fault.headers.items():
        assert reply.headers[name] == value
    failed = events(logs, "upstream.attempt_failed", "attempt", "error")
    assert failed == list(enumerate(fault.failed, 1))
    made = None  # the ref_id of the gateway's own ErrorResponse
    if fault.relayed is None:
        error = error_of(reply.body)
        message = re.sub(r" at [^ ]+ ", " at {host} ", error["message"], count=1)
        assert (message, error["detail"]) == (fault.message, fault.detail)
        made = error["ref_id"]
        logged = events(logs, "gateway.error", "status", "reason", "ref_id")
        assert logged == [(fault.status, fault.reason, made)]
    else:
        assert reply.body == fault.relayed
        assert events(logs, "gateway.error", "ref_id") == []
    check_upstream_errors(reply, logs, fault)
    not_stored = events(logs, "cache.not_stored", "run_id", "reason", "ref_id")
    assert not_stored == ([(FAULT_RUN, fault.not_stored, made)] if fault.not_stored else [])
    assert reply.headers.get("Cache-Status") == expected_cache_status(fault, route)


def check_upstream_errors(reply: Reply, logs: Logs, fault: Fault) -> None:
    """One upstream.error per error answer, each under its own ref_id: upstream's, else one the
    gateway minted. The app's ref_id is the one logged for the last."""
    logged = events(logs, "upstream.error", "attempt", "status", "ref_id", "ref_id_by")
    for n, (line, expected) in enumerate(zip(logged, fault.ref_ids, strict=True), 1):
        attempt, status, ref_id, by = line
        assert (attempt, status) == (n, fault.status)
        if expected is None:
            assert (uuid.UUID(ref_id).version, by) == (4, "gateway")
        else:
            assert (ref_id, by) == (expected, "upstream")
    ref_ids = [line[2] for line in logged]
    assert len(set(ref_ids)) == len(ref_ids)
    if ref_ids:
        assert error_of(reply.body)["ref_id"] == ref_ids[-1]


def expected_cache_status(fault: Fault, route: str) -> str | None:
    if route == "pass-through":
        # A forwarded route's answer bypassed the cache; the gateway's own says why.
        return BYPASS if fault.relayed is not None else BYPASS + f"; detail={fault.reason}"
    if fault.relayed is None:
        return MISS + f"; detail={fault.reason}"
    return MISS if fault.status == 200 else MISS + f"; fwd-status={fault.status}"


async def check_healthy(gateway: Gateway, faulty: FaultServer | None) -> None:
    """Liveness, readiness and (when upstream is there) a fresh miss, after the fault."""
    health = await gateway.get("/healthz", key=None)
    assert (health.status, orjson.loads(health.body)) == (200, HEALTHY)
    ready = await gateway.get("/readyz", key=None)
    assert ready.status == 200
    assert orjson.loads(ready.body)["status"] == "ready"
    if faulty is not None:
        fresh = await gateway.get(input_path(FRESH_RUN))
        assert (fresh.status, fresh.body, fresh.headers["Cache-Status"]) == (
            200,
            FRESH_BODY,
            STORED,
        )
        assert faulty.count(input_path(FRESH_RUN)) == 1
        assert FRESH_RUN in stored_run_ids(gateway)


# The cached input route


@pytest.mark.parametrize("fault", cases(FAULTS))
async def test_a_fault_is_answered_and_nothing_is_stored(
    faulty: FaultServer, start: Start, fault: Fault
) -> None:
    gateway = await start(faulty.base_url, fault.upstream, fault.cache)
    faulty.add(FAULT_PATH, fault.answers * 2)

    async with cache_hits(gateway):
        for request in (1, 2):  # the second goes upstream again: nothing was kept
            with capture_logs() as logs:
                reply, elapsed = await timed(gateway.get(FAULT_PATH))
            check_reply(reply, logs, fault, "input")
            assert elapsed < fault.within
            assert faulty.count(FAULT_PATH) == request * len(fault.answers)
            assert stored_run_ids(gateway) == sorted(CACHED)

    await check_healthy(gateway, faulty)
    assert faulty.count(FAULT_PATH) == 2 * len(fault.answers)


RECOVERIES = {
    # answers before the good one; what the gateway logged for each; requests upstream got
    "502-502-then-200": (refusals(502, 2).answers, ["502", "502"], 3),
    "503-503-then-200": (refusals(503, 2).answers, ["503", "503"], 3),
    "504-504-then-200": (refusals(504, 2).answers, ["504", "504"], 3),
    "429-then-200": (refusals(429, 1, **{"retry-after": "0"}).answers, ["429"], 2),
    "proxy-502-then-200": (unreadable(502, PROXY_PAGE, "text/html").answers[:1], ["502"], 2),
    "slow-headers-then-200": ((slow(5.0, respond(200, GOOD)),), ["TimeoutError"], 2),
    "reset-then-not-http-then-200": (
        (cut(GOOD, 40, reset=True), raw(b"\x00\r\n")),
        ["ClientPayloadError", "ClientResponseError"],
        3,
    ),
    # aiohttp's client sends again on its own, on a new connection: no attempt of the gateway's
    # is spent; the gateway's own client (short calls) leaves that to the gateway's retries.
    "closed-before-answering-then-200": (
        (hang_up(reset=False),),
        ["ServerDisconnectedError"] if own_client_in_use() else [],
        2,
    ),
    "body-trickles-within-timeout": ((trickle(GOOD, 4, 0.03),), [], 1),
}


@pytest.mark.parametrize(("answers", "failures", "requests"), cases(RECOVERIES))
async def test_a_burst_of_failures_then_a_good_answer_is_stored(
    faulty: FaultServer,
    start: Start,
    answers: tuple[Answer, ...],
    failures: list[str],
    requests: int,
) -> None:
    gateway = await start(faulty.base_url, {"timeout": 0.5})
    faulty.add(FAULT_PATH, answers)
    faulty.routes[FAULT_PATH] = GOOD

    async with cache_hits(gateway):
        with capture_logs() as logs:
            reply = await gateway.get(FAULT_PATH)
        again = await gateway.get(FAULT_PATH)

    assert (reply.status, reply.body, reply.headers["Cache-Status"]) == (200, GOOD, STORED)
    assert (again.status, again.body, again.headers["Cache-Status"]) == (200, GOOD, HIT)
    assert faulty.count(FAULT_PATH) == requests
    logged = [
        str(line["status"]) if line["event"] == "upstream.error" else line["error"]
        for line in logs
        if line["event"] in ("upstream.error", "upstream.attempt_failed")
    ]
    assert logged == failures
    assert events(logs, "gateway.error", "ref_id") == []
    assert stored_run_ids(gateway) == sorted([*CACHED, FAULT_RUN])
    await check_healthy(gateway, faulty)


async def test_a_500_is_returned_at_once_and_the_next_request_fetches_again(
    faulty: FaultServer, start: Start
) -> None:
    gateway = await start(faulty.base_url)
    fault = refusals(500, 1)
    faulty.add(FAULT_PATH, fault.answers)
    faulty.routes[FAULT_PATH] = GOOD

    async with cache_hits(gateway):
        with capture_logs() as logs:
            first = await gateway.get(FAULT_PATH)
        check_reply(first, logs, fault, "input")
        second = await gateway.get(FAULT_PATH)

    assert (second.status, second.body, second.headers["Cache-Status"]) == (200, GOOD, STORED)
    assert faulty.count(FAULT_PATH) == 2
    await check_healthy(gateway, faulty)


async def test_dns_failure_is_502(start: Start) -> None:
    gateway = await start("http://nonexistent.invalid")

    async with cache_hits(gateway):
        for _ in (1, 2):
            with capture_logs() as logs:
                reply, elapsed = await timed(gateway.get(FAULT_PATH))
            check_reply(reply, logs, could_not_get(502, "ClientConnectorDNSError", ()), "input")
            assert elapsed < 2.0
            assert stored_run_ids(gateway) == sorted(CACHED)

    await check_healthy(gateway, None)
    ready = orjson.loads((await gateway.get("/readyz", key=None)).body)
    assert ready["upstream"]["last_contact"] == "failed"
    assert ready["upstream"]["detail"] == "ClientConnectorDNSError"


async def test_connection_refused_is_502_until_upstream_is_back(
    faulty: FaultServer, start: Start
) -> None:
    gateway = await start(faulty.base_url)
    await faulty.stop()  # nothing listens on the port now

    async with cache_hits(gateway):
        for _ in (1, 2):
            with capture_logs() as logs:
                reply, elapsed = await timed(gateway.get(FAULT_PATH))
            check_reply(reply, logs, could_not_get(502, "ClientConnectorError", ()), "input")
            assert elapsed < 1.0
            assert stored_run_ids(gateway) == sorted(CACHED)

    await faulty.start()  # the same port again
    faulty.routes[FAULT_PATH] = GOOD
    reply = await gateway.get(FAULT_PATH)
    assert (reply.status, reply.body, reply.headers["Cache-Status"]) == (200, GOOD, STORED)
    assert faulty.requests == [FAULT_PATH]
    await check_healthy(gateway, faulty)


# A forwarded route: GET /v1/tasks/groups/{id}


@pytest.mark.parametrize("name", cases({name: name for name in PASS_THROUGH}))
async def test_a_fault_on_a_forwarded_get(faulty: FaultServer, start: Start, name: str) -> None:
    fault = FAULTS[name]
    gateway = await start(faulty.base_url, fault.upstream)
    faulty.add(PASS_PATH, fault.answers)
    faulty.routes[PASS_PATH] = TASK_RUN

    async with cache_hits(gateway):
        with capture_logs() as logs:
            reply, elapsed = await timed(gateway.get(PASS_PATH))
        check_reply(reply, logs, fault, "pass-through")
        assert elapsed < fault.within
        assert faulty.count(PASS_PATH) == len(fault.answers)
        after = await gateway.get(PASS_PATH)

    assert (after.status, after.body, after.headers["Cache-Status"]) == (200, TASK_RUN, BYPASS)
    assert faulty.count(PASS_PATH) == len(fault.answers) + 1
    assert stored_run_ids(gateway) == sorted(CACHED)
    await check_healthy(gateway, faulty)


# Over one 64 KiB chunk, so the gateway streams it: a smaller answer is read before its head
# goes to the app.
LARGE_TASK_RUN = orjson.dumps({"run_id": FAULT_RUN, "status": "completed", "pad": "x" * 70_000})
BROKEN_BODIES = {
    "trickles-past-timeout": (trickle(LARGE_TASK_RUN, 10, 0.05), SLOW, "TimeoutError"),
    "reset-mid-body": (cut(LARGE_TASK_RUN, 20, reset=True), {}, "ClientPayloadError"),
}
BROKEN_SMALL_BODIES = {
    "trickles-past-timeout": (trickle(TASK_RUN, 10, 0.05), SLOW, 504),
    "reset-mid-body": (cut(TASK_RUN, 20, reset=True), {}, 502),
}


@pytest.mark.parametrize(("answer", "timeouts", "error"), BROKEN_BODIES.values(), ids=BROKEN_BODIES)
async def test_a_forwarded_body_that_breaks_after_its_head_is_cut_off(
    faulty: FaultServer, start: Start, answer: Answer, timeouts: dict[str, float], error: str
) -> None:
    """The 200 head has gone to the app: the gateway cuts the connection, so the app sees a
    broken body, never a short one passed off as whole."""
    gateway = await start(faulty.base_url, timeouts)
    faulty.add(PASS_PATH, [answer])

    async with cache_hits(gateway):
        with capture_logs() as logs, pytest.raises(aiohttp.ClientPayloadError):
            await gateway.get(PASS_PATH)

    assert faulty.count(PASS_PATH) == 1  # bytes reached the app: never retried
    assert events(logs, "upstream.stream_broken", "error") == [(error,)]
    assert stored_run_ids(gateway) == sorted(CACHED)
    await check_healthy(gateway, faulty)


@pytest.mark.parametrize(
    ("answer", "timeouts", "status"), BROKEN_SMALL_BODIES.values(), ids=BROKEN_SMALL_BODIES
)
async def test_a_small_forwarded_body_that_breaks_is_an_error_answer(
    faulty: FaultServer, start: Start, answer: Answer, timeouts: dict[str, float], status: int
) -> None:
    """An answer of at most 64 KiB is read whole before its head goes out (one write for both):
    if it breaks, the app gets the gateway's own error, not a 200 with a broken body."""
    gateway = await start(faulty.base_url, timeouts)
    faulty.add(PASS_PATH, [answer])

    async with cache_hits(gateway):
        with capture_logs() as logs:
            reply = await gateway.get(PASS_PATH)

    assert reply.status == status
    assert reply.headers["Content-Type"] == "application/json"
    assert error_of(reply.body)["message"].startswith("Parallel API")
    assert faulty.count(PASS_PATH) == 1
    assert events(logs, "upstream.stream_broken", "error") == []
    assert [e["status"] for e in logs if e["event"] == "gateway.error"] == [status]
    await check_healthy(gateway, faulty)
