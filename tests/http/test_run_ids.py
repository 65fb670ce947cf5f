"""Run ids: only [A-Za-z0-9_-]{1,128} reaches upstream, matched on the raw path."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tests.conftest import Gateway
from tests.fake_upstream import FakeUpstream

MALFORMED = {
    "nul": "%00",
    "space": "a%20b",
    "percent": "%25",
    "too-long": "a" * 200,
    "129-chars": "a" * 129,
    "dot": "trun.1",
    "unicode": "%C3%A9t%C3%A9",
    "empty": "",
}


@pytest.mark.parametrize("raw_run_id", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_run_id_gets_422_and_nothing_upstream(
    gateway: Gateway, upstream: FakeUpstream, raw_run_id: str
) -> None:
    reply = await gateway.get(f"/v1/tasks/runs/{raw_run_id}/input")

    assert reply.status == 422
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.headers["Cache-Status"] == "parallel-gateway; detail=invalid-run-id"
    body = orjson.loads(reply.body)
    assert body["type"] == "error"
    assert body["error"]["message"].startswith("Request validation error: run_id must be")
    assert upstream.count() == 0


@pytest.mark.parametrize(
    ("raw_run_id", "problem"),
    [
        ("a%2Fb", "a backslash or an encoded / or \\ (%2F, %5C)"),
        ("a%2fb", "a backslash or an encoded / or \\ (%2F, %5C)"),
        ("a%5Cb", "a backslash or an encoded / or \\ (%2F, %5C)"),
        ("%2e%2e", ". or .. segments"),
    ],
    ids=["encoded-slash", "encoded-slash-lower", "encoded-backslash", "dot-dot-encoded"],
)
async def test_a_run_id_that_could_change_the_path_gets_400_and_nothing_upstream(
    gateway: Gateway, upstream: FakeUpstream, raw_run_id: str, problem: str
) -> None:
    reply = await gateway.get(f"/v1/tasks/runs/{raw_run_id}/input")

    assert reply.status == 400
    assert reply.headers["Cache-Status"] == "parallel-gateway; detail=invalid-path"
    message = orjson.loads(reply.body)["error"]["message"]
    assert message == f"Request validation error: the path may not hold {problem}."
    assert upstream.count() == 0


async def raw_request(gateway: Gateway, request_line_path: str) -> tuple[int, bytes]:
    """Send a request line exactly as given, bypassing any client-side URL normalisation."""
    reader, writer = await asyncio.open_connection(gateway.server.host, gateway.server.port)
    writer.write(
        f"GET {request_line_path} HTTP/1.1\r\nHost: gw\r\nx-api-key: {gateway.app_key}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/tasks/runs/../input", 400),
        ("/v1/tasks/runs/./input", 400),
        ("/v1/tasks/runs/trun_1/../../input", 400),
        ("/v1/tasks/runs/trun_1/%2e%2E/result", 400),
        ("/v1/tasks/./runs", 400),
    ],
    ids=["dot-dot", "dot", "traversal", "encoded-traversal", "dot-in-forwarded"],
)
async def test_dot_segments_are_never_resolved(
    gateway: Gateway, upstream: FakeUpstream, path: str, status: int
) -> None:
    got, body = await raw_request(gateway, path)
    assert got == status
    assert orjson.loads(body)["type"] == "error"
    assert upstream.count() == 0


async def test_longest_valid_run_id_is_forwarded(gateway: Gateway, upstream: FakeUpstream) -> None:
    run_id = "A-_z9" * 25 + "abc"
    assert len(run_id) == 128
    reply = await gateway.get(f"/v1/tasks/runs/{run_id}/input")
    assert reply.status == 404
    assert [r.raw_path for r in upstream.requests] == [f"/v1/tasks/runs/{run_id}/input"]


async def test_query_string_is_not_part_of_the_run_id(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    upstream.add("trun_q", {"processor": "base", "input": "q"})
    reply = await gateway.get("/v1/tasks/runs/trun_q/input?x=1")
    assert reply.status == 200
    assert [r.raw_path for r in upstream.requests] == ["/v1/tasks/runs/trun_q/input"]


@pytest.mark.parametrize("path", ["/v2/tasks/runs/trun_1", "/admin", "/v1beta", "/"])
async def test_a_path_outside_the_api_gets_404_error_response(
    gateway: Gateway, upstream: FakeUpstream, path: str
) -> None:
    reply = await gateway.get(path)
    assert reply.status == 404
    assert orjson.loads(reply.body)["error"]["message"] == (
        f"No such route on this gateway: GET {path}"
    )
    assert upstream.count() == 0


async def test_an_extra_segment_is_forwarded_as_it_is(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    reply = await gateway.get("/v1/tasks/runs/a/b/input")
    assert reply.status == 404  # the fake upstream's answer
    assert reply.headers["Cache-Status"] == "parallel-gateway; fwd=bypass"
    assert [r.raw_path for r in upstream.requests] == ["/v1/tasks/runs/a/b/input"]
