"""create_app: the one place where the gateway's parts are wired together."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping

import structlog
from aiohttp import web

from .auth import KeyRing
from .cache import MemoryLRU, RunInputCache
from .config import Settings
from .db import Database
from .middleware import create_observer
from .routes import add_routes
from .state import CACHE, DATABASE, KEYRING, SETTINGS, UPSTREAM
from .store import SQLiteRunInputStore
from .upstream import UpstreamClient, UpstreamResponse, create_session

log = structlog.get_logger("gateway.app")
# The input route's response is shared by every app, so no app's headers shape the request.
ACCEPT_JSON = {"accept": "application/json"}


def team_key_from(settings: Settings, env: Mapping[str, str]) -> str | None:
    return env.get(settings.upstream.api_key_env) or None


def create_app(settings: Settings, env: Mapping[str, str] | None = None) -> web.Application:
    """Build the gateway; the database and upstream session open when the app starts."""
    env = os.environ if env is None else env
    app = web.Application(middlewares=[create_observer(settings.log.access_log)])
    app[SETTINGS] = settings
    app[KEYRING] = KeyRing()
    team_key = team_key_from(settings, env)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_key_refresh)
    app.cleanup_ctx.append(lambda app: _upstream(app, team_key))
    app.cleanup_ctx.append(_cache)
    add_routes(app)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    app[DATABASE] = await Database.open(app[SETTINGS].storage)
    yield
    await app[DATABASE].close()


async def _key_refresh(app: web.Application) -> AsyncIterator[None]:
    await app[KEYRING].start(app[DATABASE], app[SETTINGS].keys.refresh_interval)
    yield
    await app[KEYRING].stop(app[DATABASE])


async def _upstream(app: web.Application, team_key: str | None) -> AsyncIterator[None]:
    settings = app[SETTINGS].upstream
    if team_key is None:
        log.warning(
            "upstream.no_team_key",
            message=f"{settings.api_key_env} is not set: serving cached run inputs only; "
            "misses get 503.",
        )
    async with create_session(settings) as session:
        app[UPSTREAM] = UpstreamClient(settings, team_key, session)
        yield


async def _cache(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS].cache
    upstream = app[UPSTREAM]

    async def fetch(run_id: str) -> UpstreamResponse:
        return await upstream.get(f"/v1/tasks/runs/{run_id}/input", ACCEPT_JSON, run_id=run_id)

    app[CACHE] = RunInputCache(
        MemoryLRU(settings.memory_entries, settings.memory_bytes),
        SQLiteRunInputStore(app[DATABASE]),
        fetch,
        settings.max_body_bytes,
    )
    yield
