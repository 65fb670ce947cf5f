"""Upstream redirects are never followed: the team key reaches only upstream.base_url's origin."""

from __future__ import annotations

import sqlite3

import pytest
from parallel import APIStatusError

from tests.conftest import capture_logs
from tests.fake_upstream import FakeUpstream, Scripted, task_run_input
from tests.passthrough_support import (
    BYPASS,
    MISS,
    STORED,
    Harness,
    ServerFactory,
    Start,
    error_of,
)
from tests.passthrough_support import start as start  # the fixture, with upstream
from tests.passthrough_support import upstream as upstream  # FakeParallel

RUN = "trun_9907962f83aa4d9d98fd7f4bf745d654"
MOVED = b"<a href='elsewhere'>Moved</a>"


@pytest.fixture
async def other(aiohttp_server: ServerFactory) -> FakeUpstream:
    """Another origin (another port), where upstream's redirects point."""
    return await FakeUpstream().listen(aiohttp_server)


@pytest.fixture
async def gw(start: Start) -> Harness:
    return await start()


def redirect(status: int, location: str) -> Scripted:
    return Scripted(status, MOVED, {"Location": location, "Content-Type": "text/html"})


FORWARDED = {
    "get": ("GET", "/v1/tasks/groups/tgrp_1", None, {}),
    "post": ("POST", "/v1/tasks/runs", b'{"input": "q", "processor": "lite"}', {}),
    "stream": ("GET", "/v1/tasks/groups/tgrp_1/events", None, {"Accept": "text/event-stream"}),
}


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize(("method", "path", "body", "headers"), FORWARDED.values(), ids=FORWARDED)
async def test_a_redirect_on_a_forwarded_route_goes_back_as_it_is(
    gw: Harness,
    other: FakeUpstream,
    status: int,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
) -> None:
    location = f"{other.base_url}{path}?from=upstream"
    gw.fake.script.append(redirect(status, location))

    reply = await gw.request(method, path, data=body, headers=headers)

    assert reply.status == status
    assert reply.headers["Location"] == location
    assert reply.headers["Cache-Status"] == BYPASS
    assert reply.headers["Content-Type"] == "text/html"
    assert reply.body == MOVED
    assert gw.sent() == [(method, path)]
    assert other.requests == []


@pytest.mark.parametrize("status", [301, 307])
@pytest.mark.parametrize("tail", ["", "/result", "/events"])
async def test_a_redirect_on_a_final_answer_route_goes_back_and_is_not_stored(
    gw: Harness, other: FakeUpstream, status: int, tail: str
) -> None:
    path = f"/v1/tasks/runs/{RUN}{tail}"
    location = f"{other.base_url}{path}?from=upstream"
    for _ in range(2):
        gw.fake.script.append(redirect(status, location))
        reply = await gw.request("GET", path)
        assert (reply.status, reply.headers["Location"], reply.body) == (status, location, MOVED)
        assert reply.headers["Cache-Status"] == f"{MISS}; fwd-status={status}"
    assert gw.sent() == [("GET", path), ("GET", path)]
    assert other.requests == []


async def test_a_relative_location_is_passed_as_it_is(gw: Harness, other: FakeUpstream) -> None:
    gw.fake.script.append(redirect(307, "../runs/elsewhere?x=%2F"))

    reply = await gw.request("GET", f"/v1/tasks/runs/{RUN}")

    assert (reply.status, reply.headers["Location"], reply.body) == (
        307,
        "../runs/elsewhere?x=%2F",
        MOVED,
    )
    assert gw.sent() == [("GET", f"/v1/tasks/runs/{RUN}")]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_on_the_input_route_is_502_and_nothing_is_stored(
    gw: Harness, other: FakeUpstream, status: int
) -> None:
    path = f"/v1/tasks/runs/{RUN}/input"
    stored = gw.fake.add(RUN, task_run_input())
    other.add(RUN, task_run_input(1))
    gw.fake.script.append(redirect(status, f"{other.base_url}{path}"))

    with capture_logs() as logs:
        reply = await gw.request("GET", path)

    assert reply.status == 502
    error = error_of(reply.body)
    assert error["message"] == (
        f"Parallel API answered {status} (a redirect, not followed) for run {RUN}; "
        "nothing was stored."
    )
    assert error["detail"] is None
    assert reply.headers["Cache-Status"] == (
        "parallel-gateway; fwd=uri-miss; detail=upstream-redirect"
    )
    assert "Location" not in reply.headers
    logged = [line for line in logs if line["event"] == "upstream.error"]
    assert [(line["status"], line["ref_id"], line["ref_id_by"]) for line in logged] == [
        (status, error["ref_id"], "gateway")
    ]
    assert other.requests == []
    with sqlite3.connect(gw.settings.storage.database) as conn:
        assert conn.execute("SELECT count(*) FROM run_inputs").fetchone() == (0,)

    again = await gw.request("GET", path)  # nothing was kept: upstream is asked again

    assert (again.status, again.body, again.headers["Cache-Status"]) == (200, stored, STORED)
    assert gw.sent() == [("GET", path)] * 2
    assert other.requests == []


async def test_the_sdk_gets_the_redirect_and_nobody_follows_it(
    gw: Harness, other: FakeUpstream
) -> None:
    location = f"{other.base_url}/v1/tasks/runs"
    gw.fake.script.append(redirect(307, location))

    with pytest.raises(APIStatusError) as caught:
        await gw.sdk().task_run.create(input="q", processor="lite")

    assert caught.value.status_code == 307
    assert caught.value.response.headers["location"] == location
    assert caught.value.response.content == MOVED
    assert gw.sent() == [("POST", "/v1/tasks/runs")]
    assert gw.fake.runs == {}
    assert other.requests == []
