"""Fail closed: every spelling of a route, against an upstream that decodes %2F and redirects.

A lenient upstream (as FastAPI with uvicorn is: it decodes %2F, folds `\\` and `//`, and redirects
a trailing slash) serves a path the gateway did not check as if it were the route it looks like.
So under isolation mode "app", and for a key with an allowlist, only the catalog's routes,
spelled exactly, go upstream; and an encoded or back slash goes nowhere, in any mode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

import aiohttp
import orjson
import pytest
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from gateway.config import Settings
from gateway.keys.app_keys import create_key
from gateway.keys.ownership import grant
from gateway.timestamps import now_rfc3339
from tests.conftest import Reply, ServerFactory, StartGateway
from tests.fake_upstream import TEAM_KEY
from tests.passthrough_support import error_of
from tests.storage_support import opened_storage

R = "trun_9907962f83aa4d9d98fd7f4bf745d654"  # app A's run
GB = "tgrp_0123456789abcdef0123456789abcdef"  # app B's group


@dataclass
class LenientUpstream:
    """Records every request, then answers as a lenient framework would."""

    seen: list[tuple[str, str, str | None]] = field(default_factory=list)
    base_url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.method, request.raw_path, request.headers.get("x-api-key")))
        path = unquote(request.raw_path).replace("\\", "/").lower()
        while "//" in path:
            path = path.replace("//", "/")
        if path.endswith("/"):
            raise web.HTTPTemporaryRedirect(path.rstrip("/"))
        return web.json_response({"served": path})


@pytest.fixture
async def lenient(aiohttp_server: ServerFactory) -> LenientUpstream:
    fake = LenientUpstream()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = await aiohttp_server(app)
    fake.base_url = str(server.make_url("")).rstrip("/")
    return fake


FWD = 0  # forwarded, as sent, exactly once
REFUSED_IN_APP_MODE = 404
# (method, raw path, team mode with no allowlist, B's allowlist GET /v1/tasks/runs/*, app mode)
VARIANTS: list[tuple[str, str, int, int, int]] = [
    ("GET", f"/v1/tasks/runs/{R}/result", FWD, 403, 404),
    ("GET", f"/v1/tasks/runs/{R}", FWD, FWD, 404),
    ("GET", f"/v1/tasks/runs/{R}/input", FWD, 403, 404),
    ("GET", f"/v1/tasks/runs/{R}/result/", FWD, 403, 404),
    ("GET", f"/v1/tasks/runs/{R}/input/", FWD, 403, 404),
    ("GET", f"/v1/tasks/runs/{R}/", FWD, 403, 404),
    ("GET", f"/v1/tasks//runs/{R}", FWD, 403, 404),
    ("GET", f"/v1//tasks/runs/{R}/result", FWD, 403, 404),
    ("GET", f"/v1/Tasks/runs/{R}/result", FWD, 403, 404),
    ("GET", f"/v1/tasks/runs/{R.upper()}/RESULT", FWD, 403, 404),
    ("GET", f"/v1beta/tasks/runs/{R}/result", FWD, 403, 404),
    ("GET", f"/v1/tasks/runs/{R}\\result", 400, 400, 400),
    ("GET", f"/v1/tasks/runs/{R}%2Fresult", 400, 400, 400),
    ("GET", f"/v1/tasks/runs/{R}%2fresult", 400, 400, 400),
    ("GET", f"/v1/tasks/runs/{R}%5Cresult", 400, 400, 400),
    ("GET", f"/v1/tasks/runs/{R}%5cinput", 400, 400, 400),
    ("GET", f"/v1/tasks/runs/{R}%2Finput", 400, 400, 400),
    ("GET", f"/v1/tasks/runs/{R}%2eresult", 400, 400, 400),
    ("GET", f"/v1/tasks/runs/x/%2e%2e/{R}/result", 400, 403, 400),
    ("HEAD", f"/v1/tasks/runs/{R}", 405, 403, 405),
    ("OPTIONS", f"/v1/tasks/runs/{R}", 405, 403, 405),
    ("DELETE", f"/v1/tasks/runs/{R}", 405, 403, 405),
    ("PUT", f"/v1/tasks/runs/{R}", 405, 403, 405),
    ("PATCH", f"/v1/tasks/runs/{R}/result", 405, 403, 405),
    ("TRACE", f"/v1/tasks/runs/{R}", 405, 403, 405),
    ("DELETE", f"/v1/tasks/runs/{R}/input", 405, 403, 405),
    ("POST", f"/v1/tasks/runs/{R}/cancel", FWD, 403, 404),
    ("GET", f"/v1/tasks/groups/{GB}/runs/{R}", FWD, 403, 404),
]
MODES = ("team", "allowlist", "app")


async def start(
    mode: str, lenient: LenientUpstream, start_gateway: StartGateway, make: Callable[..., Settings]
) -> dict[str, str]:
    """A gateway in `mode` in front of the lenient upstream; the keys of apps A and B."""
    isolation = "app" if mode == "app" else "team"
    settings = make(isolation={"mode": isolation}, upstream={"base_url": lenient.base_url})
    async with opened_storage(settings.storage) as storage:
        allow = ["GET /v1/tasks/runs/*"] if mode == "allowlist" else None
        keys = {"B": await create_key(storage.app_keys, "B", allow)}
        await storage.run_access.record_created("A", [R], now_rfc3339())
        await grant(storage.run_access, storage.app_keys, GB, "B")
    gateway = await start_gateway(settings, app="A")
    return {**keys, "A": gateway.app_key, "url": gateway.url}


async def send(url: str, method: str, raw_path: str, key: str) -> Reply:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            URL(url + raw_path, encoded=True),
            headers={"x-api-key": key},
            allow_redirects=False,  # a redirect is the app's to follow, or not
        ) as resp,
    ):
        return Reply(resp.status, CIMultiDict(resp.headers), await resp.read())


@pytest.mark.parametrize("mode", MODES)
async def test_every_spelling_is_refused_or_allowed_only_as_its_canonical_route(
    mode: str,
    lenient: LenientUpstream,
    start_gateway: StartGateway,
    make_settings: Callable[..., Settings],
) -> None:
    gw = await start(mode, lenient, start_gateway, make_settings)
    for row in VARIANTS:
        method, raw_path = row[:2]
        expected = row[2 + MODES.index(mode)]
        before = len(lenient.seen)
        reply = await send(gw["url"], method, raw_path, gw["B"])
        sent = lenient.seen[before:]
        if expected == FWD:
            # Sent once, as written, with the team key; a redirect comes back, unfollowed.
            assert sent == [(method, raw_path, TEAM_KEY)], (mode, row)
            assert reply.status == (307 if raw_path.endswith("/") else 200), (mode, row)
            continue
        assert (reply.status, sent) == (expected, []), (mode, row, reply.body)
        if method != "HEAD":
            error_of(reply.body)
        if expected == 405:
            assert reply.headers["Allow"] == "GET, POST"


@pytest.mark.parametrize("mode", MODES)
async def test_the_owner_reaches_its_own_run_by_its_canonical_route(
    mode: str,
    lenient: LenientUpstream,
    start_gateway: StartGateway,
    make_settings: Callable[..., Settings],
) -> None:
    gw = await start(mode, lenient, start_gateway, make_settings)
    for path in (f"/v1/tasks/runs/{R}", f"/v1/tasks/runs/{R}/result"):
        reply = await send(gw["url"], "GET", path, gw["A"])
        assert (reply.status, orjson.loads(reply.body)) == (200, {"served": path})
    assert lenient.seen == [
        ("GET", f"/v1/tasks/runs/{R}", TEAM_KEY),
        ("GET", f"/v1/tasks/runs/{R}/result", TEAM_KEY),
    ]


async def test_messages_say_why(
    lenient: LenientUpstream, start_gateway: StartGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await start("app", lenient, start_gateway, make_settings)
    reply = await send(gw["url"], "GET", f"/v1/Tasks/runs/{R}", gw["B"])
    assert error_of(reply.body)["message"] == (
        f"No such route on this gateway: GET /v1/Tasks/runs/{R}. Under isolation mode 'app', "
        "and for a key with an allowlist, only the routes of Parallel's API are forwarded, "
        "spelled exactly (case, no empty segment, no trailing slash)."
    )
    reply = await send(gw["url"], "TRACE", f"/v1/tasks/runs/{R}", gw["B"])
    assert error_of(reply.body)["message"] == (
        "Method TRACE is not used by Parallel's API, so the gateway does not forward it; "
        "use GET or POST."
    )
    reply = await send(gw["url"], "GET", f"/v1/tasks/groups/{GB}/runs/{R}", gw["B"])
    assert (reply.status, error_of(reply.body)["message"]) == (404, "Run id not found")
    assert lenient.seen == []
