"""Running the proxy: in a foreground process (`serve_forever`) or inside a test loop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from aiohttp import web

from pdtui.proxy import proxylog
from pdtui.constants import PROXY_SHUTDOWN_GRACE_S
from pdtui.proxy.app import SERVICE_KEY, build_app
from pdtui.proxy.config import ProxyConfig
from pdtui.proxy.guard import ConnectionGuard
from pdtui.proxy.resources import ACCEPT_BACKLOG, client_connection_budget, raise_nofile_limit
from pdtui.text import plural

log = logging.getLogger("pdtui.proxy")


class RunningProxy:
    """A started proxy on the current event loop; `await stop()` to end it."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.nofile = raise_nofile_limit()
        self.max_connections = client_connection_budget(config.client.max_connections,
                                                        self.nofile)
        self.guard = ConnectionGuard(config.client, self.max_connections)
        self.app = build_app(config, guard=self.guard,
                             backend_connections=self.max_connections)
        # handler_cancellation: a client that disconnects cancels its handler, which
        # closes the backend connections, which makes vLLM abort the request.
        # aiohttp's own keep-alive timer backs up the guard's idle timeout.
        self.runner = web.AppRunner(self.app, handler_cancellation=True, access_log=None,
                                    keepalive_timeout=config.client.idle_timeout_s + 1.0,
                                    shutdown_timeout=PROXY_SHUTDOWN_GRACE_S)
        self._server: asyncio.base_events.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"

    async def start(self) -> None:
        await self.runner.setup()  # binds the ZMQ socket (on_startup)
        try:
            server = self.runner.server
            assert server is not None
            self._server = await asyncio.get_running_loop().create_server(
                self.guard.factory(server), self.config.host, self.config.port,
                backlog=ACCEPT_BACKLOG, reuse_address=True)
        except BaseException:
            await self.runner.cleanup()
            raise
        self.guard.start()

    async def stop(self) -> None:
        # /events readers (the cockpit's monitor) would otherwise hold the shutdown.
        self.app[SERVICE_KEY].hub.close()
        await self.guard.stop()
        if self._server is not None:
            self._server.close()
        await self.runner.cleanup()


async def _serve(config: ProxyConfig) -> int:
    proxy = RunningProxy(config)
    try:
        await proxy.start()
    except OSError as exc:
        print(f"pdtui proxy: cannot start on {proxy.url}: {exc}", file=sys.stderr)
        return 1
    zmq = f", ZMQ PULL tcp://{config.zmq_host}:{config.zmq_port}" if config.mode == "lmcache-pd" else ""
    log.info("pdtui proxy (%s) listening on %s%s; %s, %s",
             config.mode, proxy.url, zmq, plural(len(config.prefillers), "prefiller"), plural(len(config.decoders), "decoder"))
    if proxy.max_connections < config.client.max_connections:
        log.warning("client connections capped at %d (not %d): the open-files limit is %d",
                    proxy.max_connections, config.client.max_connections, proxy.nofile)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("pdtui proxy stopping")
    await proxy.stop()
    return 0


def serve_forever(config: ProxyConfig, log_level: str = "INFO") -> int:
    proxylog.configure(log_level)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_serve(config))


def _loop_factory():
    """uvloop where it is installed (a third less CPU per proxied request: fewer syscalls
    and no Python in the transport layer); the standard loop otherwise, or when
    PDTUI_PROXY_LOOP=asyncio asks for it."""
    if os.environ.get("PDTUI_PROXY_LOOP", "") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
