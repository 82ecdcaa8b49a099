"""Running the proxy: in a foreground process (`serve_forever`) or inside a test loop."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from aiohttp import web

from pdtui.proxy.app import build_app
from pdtui.proxy.config import ProxyConfig

log = logging.getLogger("pdtui.proxy")


class RunningProxy:
    """A started proxy on the current event loop; `await stop()` to end it."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.app = build_app(config)
        # handler_cancellation: a client that disconnects cancels its handler, which
        # closes the backend connections, which makes vLLM abort the request.
        self.runner = web.AppRunner(self.app, handler_cancellation=True, access_log=None)

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"

    async def start(self) -> None:
        await self.runner.setup()  # binds the ZMQ socket (on_startup)
        try:
            site = web.TCPSite(self.runner, self.config.host, self.config.port, backlog=1024)
            await site.start()
        except BaseException:
            await self.runner.cleanup()
            raise

    async def stop(self) -> None:
        await self.runner.cleanup()


async def _serve(config: ProxyConfig) -> int:
    proxy = RunningProxy(config)
    try:
        await proxy.start()
    except OSError as exc:
        print(f"pdtui proxy: cannot start on {proxy.url}: {exc}", file=sys.stderr)
        return 1
    zmq = f", ZMQ PULL tcp://{config.zmq_host}:{config.zmq_port}" if config.mode == "lmcache-pd" else ""
    log.info("pdtui proxy (%s) listening on %s%s; %d prefiller(s), %d decoder(s)",
             config.mode, proxy.url, zmq, len(config.prefillers), len(config.decoders))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("pdtui proxy stopping")
    await proxy.stop()
    return 0


def serve_forever(config: ProxyConfig, log_level: str = "INFO") -> int:
    logging.basicConfig(
        level=getattr(logging, str(log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(_serve(config))
