"""Concurrent misses for one run make exactly one upstream request."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson

from tests.conftest import Gateway
from tests.fake_upstream import FakeUpstream, Scripted, error_json, task_run_input

RUN = "/v1/tasks/runs/trun_flight/input"


async def test_fifty_concurrent_misses_make_one_upstream_request(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    body = upstream.add("trun_flight", task_run_input(3))
    upstream.delay = 0.1  # long enough that every request arrives while the first is in flight

    replies = await asyncio.gather(*(gateway.get(RUN) for _ in range(50)))

    assert upstream.count() == 1
    assert [r.status for r in replies] == [200] * 50
    assert all(r.body == body for r in replies)
    assert Counter(r.headers["Cache-Status"] for r in replies) == {
        "parallel-gateway; fwd=uri-miss; stored": 1,
        "parallel-gateway; fwd=uri-miss; stored; collapsed": 49,
    }


async def test_a_failed_fetch_fails_every_waiter(gateway: Gateway, upstream: FakeUpstream) -> None:
    upstream.script.append(
        Scripted(500, error_json("boom", "11111111-2222-3333-4444-555555555555"), delay=0.1)
    )

    replies = await asyncio.gather(*(gateway.get(RUN) for _ in range(20)))

    assert upstream.count() == 1
    assert [r.status for r in replies] == [500] * 20
    assert {orjson.loads(r.body)["error"]["ref_id"] for r in replies} == {
        "11111111-2222-3333-4444-555555555555"
    }
    assert Counter(r.headers["Cache-Status"] for r in replies) == {
        "parallel-gateway; fwd=uri-miss; fwd-status=500": 1,
        "parallel-gateway; fwd=uri-miss; fwd-status=500; collapsed": 19,
    }
    # Nothing was stored: the next request goes upstream again.
    upstream.add("trun_flight", task_run_input())
    assert (await gateway.get(RUN)).headers["Cache-Status"] == (
        "parallel-gateway; fwd=uri-miss; stored"
    )
    assert upstream.count() == 2


async def test_a_client_that_leaves_does_not_cancel_the_shared_fetch(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    upstream.add("trun_flight", task_run_input())
    upstream.delay = 0.2
    leader = asyncio.create_task(gateway.get(RUN))
    await asyncio.sleep(0.05)
    follower = asyncio.create_task(gateway.get(RUN))
    await asyncio.sleep(0.05)
    leader.cancel()

    reply = await follower

    assert reply.status == 200
    assert reply.headers["Cache-Status"] == "parallel-gateway; fwd=uri-miss; stored; collapsed"
    assert upstream.count() == 1
