"""How the HTTP server is built and run: request-head limits, the header timeout, the serve loop."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

import structlog
from aiohttp import web

from ..config import ServerSettings
from ..ops.loop_errors import loop_exception_handler
from ..ops.metrics import Metrics
from ..state import LIVE_SETTINGS, METRICS, LiveSettings
from . import internals as aiohttp_internals
from .fast_connection import GatewayConnection
from .hit_path import HitPath
from .public_connection import PublicConnection, checking_heads, telling_starts
from .request_head import parser_limits

log = structlog.get_logger("gateway.server")
# web.run_app's default: an idle keep-alive connection is closed after this many seconds.
KEEPALIVE_TIMEOUT = 75.0


# What AppRunner takes for itself or its server; the rest is each connection's (RequestHandler's).
# AppRunner's own server also gets the app's debug flag and handler_args: the gateway sets
# neither, and RequestHandler's defaults are theirs.
RUNNER_ONLY = frozenset({"handle_signals", "shutdown_timeout", "handler_cancellation"})
# BaseRunner's own default.
SHUTDOWN_TIMEOUT = 60.0


class GatewayServer(web.Server):
    """aiohttp's low-level server, made from the app's handler and request factory (public
    attributes of the server AppRunner made), whose connections are the gateway's: on the
    fast path GatewayConnection, else PublicConnection (whose request heads are checked as each
    reaches its handler, and whose server tells it each request taken from aiohttp's queue)."""

    def __init__(
        self,
        base: web.Server,
        live: LiveSettings,
        metrics: Metrics | None,
        connection_kwargs: dict[str, Any],
        *,
        fast_path: bool,
        whole_lines: bool,
        hits: HitPath | None = None,
    ) -> None:
        handler, factory = base.request_handler, base.request_factory
        if not fast_path:
            measured = (lambda: live.current.server) if whole_lines else None
            handler, factory = checking_heads(handler, measured), telling_starts(factory)
        loop = asyncio.get_running_loop()
        super().__init__(
            handler,
            request_factory=factory,
            handler_cancellation=base.handler_cancellation,
            loop=loop,
            **connection_kwargs,
        )
        self._connection_kwargs = connection_kwargs
        self._connection_loop = loop
        self._fast_path = fast_path
        self._whole_lines = whole_lines
        self._live = live
        self._metrics = metrics
        self._hits = hits

    def __call__(self) -> web.RequestHandler:
        # A reload (SIGHUP) reaches the connections opened after it.
        limits = self._live.current.server
        parser = parser_limits(limits, self._whole_lines)
        if self._fast_path:
            return GatewayConnection(
                self,
                loop=self._connection_loop,
                limits=limits,
                parser=parser,
                metrics=self._metrics,
                hits=self._hits,
                **self._connection_kwargs,
            )
        return PublicConnection(
            self,
            loop=self._connection_loop,
            limits=limits,
            parser=parser,
            metrics=self._metrics,
            **self._connection_kwargs,
        )


def use_fast_path(env: Mapping[str, str] = os.environ) -> bool:
    """Whether aiohttp's private parts are as the fast path expects (and it is not switched
    off); if not, one warning names each that differs. Called once per start."""
    differences = aiohttp_internals.check()
    if differences:
        log.warning("gateway.fast_path_off", differences=differences)
        return False
    if aiohttp_internals.fast_path_forced_off(env):
        log.info("gateway.fast_path_off", switch=f"{aiohttp_internals.SWITCH}=off")
        return False
    return True


class GatewayRunner(web.AppRunner):
    """An AppRunner whose connections enforce the app's [server] limits (as reloaded) and header
    timeout, and answer memory hits on the hit path (unless `hit_path` is False: then aiohttp's
    full stack does).
    Where aiohttp's private parts are not as expected, or GATEWAY_FAST_PATH=off, every request
    goes through aiohttp's public stack (PublicConnection), with the same answers."""

    __slots__ = ("_connection_kwargs", "_gateway_server", "_hit_path", "_shutdown_grace")

    def __init__(self, app: web.Application, *, hit_path: bool = True, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._hit_path = hit_path
        self._connection_kwargs = {k: v for k, v in kwargs.items() if k not in RUNNER_ONLY}
        self._shutdown_grace = float(kwargs.get("shutdown_timeout", SHUTDOWN_TIMEOUT))
        self._gateway_server: GatewayServer | None = None

    @property
    def server(self) -> web.Server | None:
        """The server whose connections the sites serve (not the one AppRunner made)."""
        return self._gateway_server

    async def setup(self) -> None:
        await super().setup()  # starts the app and makes aiohttp's own server
        base = super().server
        assert base is not None
        fast = use_fast_path()
        hits = HitPath(self.app) if fast and self._hit_path else None
        self._gateway_server = GatewayServer(
            base,
            self.app[LIVE_SETTINGS],
            self.app[METRICS],
            self._connection_kwargs,
            fast_path=fast,
            whole_lines=aiohttp_internals.parser_measures_whole_lines(),
            hits=hits,
        )

    async def shutdown(self) -> None:
        # cleanup() calls this between closing idle connections and waiting for the rest, on
        # AppRunner's server: here the same, on the server whose connections they are.
        server = self._gateway_server
        if server is not None:
            server.pre_shutdown()
        await super().shutdown()
        if server is not None:
            await server.shutdown(self._shutdown_grace)

    async def cleanup(self) -> None:
        try:
            await super().cleanup()
        finally:
            self._gateway_server = None


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
