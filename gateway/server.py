"""How the HTTP server is built and run: request-head limits, the header timeout, the serve loop."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Any

import structlog
from aiohttp import web

from .config import ServerSettings
from .connection import GatewayConnection
from .hit_path import HitPath
from .metrics import Metrics
from .state import METRICS

log = structlog.get_logger("gateway.server")
# web.run_app's default: an idle keep-alive connection is closed after this many seconds.
KEEPALIVE_TIMEOUT = 75.0


class GatewayServer(web.Server):
    """aiohttp's low-level server, whose connections are GatewayConnection."""

    def __init__(
        self,
        base: web.Server,
        limits: ServerSettings,
        metrics: Metrics | None,
        hits: HitPath | None = None,
    ) -> None:
        # What the runner and the app configured for each connection (access log, keep-alive):
        # aiohttp keeps it only in this private field.
        kwargs: dict[str, Any] = dict(base._kwargs)
        super().__init__(
            base.request_handler,
            request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation,
            **kwargs,
        )
        self._connection_kwargs = kwargs
        self._connection_loop = asyncio.get_running_loop()
        self._limits = limits
        self._metrics = metrics
        self._hits = hits

    def __call__(self) -> web.RequestHandler:
        return GatewayConnection(
            self,
            loop=self._connection_loop,
            limits=self._limits,
            metrics=self._metrics,
            hits=self._hits,
            **self._connection_kwargs,
        )


class GatewayRunner(web.AppRunner):
    """An AppRunner whose connections enforce the [server] limits and header timeout, and answer
    memory hits on the hit path (unless `hit_path` is False: then aiohttp's full stack does)."""

    __slots__ = ("_hit_path", "_limits")

    def __init__(
        self,
        app: web.Application,
        limits: ServerSettings,
        *,
        hit_path: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits
        self._hit_path = hit_path

    async def _make_server(self) -> web.Server:
        base = await super()._make_server()  # starts the app and builds aiohttp's own server
        hits = HitPath(self.app) if self._hit_path else None
        return GatewayServer(base, self._limits, self.app[METRICS], hits)


def run_server(
    app: web.Application, settings: ServerSettings, *, reuse_port: bool | None = None
) -> None:
    """Serve `app` until SIGTERM or SIGINT, then shut down gracefully: web.run_app's loop, with
    GatewayRunner in place of its AppRunner."""
    loop = new_event_loop(settings.uvloop)
    log.info("gateway.event_loop", loop=type(loop).__module__.partition(".")[0])
    main = loop.create_task(_serve(app, settings, reuse_port))
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        if not main.done():
            main.cancel()  # runs _serve's cleanup: drain, then close the app
            with suppress(asyncio.CancelledError):
                loop.run_until_complete(main)
        _cancel_remaining(loop)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def new_event_loop(use_uvloop: bool) -> asyncio.AbstractEventLoop:
    """uvloop's event loop if asked for and installed, else asyncio's own."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


async def _serve(app: web.Application, settings: ServerSettings, reuse_port: bool | None) -> None:
    runner = GatewayRunner(
        app,
        settings,
        handle_signals=True,  # SIGTERM and SIGINT raise GracefulExit
        access_log=None,  # the observer middleware writes the access lines
        keepalive_timeout=KEEPALIVE_TIMEOUT,
        # A client that goes away cancels its handler, which closes its upstream stream too.
        handler_cancellation=True,
        # On SIGTERM or SIGINT: stop accepting, let requests in flight finish this long.
        shutdown_timeout=settings.shutdown_grace,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port)
        await site.start()
        await asyncio.Event().wait()  # until cancelled
    finally:
        await runner.cleanup()


def _cancel_remaining(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
