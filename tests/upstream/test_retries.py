"""Retries of the idempotent input GET: transient failures, retry-after, and the deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
import pytest
from parallel import AsyncParallel, InternalServerError

from gateway.config import Settings
from tests.conftest import Gateway, StartGateway, capture_logs, unused_port
from tests.fake_upstream import FakeUpstream, Scripted, error_json, task_run_input

RUN = "/v1/tasks/runs/trun_retry/input"


async def test_503_then_200_is_retried_and_stored(gateway: Gateway, upstream: FakeUpstream) -> None:
    body = upstream.add("trun_retry", task_run_input())
    upstream.script.append(Scripted(503, error_json("overloaded")))

    reply = await gateway.get(RUN)

    assert reply.status == 200
    assert reply.body == body
    assert reply.headers["Cache-Status"] == "parallel-gateway; fwd=uri-miss; stored"
    assert upstream.count() == 2


async def test_each_retryable_status_is_retried(gateway: Gateway, upstream: FakeUpstream) -> None:
    upstream.add("trun_retry", task_run_input())
    for status in (429, 502, 504):
        upstream.script.append(Scripted(status, error_json("transient")))

    reply = await gateway.get(RUN)

    assert reply.status == 200
    assert upstream.count() == 4


async def test_retry_after_ms_is_honoured(gateway: Gateway, upstream: FakeUpstream) -> None:
    upstream.add("trun_retry", task_run_input())
    upstream.script.append(Scripted(429, error_json("slow down"), {"retry-after-ms": "400"}))
    arrivals: list[float] = []
    upstream.on_request = lambda: arrivals.append(asyncio.get_running_loop().time())

    reply = await gateway.get(RUN)

    assert reply.status == 200
    assert len(arrivals) == 2
    # Backoff alone would wait at most backoff_max (0.05 s); the server asked for 0.4 s.
    assert arrivals[1] - arrivals[0] >= 0.4


async def test_retry_after_seconds_is_honoured(gateway: Gateway, upstream: FakeUpstream) -> None:
    upstream.add("trun_retry", task_run_input())
    upstream.script.append(Scripted(503, error_json("later"), {"retry-after": "1"}))
    arrivals: list[float] = []
    upstream.on_request = lambda: arrivals.append(asyncio.get_running_loop().time())

    assert (await gateway.get(RUN)).status == 200
    assert arrivals[1] - arrivals[0] >= 1.0


async def test_retry_after_over_the_cap_is_returned_not_waited(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    upstream.add("trun_retry", task_run_input())
    body = error_json("rate limited", "99999999-2222-3333-4444-555555555555")
    upstream.script.append(Scripted(429, body, {"retry-after": "3600"}))

    reply = await gateway.get(RUN)

    assert reply.status == 429
    assert reply.body == body
    assert reply.headers["retry-after"] == "3600"
    assert reply.headers["Cache-Status"] == "parallel-gateway; fwd=uri-miss; fwd-status=429"
    assert upstream.count() == 1


async def test_other_statuses_are_returned_as_they_are(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    body = error_json("Internal error", "12345678-2222-3333-4444-555555555555")
    upstream.script.append(Scripted(500, body, {"content-type": "application/json"}))

    reply = await gateway.get(RUN)

    assert (reply.status, reply.body) == (500, body)
    assert upstream.count() == 1


async def test_persistent_503_is_returned_after_max_attempts(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    for _ in range(4):
        upstream.script.append(Scripted(503, error_json("down")))

    with capture_logs() as logs:
        reply = await gateway.get(RUN)

    assert reply.status == 503
    assert orjson.loads(reply.body)["error"]["message"] == "down"
    assert upstream.count() == 4
    assert [e["attempt"] for e in logs if e["event"] == "upstream.error"] == [1, 2, 3, 4]


async def test_slow_upstream_at_the_deadline_gets_504(
    start_gateway: StartGateway,
    make_settings: Callable[..., Settings],
    upstream: FakeUpstream,
) -> None:
    gateway = await start_gateway(make_settings(upstream={"timeout": 0.2, "deadline": 0.5}))
    upstream.add("trun_retry", task_run_input())
    upstream.delay = 5.0

    with capture_logs() as logs:
        reply = await gateway.get(RUN)

    assert reply.status == 504
    error = orjson.loads(reply.body)["error"]
    assert error["message"] == f"Parallel API at {upstream.base_url[7:]} did not answer in time."
    assert (reply.headers["x-should-retry"], reply.headers["retry-after"]) == ("false", "1")
    assert [e["ref_id"] for e in logs if e["event"] == "gateway.error"] == [error["ref_id"]]
    # Per-attempt timeout 0.2 s within a 0.5 s deadline: two or three attempts, never more.
    assert 2 <= upstream.count() <= 3
    assert (
        reply.headers["Cache-Status"] == "parallel-gateway; fwd=uri-miss; detail=upstream-timeout"
    )


async def test_unreachable_upstream_gets_502(
    start_gateway: StartGateway, make_settings: Callable[..., Settings]
) -> None:
    host = f"127.0.0.1:{unused_port()}"
    settings = make_settings(upstream={"base_url": f"http://{host}"})
    gateway = await start_gateway(settings)

    with capture_logs() as logs:
        reply = await gateway.get(RUN)

    assert reply.status == 502
    error = orjson.loads(reply.body)["error"]
    assert error["message"] == (
        f"Parallel API at {host} could not be reached: the connection was refused."
    )
    assert [e["ref_id"] for e in logs if e["event"] == "gateway.error"] == [error["ref_id"]]
    attempts = [e["attempt"] for e in logs if e["event"] == "upstream.attempt_failed"]
    assert attempts == [1, 2, 3, 4]
    assert reply.headers["Cache-Status"] == (
        "parallel-gateway; fwd=uri-miss; detail=upstream-unavailable"
    )


async def test_one_sdk_call_makes_at_most_max_attempts_upstream(
    start_gateway: StartGateway, make_settings: Callable[..., Settings], upstream: FakeUpstream
) -> None:
    gateway = await start_gateway(make_settings(upstream={"max_attempts": 3}))
    upstream.add("trun_retry", task_run_input())
    busy = error_json("Service unavailable")
    # More 503s than the gateway's and the SDK's retries together could use.
    upstream.script.extend(
        Scripted(503, busy, {"Content-Type": "application/json"}) for _ in range(20)
    )

    async with AsyncParallel(api_key=gateway.app_key, base_url=gateway.url) as sdk:  # 2 retries
        for call in (sdk.task_run.retrieve_input, sdk.task_run.retrieve):
            before = upstream.count()
            with pytest.raises(InternalServerError) as caught:
                await call("trun_retry")
            headers = caught.value.response.headers
            assert (caught.value.status_code, headers["x-should-retry"]) == (503, "false")
            assert upstream.count() - before == 3  # the gateway's attempts, and no more


async def test_an_answer_after_the_gateways_retries_is_not_retried_by_the_sdk_on_top(
    start_gateway: StartGateway, make_settings: Callable[..., Settings], upstream: FakeUpstream
) -> None:
    """A 503 the gateway retried, then a 500 it does not retry: the SDK would retry the 500
    (any 5xx) unless told not to, making more than upstream.max_attempts attempts."""
    gateway = await start_gateway(make_settings(upstream={"max_attempts": 3}))
    upstream.add("trun_retry", task_run_input())
    json = {"Content-Type": "application/json"}

    async with AsyncParallel(api_key=gateway.app_key, base_url=gateway.url) as sdk:  # 2 retries
        for call in (sdk.task_run.retrieve_input, sdk.task_run.retrieve):
            upstream.script.clear()
            upstream.script.append(Scripted(503, error_json("Service unavailable"), json))
            upstream.script.extend(Scripted(500, error_json("Internal"), json) for _ in range(5))
            before = upstream.count()
            with pytest.raises(InternalServerError) as caught:
                await call("trun_retry")
            headers = caught.value.response.headers
            assert (caught.value.status_code, headers["x-should-retry"]) == (500, "false")
            assert upstream.count() - before == 2  # the 503, the 500 after it, and no more
