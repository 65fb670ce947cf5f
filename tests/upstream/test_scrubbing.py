"""Upstream text reaches an app or a log line only through the secret scrubber: an upstream that
echoes the team key back in its headers or error bodies gives nothing away."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web

from gateway.config import Settings
from tests.conftest import Gateway, ServerFactory, StartGateway, capture_logs
from tests.fake_upstream import TEAM_KEY, FakeUpstream, error_json
from tests.passthrough_support import error_of
from tests.raw_http import request, send_raw
from tests.upstream.test_team_key import NEW_KEY, write_key

ERROR_RUN = re.compile(r"/v1/tasks/runs/(\d{3})-(json|html)(?:/input)?")


class EchoingUpstream(FakeUpstream):
    """Reflects the x-api-key it was sent into its answer's headers and body.

    A run id `<status>-json` answers that status with an ErrorResponse whose message holds the
    key; `<status>-html` with an HTML page holding it.
    """

    async def handle(self, request: web.Request) -> web.Response:
        await self.intercept(request)
        key = request.headers.get("x-api-key", "")
        match = ERROR_RUN.fullmatch(request.raw_path.partition("?")[0])
        assert match is not None, request.raw_path
        status, kind = int(match[1]), match[2]
        if kind == "json":
            body, content_type = error_json(f"Unknown key {key}", "ref-echo"), "application/json"
        else:
            body, content_type = f"<html><p>{key} is not valid</p></html>".encode(), "text/html"
        headers = {
            "Content-Type": content_type,
            "x-echo": f"key={key}",
            "www-authenticate": f'Key realm="{key}"',
            "retry-after": "0",
            "x-should-retry": "false",
        }
        if 300 <= status < 400:
            headers["Location"] = f"/login?key={key}"
        return web.Response(status=status, body=body, headers=headers)


@pytest.fixture
async def upstream(aiohttp_server: ServerFactory) -> FakeUpstream:
    return await EchoingUpstream().listen(aiohttp_server)


@pytest.fixture
async def gateway(start_gateway: StartGateway, make_settings: Callable[..., Settings]) -> Gateway:
    return await start_gateway(make_settings(upstream={"max_attempts": 1}))


def unechoed(reply_body: bytes, *headers: str) -> None:
    assert TEAM_KEY.encode() not in reply_body
    for value in headers:
        assert TEAM_KEY not in value


# (A 401 or 403 is the team key's own refusal: tests/upstream/test_team_key.py.)
@pytest.mark.parametrize("status", [400, 404, 429, 500, 503])
@pytest.mark.parametrize("route", ["forwarded", "input"])
async def test_an_echoed_key_in_an_error_response_is_scrubbed(
    gateway: Gateway, upstream: FakeUpstream, status: int, route: str
) -> None:
    path = f"/v1/tasks/runs/{status}-json" + ("/input" if route == "input" else "")

    with capture_logs() as logs:
        reply = await gateway.get(path)

    assert reply.status == status
    assert reply.body == error_json("Unknown key [redacted]", "ref-echo")
    assert reply.headers["Content-Length"] == str(len(reply.body))
    assert reply.headers["retry-after"] == "0"
    assert reply.headers["x-should-retry"] == "false"
    # A retrieve is cached once final, so its errors are misses too.
    miss = f"parallel-gateway; fwd=uri-miss; fwd-status={status}"
    assert reply.headers["Cache-Status"] == miss
    if route == "forwarded":
        assert reply.headers["x-echo"] == "key=[redacted]"
        assert reply.headers["www-authenticate"] == 'Key realm="[redacted]"'
    errors = [line for line in logs if line["event"] == "upstream.error"]
    assert [(e["status"], e["ref_id"], e["message"]) for e in errors] == [
        (status, "ref-echo", "Unknown key [redacted]")
    ]
    assert upstream.count() == 1
    assert upstream.requests[0].headers["x-api-key"] == TEAM_KEY  # it was sent, and echoed


@pytest.mark.parametrize("status", [400, 404, 500, 502])
@pytest.mark.parametrize("route", ["forwarded", "input"])
async def test_an_echoed_key_in_an_unreadable_error_page_is_scrubbed(
    gateway: Gateway, upstream: FakeUpstream, status: int, route: str
) -> None:
    path = f"/v1/tasks/runs/{status}-html" + ("/input" if route == "input" else "")

    reply = await gateway.get(path)

    assert reply.status == status
    error = error_of(reply.body)
    assert error["detail"] == {
        "upstream_status": status,
        "upstream_content_type": "text/html",
        "upstream_body": "<html><p>[redacted] is not valid</p></html>",
    }
    unechoed(reply.body, *reply.headers.values())
    assert upstream.count() == 1


async def test_an_echoed_key_in_a_redirect_is_scrubbed(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    head = request("/v1/tasks/runs/307-json", f"x-api-key: {gateway.app_key}")
    reply = await send_raw(gateway.url, head)

    assert reply.status == 307
    assert reply.headers["Location"] == "/login?key=[redacted]"
    assert reply.headers["x-echo"] == "key=[redacted]"
    assert reply.headers["Cache-Status"] == "parallel-gateway; fwd=uri-miss; fwd-status=307"
    assert reply.body == error_json("Unknown key [redacted]", "ref-echo")
    assert upstream.count() == 1


async def test_a_rotated_team_key_echoed_back_is_scrubbed_too(
    tmp_path: Path,
    start_gateway: StartGateway,
    make_settings: Callable[..., Settings],
    upstream: FakeUpstream,
) -> None:
    key_file = tmp_path / "team-key"
    write_key(key_file, TEAM_KEY)
    upstream_settings = {"api_key_file": str(key_file), "api_key_file_interval": 0.05}
    gateway = await start_gateway(
        make_settings(upstream={**upstream_settings, "max_attempts": 1}), env={}
    )
    write_key(key_file, NEW_KEY)

    sent = TEAM_KEY
    while sent != NEW_KEY:  # until the gateway has read the new key
        reply = await gateway.get("/v1/tasks/runs/400-json")
        sent = upstream.requests[-1].headers["x-api-key"]

    assert reply.body == error_json("Unknown key [redacted]", "ref-echo")
    assert reply.headers["x-echo"] == "key=[redacted]"
    reply = await gateway.get("/v1/tasks/runs/500-html")
    assert error_of(reply.body)["detail"]["upstream_body"] == (
        "<html><p>[redacted] is not valid</p></html>"
    )
    assert upstream.requests[-1].headers["x-api-key"] == NEW_KEY  # it was sent, and echoed
