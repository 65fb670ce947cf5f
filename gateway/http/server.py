"""How the HTTP server is built and run: request-head limits, the header timeout, the serve loop."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from contextlib import suppress
from typing import Any

import structlog
from aiohttp import web

from ..config import ServerSettings
from ..ops.loop_errors import loop_exception_handler
from ..ops.metrics import Metrics
from ..state import LIVE_SETTINGS, METRICS, LiveSettings
from .connection import GatewayConnection
from .hit_path import HitPath

log = structlog.get_logger("gateway.server")
# web.run_app's default: an idle keep-alive connection is closed after this many seconds.
KEEPALIVE_TIMEOUT = 75.0


class GatewayServer(web.Server):
    """aiohttp's low-level server, whose connections are GatewayConnection."""

    def __init__(
        self,
        base: web.Server,
        live: LiveSettings,
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
        self._live = live
        self._metrics = metrics
        self._hits = hits

    def __call__(self) -> web.RequestHandler:
        return GatewayConnection(
            self,
            loop=self._connection_loop,
            # A reload (SIGHUP) reaches the connections opened after it.
            limits=self._live.current.server,
            metrics=self._metrics,
            hits=self._hits,
            **self._connection_kwargs,
        )


class GatewayRunner(web.AppRunner):
    """An AppRunner whose connections enforce the app's [server] limits and header timeout, and
    answer memory hits on the hit path (unless `hit_path` is False: then aiohttp's full stack
    does)."""

    __slots__ = ("_hit_path",)

    def __init__(self, app: web.Application, *, hit_path: bool = True, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._hit_path = hit_path

    async def _make_server(self) -> web.Server:
        base = await super()._make_server()  # starts the app and builds aiohttp's own server
        hits = HitPath(self.app) if self._hit_path else None
        return GatewayServer(base, self.app[LIVE_SETTINGS], self.app[METRICS], hits)


class ListenError(Exception):
    """The gateway could not listen where it was told to."""


def listen_problem(host: str, port: int, error: OSError) -> str:
    """What to tell an operator whose address could not be bound. Pure."""
    where = f"Cannot listen on {host}:{port}"
    if isinstance(error, socket.gaierror):
        return f"{where}: the host name could not be resolved ({error.strerror})."
    if error.errno == errno.EADDRINUSE:
        return f"{where}: the address is already in use (is another gateway running there?)."
    if error.errno == errno.EADDRNOTAVAIL:
        return f"{where}: no network interface of this machine has that address."
    if error.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need privileges)."
    return f"{where}: {os.strerror(error.errno) if error.errno else error}."


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
    log.info("gateway.stopped")


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
    asyncio.get_running_loop().set_exception_handler(loop_exception_handler(app[METRICS]))
    runner = GatewayRunner(
        app,
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
        try:
            await site.start()
        except OSError as e:
            raise ListenError(listen_problem(settings.host, settings.port, e)) from None
        # The addresses bound, which tell the port when it was 0.
        addresses = [f"{host}:{port}" for host, port, *_ in runner.addresses]
        log.info("gateway.listening", addresses=addresses)
        await asyncio.Event().wait()  # until cancelled
    finally:
        await runner.cleanup()


def _cancel_remaining(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
