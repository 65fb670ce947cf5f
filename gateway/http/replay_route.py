"""POST /v1/tasks/runs under a replay mode (keys --replay; every key when offline): answered
from a recording of the same create whose run finished, else forwarded and recorded, or, where
a miss may not go upstream, a 503 that says why.

Called once every check a forwarded create gets has passed (key, allowlist, rate limit,
open-call cap); the body's size is checked as it is read.
"""

from __future__ import annotations

import functools

import structlog
from aiohttp import web

from ..billing.calls import TASK_RUN, calls_made
from ..cache.match_key import MatchKey, match_key
from ..cache.policy import CACHE_REPLAY, cache_status
from ..cache.recordings import Found
from ..cache.replay_miss import explain_miss
from ..errors import ReplayMissError
from ..state import FINALS, KEYRING, METRICS, OWNERSHIP, RECORDINGS, SETTINGS, TALLY, UPSTREAM
from ..storage.types import Recording, ReplayMode
from .catalog import Route
from .forward import Keep, forward, read_body

log = structlog.get_logger("gateway.replay")
# What upstream answers a create with (PARALLEL_API.md: POST /v1/tasks/runs).
CREATED = 202
CREATED_STATUSES = range(200, 300)
MATCHING = (ReplayMode.REPLAY, ReplayMode.REPLAY_ONLY)


def replay_mode(request: web.Request, app_name: str) -> ReplayMode:
    """The app's replay mode; `serve --offline` acts as replay-only for every key."""
    if request.app[UPSTREAM].offline:
        return ReplayMode.REPLAY_ONLY
    return request.app[KEYRING].replay_mode(app_name)


async def create_run(request: web.Request, route: Route, app_name: str) -> web.StreamResponse:
    """A create, as the app's replay mode says."""
    mode = replay_mode(request, app_name)
    if mode is ReplayMode.OFF:
        return await forward(request, route)
    body = await read_body(request)
    key = match_key(body, request.headers.getall("parallel-beta", ()))
    unfinished: list[Recording] = []
    if mode in MATCHING:
        if key is not None:
            found = await request.app[RECORDINGS].find(key, _own(request, app_name))
            if isinstance(found, Found):
                return await replayed(request, app_name, found)
            unfinished = found
        request.app[METRICS].replays.labels(app_name, "miss").inc()
        if mode is ReplayMode.REPLAY_ONLY:
            raise await _miss(request, app_name, key, unfinished)
    if key is None:  # nothing to record it under: upstream refuses it as it sees fit
        return await forward(request, route, sent=body)
    record = functools.partial(request.app[RECORDINGS].record, app_name, key)
    keep = Keep(request.app[FINALS].max_body_bytes, record, CREATED_STATUSES)
    return await forward(request, route, keep, sent=body)


async def replayed(request: web.Request, app_name: str, found: Found) -> web.Response:
    """A create answered from its recording, with no upstream call: its run's final object, as
    upstream answers a create; counted as a task run saved (README: Usage and budgets)."""
    run_id = found.recording.run_id
    request.app[METRICS].replays.labels(app_name, "hit").inc()
    for processor in calls_made(TASK_RUN, None, found.run):  # the one call not made upstream
        request.app[TALLY].count_saved(app_name, TASK_RUN, processor)
    log.info("replay.hit", run_id=run_id, recorded_at=found.recording.recorded_at)
    if request.app[SETTINGS].isolation.mode == "app":
        # Its own recording's run, which it may read (recorded under isolation mode "team",
        # the gateway had no record of who created it).
        await request.app[OWNERSHIP].record(app_name, [run_id])
    return web.Response(
        status=CREATED,
        body=found.run,
        content_type="application/json",
        headers={"Cache-Status": CACHE_REPLAY},
    )


async def _miss(
    request: web.Request, app_name: str, key: MatchKey | None, unfinished: list[Recording]
) -> ReplayMissError:
    """The 503 of a create that may not go upstream, naming the nearest recordings."""
    if request.app[UPSTREAM].offline:
        why = "the gateway is offline"
    else:
        why = f"the key of app {app_name!r} is replay-only"
    pool = (
        [] if key is None else await request.app[RECORDINGS].nearest_pool(_own(request, app_name))
    )
    miss = explain_miss(key, unfinished, pool, why)
    log.info(
        "replay.miss",
        fields=None if key is None else sorted(key.fields),
        unfinished=[r.run_id for r in unfinished],
        nearest=[n["run_id"] for n in miss.detail.get("nearest", ())],
    )
    status = cache_status(stored=False, detail=ReplayMissError.reason)
    return ReplayMissError(miss.message, miss.detail).with_headers({"Cache-Status": status})


def _own(request: web.Request, app_name: str) -> str | None:
    """Whose recordings a create may match: under isolation mode "app" the app's own only,
    otherwise (None) every app's."""
    return app_name if request.app[SETTINGS].isolation.mode == "app" else None
