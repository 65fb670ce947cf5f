"""The fast path is guarded: a private aiohttp part that differs turns it off, with one warning,
and the public stack then gives the same answers."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from gateway.http import internals as aiohttp_internals
from gateway.http.fast_connection import GatewayConnection
from gateway.http.head_meter import HeadMeter
from gateway.http.public_connection import PublicConnection
from gateway.http.server import use_fast_path
from tests.conftest import Gateway, StartGateway, capture_logs, fast_path_only
from tests.fake_upstream import FakeUpstream, task_run_input
from tests.http.test_limits import LINE_414, SMALL, assert_error_response
from tests.raw_http import RawReply, connect, read_reply, request

RUN = "trun_guarded"


def line_too_long_without_limit(
    self: LineTooLong, line: Any, limit: Any = "Unknown", actual_size: Any = "Unknown"
) -> None:
    """LineTooLong as a release might make it: the same message, the limit no longer in args."""
    BadHttpMessage.__init__(self, f"Got more than {limit} bytes when reading {line!r}.")


def test_this_aiohttp_is_as_the_fast_path_expects() -> None:
    assert aiohttp_internals.check() == []


def test_a_changed_private_part_is_named() -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LineTooLong, "__init__", line_too_long_without_limit)
        differences = aiohttp_internals.check()

    assert [d.partition(":")[0] for d in differences] == ["LineTooLong args", "parser messages"]


def test_a_check_that_raises_is_a_difference_not_a_failed_start() -> None:
    def changed(self: LineTooLong, *args: Any) -> None:
        raise TypeError("a new signature")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LineTooLong, "__init__", changed)
        differences = aiohttp_internals.check()

    assert "LineTooLong args: the check raised TypeError" in differences


def test_the_switch_turns_the_fast_path_off_without_a_warning() -> None:
    with capture_logs() as logs:
        on = use_fast_path({})
        off = use_fast_path({"GATEWAY_FAST_PATH": "off"})

    assert (on, off) == (True, False)
    assert [(line["event"], line["log_level"]) for line in logs] == [
        ("gateway.fast_path_off", "info")
    ]
    assert logs[0]["switch"] == "GATEWAY_FAST_PATH=off"


async def served_by(gateway: Gateway, *requests: bytes) -> tuple[list[RawReply], list[type]]:
    """Answers to `requests`, one at a time on one connection, and its connection's class."""
    reader, writer = await connect(gateway.url)
    try:
        replies = []
        for data in requests:
            writer.write(data)
            replies.append(await read_reply(reader))
        server = gateway.server.runner.server if gateway.server.runner else None
        assert server is not None
        return replies, [type(c) for c in server.connections]
    finally:
        writer.close()
        await writer.wait_closed()


async def test_with_a_changed_private_part_the_public_stack_serves_alike(
    start_gateway: StartGateway,
    make_settings: Any,
    upstream: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upstream.add(RUN, task_run_input(1))
    monkeypatch.setattr(LineTooLong, "__init__", line_too_long_without_limit)
    with capture_logs() as logs:
        gateway = await start_gateway(make_settings(server=SMALL))
    head = request(f"/v1/tasks/runs/{RUN}/input", f"x-api-key: {gateway.app_key}")

    (miss, hit), connections = await served_by(gateway, head, head)
    too_long, _ = await served_by(gateway, request("/v1/" + "a" * 97))

    warnings = [line for line in logs if line["event"] == "gateway.fast_path_off"]
    assert [(w["log_level"], len(w["differences"])) for w in warnings] == [("warning", 2)]
    assert warnings[0]["differences"][0].startswith("LineTooLong args: expected (line, limit")
    assert connections == [PublicConnection]
    assert (miss.status, miss.headers["Cache-Status"]) == (
        200,
        "parallel-gateway; fwd=uri-miss; stored",
    )
    assert (hit.status, hit.headers["Cache-Status"], hit.body) == (
        200,
        "parallel-gateway; hit",
        miss.body,
    )
    assert upstream.count(RUN) == 1
    assert_error_response(too_long[0], 414, LINE_414)


@fast_path_only
async def test_otherwise_the_fast_path_serves(gateway: Gateway) -> None:
    with capture_logs() as logs:
        _, connections = await served_by(gateway, request("/healthz"))

    assert connections == [GatewayConnection]
    assert [line for line in logs if line["event"] == "gateway.fast_path_off"] == []


@pytest.mark.parametrize(
    ("chunks", "ends", "fields", "target", "body"),
    [
        ([b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"], [28], 1, 2, False),
        (
            [b"\r\nGET /ab HTTP/1.1\r\n", b"a: b\r\n", b"\r", b"\nGET"],
            [None, None, None, 1],
            1,
            3,
            False,
        ),
        ([b"GET /" + b"a" * 300], [None], 0, 301, False),
        ([b"POST / HTTP/1.1\nContent-Length: 2\n\nab"], [35], 1, 1, True),
        ([b"POST / HTTP/1.1\r\nTransfer-En", b"coding: chunked\r\n\r\n"], [None, 19], 1, 1, True),
    ],
)
def test_head_meter(
    chunks: list[bytes], ends: list[int | None], fields: int, target: int, body: bool
) -> None:
    meter = HeadMeter(100)
    assert [meter.feed(chunk) for chunk in chunks] == ends
    assert (meter.fields, meter.target_bytes(), meter.body) == (fields, target, body)
