"""App keys at the door: 401 for a missing, unknown or revoked key, with nothing upstream."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tests.conftest import Gateway, Reply, run_cli
from tests.fake_upstream import TEAM_KEY, FakeUpstream, task_run_input

RUN = "/v1/tasks/runs/trun_auth/input"


def assert_401(status: int, body: bytes, message: str) -> None:
    assert status == 401
    error = orjson.loads(body)
    assert error["type"] == "error"
    assert error["error"]["message"] == message
    assert len(error["error"]["ref_id"]) == 36


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Unauthorized: missing gateway key; send it in the x-api-key header."),
        (
            {"x-api-key": "pgw_not-a-real-key-000000000000000000"},
            "Unauthorized: invalid gateway key.",
        ),
        ({"x-api-key": TEAM_KEY}, "Unauthorized: invalid gateway key."),
        ({"authorization": "Bearer nope"}, "Unauthorized: invalid gateway key."),
        (
            {"authorization": "Basic abc"},
            "Unauthorized: missing gateway key; send it in the x-api-key header.",
        ),
    ],
    ids=["missing", "unknown", "team-key-is-not-an-app-key", "unknown-bearer", "not-bearer"],
)
async def test_bad_keys_get_401_and_nothing_upstream(
    gateway: Gateway, upstream: FakeUpstream, headers: dict[str, str], message: str
) -> None:
    upstream.add("trun_auth", task_run_input())
    reply = await gateway.get(RUN, key=None, **headers)
    assert_401(reply.status, reply.body, message)
    assert upstream.count() == 0


async def test_cache_hits_need_a_key_too(gateway: Gateway, upstream: FakeUpstream) -> None:
    upstream.add("trun_auth", task_run_input())
    assert (await gateway.get(RUN)).status == 200
    reply = await gateway.get(RUN, key=None)
    assert reply.status == 401
    assert reply.headers["Cache-Status"] == "parallel-gateway; detail=unauthenticated"


async def test_bearer_key_is_accepted(gateway: Gateway, upstream: FakeUpstream) -> None:
    upstream.add("trun_auth", task_run_input())
    reply = await gateway.get(RUN, key=None, authorization=f"Bearer {gateway.app_key}")
    assert reply.status == 200
    assert orjson.loads(reply.body) == task_run_input()


async def cli(gateway: Gateway, *args: str) -> str:
    """Run the real CLI against the serving gateway's database; return its stdout."""
    result = await run_cli(gateway.config, *args)
    assert result.code == 0, result.err
    return result.out.decode()


async def wait_for_status(gateway: Gateway, key: str, status: int) -> Reply:
    """Poll until the gateway answers `status`, for at most the promised 2 seconds."""
    deadline = asyncio.get_running_loop().time() + 2.0
    while True:
        reply = await gateway.get(RUN, key=key)
        if reply.status == status or asyncio.get_running_loop().time() > deadline:
            return reply
        await asyncio.sleep(0.05)


async def test_key_revoked_from_cli_while_serving_gets_401(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    upstream.add("trun_auth", task_run_input())
    assert (await gateway.get(RUN)).status == 200

    await cli(gateway, "keys", "revoke", "app")

    reply = await wait_for_status(gateway, gateway.app_key, 401)
    assert_401(reply.status, reply.body, "Unauthorized: this gateway key has been revoked.")
    assert upstream.count() == 1


async def test_key_created_from_cli_while_serving_works(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    upstream.add("trun_auth", task_run_input())
    key = (await cli(gateway, "keys", "create", "late-app")).strip()

    reply = await wait_for_status(gateway, key, 200)
    assert reply.status == 200
    assert orjson.loads(reply.body) == task_run_input()
