"""create_app: the one place where the gateway's parts are wired together."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import structlog
from aiohttp import web

from .billing.budgets import Budgets
from .billing.flush import BillingFlush
from .billing.prices import price_table
from .billing.tally import Tally
from .cache.cold_runs import ColdRuns, replica_id
from .cache.final_answers import FinalAnswerCache
from .cache.recordings import CreateRecordings
from .cache.run_inputs import MemoryLRU, RunInputCache
from .config import Settings
from .http.middleware import create_observer
from .http.routes import add_routes
from .keys.keyring import KeyRing
from .keys.ownership import RETRY_INTERVAL, OwnershipRecorder
from .keys.shared_limits import STALE_INTERVALS, STALE_MIN, Peers
from .ops.activity import SNAPSHOT_INTERVAL, Activity, totals_of
from .ops.endpoints import record_memory_layer, serve_metrics_apart
from .ops.log import scrub_also
from .ops.metrics import Metrics
from .ops.periodic import Periodic
from .ops.reload import ConfigSource, reload_on_sighup
from .state import (
    BUDGETS,
    CACHE,
    DRAINING,
    FINALS,
    KEYRING,
    LIVE_SETTINGS,
    METRICS,
    OWNERSHIP,
    RECORDINGS,
    REPLICA,
    SETTINGS,
    STORAGE,
    STORAGE_HEALTH,
    STREAMS,
    TALLY,
    UPSTREAM,
    LiveSettings,
)
from .storage.health import StorageHealth
from .storage.location import password_of
from .storage.open import open_storage
from .storage.protocols import Storage
from .storage.types import EVERYTHING, StoreError
from .upstream.client import UpstreamClient, UpstreamResponse, create_session
from .upstream.team_key import key_file_rotation, team_key_from

log = structlog.get_logger("gateway.app")
# The input route's response is shared by every app, so no app's headers shape the request.
ACCEPT_JSON = {"accept": "application/json"}


def create_app(
    settings: Settings, env: Mapping[str, str] | None = None, source: ConfigSource | None = None
) -> web.Application:
    """Build the gateway; the database and upstream session open when the app starts. With a
    `source`, SIGHUP reloads its reloadable settings (gateway/ops/reload.py)."""
    env = os.environ if env is None else env
    metrics = Metrics()
    live = LiveSettings(settings)
    app = web.Application(middlewares=[create_observer(live, metrics)])
    app[SETTINGS] = settings
    app[LIVE_SETTINGS] = live
    app[METRICS] = metrics
    app[STORAGE_HEALTH] = StorageHealth(settings.storage.database, metrics)
    app[KEYRING] = KeyRing()
    app[DRAINING] = [False]
    app[STREAMS] = set()
    app[REPLICA] = replica_id()
    app[TALLY] = Tally()
    team_key = team_key_from(settings, env)
    if (password := password_of(settings.storage.database)) is not None:
        scrub_also(password)  # a last defence: no line is meant to hold it
    app.cleanup_ctx.append(_storage)
    app.cleanup_ctx.append(_billing)
    app.cleanup_ctx.append(_ownership)
    app.cleanup_ctx.append(lambda app: _upstream(app, team_key))
    app.cleanup_ctx.append(_cache)
    app.cleanup_ctx.append(lambda app: _on_sighup(app, team_key, source))
    app.cleanup_ctx.append(_sync_with_cli)
    app.cleanup_ctx.append(_share_with_replicas)
    app.cleanup_ctx.append(serve_metrics_apart)
    app.on_shutdown.append(_start_draining)
    add_routes(app)
    return app


async def _start_draining(app: web.Application) -> None:
    """on_shutdown: new requests get 503 from now on, and open streams end cleanly.

    aiohttp has already stopped accepting; after this it waits up to server.shutdown_grace for
    the requests in flight, then runs the cleanup (the database closes last).
    """
    app[DRAINING][0] = True
    streams = app[STREAMS]
    log.info("gateway.draining", in_flight_streams=len(streams))
    for stream in list(streams):
        stream.close()


def build_cache(
    settings: Settings,
    storage: Storage,
    upstream: UpstreamClient,
    health: StorageHealth,
    replica: str = "",
) -> RunInputCache:
    """The run-input cache over the store, fetching misses through `upstream` (one replica at
    a time, where replicas share the store)."""

    async def fetch(run_id: str) -> UpstreamResponse:
        return await upstream.get(f"/v1/tasks/runs/{run_id}/input", ACCEPT_JSON, run_id=run_id)

    return RunInputCache(
        MemoryLRU(settings.cache.memory_entries, settings.cache.memory_bytes),
        storage.run_inputs,
        storage.purges,
        fetch,
        settings.cache.max_body_bytes,
        health,
        None
        if storage.fetch_leases is None
        else ColdRuns(storage.fetch_leases, storage.run_inputs, replica),
    )


async def _storage(app: web.Application) -> AsyncIterator[None]:
    app[STORAGE] = await open_storage(app[SETTINGS].storage)
    yield
    await app[STORAGE].close()


# How long a shutdown waits for a billing flush under way; past it the flush is cut off, and
# what it was writing may be lost (a database that slow would lose the last flush too).
FLUSH_FINISH_WAIT = 10.0


async def _billing(app: web.Application) -> AsyncIterator[None]:
    """Billing counts go to the store every flush_interval seconds, and once more at the end,
    after the last request (before the database closes); then budgets and spend are re-read."""
    storage, tally = app[STORAGE], app[TALLY]
    flush = BillingFlush(tally, storage.billing_calls, app[METRICS])
    prices = price_table(app[SETTINGS].prices)
    budgets = app[BUDGETS] = Budgets(tally, storage.billing_calls, storage.app_keys, prices)
    await budgets.refresh()

    async def flush_then_refresh() -> None:
        await flush.flush()
        await budgets.refresh()
        tally.settle()  # the budgets read what was flushed: it no longer counts apart

    chore = Periodic("billing.flush", app[SETTINGS].billing.flush_interval, flush_then_refresh)
    chore.start()
    yield
    # A flush under way is let finish (cut off, its batch is lost), for FLUSH_FINISH_WAIT at most.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(chore.stop(let_finish=True), FLUSH_FINISH_WAIT)
    await flush.last_flush()


async def _ownership(app: web.Application) -> AsyncIterator[None]:
    """Run ownership records that failed are retried while serving, and once more at the end
    (before the database closes)."""
    recorder = app[OWNERSHIP] = OwnershipRecorder(app[STORAGE].run_access, app[STORAGE_HEALTH])
    retries = Periodic("ownership.retry", RETRY_INTERVAL, recorder.retry)
    retries.start()
    yield
    await retries.stop()
    await recorder.flush()


async def _upstream(app: web.Application, team_key: str | None) -> AsyncIterator[None]:
    settings = app[SETTINGS].upstream
    if settings.offline:
        message = "Offline: serving cached run inputs and final answers only."
        log.info("upstream.offline", message=message)
    elif team_key is None:
        log.warning(
            "upstream.no_team_key",
            message=f"{settings.api_key_env} is not set: serving cached run inputs and final "
            "answers only; misses get 503.",
        )
    async with create_session(settings) as session:
        upstream = app[UPSTREAM] = UpstreamClient(
            settings, team_key, session, app[METRICS], Activity()
        )
        yield
        upstream.close()


async def _on_sighup(
    app: web.Application, team_key: str | None, source: ConfigSource | None
) -> AsyncIterator[None]:
    """The team key file, re-read every interval; on SIGHUP, it and the config."""
    upstream = app[UPSTREAM]

    def rotate(key: str) -> None:
        scrub_also(key)  # before any log line could hold it
        upstream.use_team_key(key)

    async with key_file_rotation(app[SETTINGS].upstream, team_key, rotate) as key_file:
        with reload_on_sighup(app, source, key_file):
            yield


async def _cache(app: web.Application) -> AsyncIterator[None]:
    cache = app[CACHE] = build_cache(
        app[SETTINGS], app[STORAGE], app[UPSTREAM], app[STORAGE_HEALTH], app[REPLICA]
    )
    live = app[LIVE_SETTINGS]
    # One memory layer, under one bound, for inputs and final answers alike.
    app[FINALS] = FinalAnswerCache(
        cache.memory,
        app[STORAGE].final_answers,
        app[STORAGE_HEALTH],
        lambda: live.current.cache.max_body_bytes,
    )
    app[RECORDINGS] = CreateRecordings(app[STORAGE].recordings, app[FINALS], app[STORAGE_HEALTH])
    await app[STORAGE_HEALTH].check(app[STORAGE].status)
    yield


def _record_memory(app: web.Application) -> Callable[[], Awaitable[None]]:
    async def record() -> None:
        record_memory_layer(app)

    return record


def _snapshot_activity(app: web.Application) -> Callable[[], Awaitable[None]]:
    async def snapshot() -> None:
        app[UPSTREAM].activity.snapshot(totals_of(app[METRICS].request_samples()))

    return snapshot


def _refresh_keys(app: web.Application) -> Callable[[], Awaitable[None]]:
    async def refresh() -> None:
        await app[KEYRING].refresh(app[STORAGE].app_keys)
        app[STORAGE_HEALTH].answered()

    return refresh


def _waker(refresh: Periodic, purges: Periodic) -> Callable[[str], None]:
    """What a change announced by another replica (or the CLI) wakes: keys, or purges."""

    def woken(table: str) -> None:
        if table in ("app_keys", "retired_keys", EVERYTHING):
            refresh.wake()
        if table in ("cache_purges", EVERYTHING):
            purges.wake()

    return woken


async def _share_with_replicas(app: web.Application) -> AsyncIterator[None]:
    """Replicas sharing the store share their usage too, so limits and caps hold across them."""
    usage = app[STORAGE].replica_usage
    if usage is None:
        yield
        return
    keyring, replica, started = app[KEYRING], app[REPLICA], time.time()
    peers = Peers(started)
    interval = app[SETTINGS].keys.share_interval

    async def exchange() -> None:
        now = time.time()
        since = now - max(STALE_INTERVALS * interval, STALE_MIN)
        others = await usage.exchange(replica, keyring.usage(replica, started), now, since)
        keyring.absorb_peers(peers.absorb(others, keyring.rate_limited()))

    chore = Periodic("limits.share", interval, exchange)
    chore.start()
    yield
    await chore.stop()
    with contextlib.suppress(StoreError):
        await usage.leave(replica)


async def _sync_with_cli(app: web.Application) -> AsyncIterator[None]:
    """Pick up what the CLI changes in the database: keys, and purges of cached runs."""
    settings, keys, keyring, cache = app[SETTINGS], app[STORAGE].app_keys, app[KEYRING], app[CACHE]
    await keyring.refresh(keys)
    await cache.start_purge_sync()
    refresh = Periodic("keys.refresh", settings.keys.refresh_interval, _refresh_keys(app))
    purges = Periodic("cache.sync_purges", settings.cache.sync_interval, cache.sync_purges)
    chores = [
        refresh,
        purges,
        Periodic("metrics.memory", settings.cache.sync_interval, _record_memory(app)),
        Periodic("activity.snapshot", SNAPSHOT_INTERVAL, _snapshot_activity(app)),
    ]
    for chore in chores:
        chore.start()
    watch = app[STORAGE].watch_changes
    listener = None if watch is None else asyncio.create_task(watch(_waker(refresh, purges)))
    yield
    if listener is not None:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
    for chore in chores:
        await chore.stop()
    try:
        await keyring.refresh(keys)  # record last_used_at of the final seconds
    except StoreError as e:  # a store that cannot be written must not fail the shutdown
        app[STORAGE_HEALTH].failed(e, "write")
