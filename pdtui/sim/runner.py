"""The simulated engine's process: start-up, serving, faults, shutdown.

Port binding, chosen to behave like vLLM from outside: the HTTP port is *bound* at once (so a
port already in use fails start-up at once with vLLM's `Address already in use`), but
*listened on* only when the engine is ready, so until then a connection is refused and
`/health` pollers simply retry; real vLLM likewise answers nothing before "Application startup
complete.".
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from typing import Any

from aiohttp import web

from pdtui.sim import startup
from pdtui.sim.engine import SimEngine
from pdtui.sim.enginecore import EngineCoreChild
from pdtui.sim.logfmt import EngineLog
from pdtui.sim.server import build_app
from pdtui.sim.settings import SimSettings
from pdtui.sim.transfer import TransferError

TICK_S = 0.5


class StartupFailed(Exception):
    pass


def bind_http_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class EngineProcess:
    def __init__(self, settings: SimSettings, log: EngineLog | None = None) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self.log = log or EngineLog(self.pid)
        self.engine = SimEngine(settings, self.log)
        self.stop_signal: asyncio.Future[str] | None = None
        # Started once the port is bound (as vLLM starts its EngineCore): it holds the
        # simulated GPU memory and outlives a kill -9 of this process (enginecore.py).
        self.core: EngineCoreChild | None = None

    # ---------------------------------------------------------------- signals ----
    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        def on_signal(name: str) -> None:
            if name == "SIGTERM" and self.settings.faults.ignore_sigterm:
                # Simulates an engine that logs the signal and then never gets round to exiting.
                self.log.core("INFO", "core.py:1313", "[shutdown] EngineCore: trigger received signal=SIGTERM")
                return
            if self.stop_signal is not None and not self.stop_signal.done():
                self.stop_signal.set_result(name)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig.name)

    # ------------------------------------------------------------------- main ----
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop_signal: asyncio.Future[str] = loop.create_future()
        self.stop_signal = stop_signal
        self._install_signals(loop)
        s = self.settings
        try:
            http_sock = bind_http_socket(s.host, s.port)
        except OSError as exc:
            startup.api_server_begins(self.log, s, self.engine.engine_id)
            self.log.api_raw(f"OSError: [Errno {exc.errno}] {exc.strerror}: ('{s.host}', {s.port})")
            self.log.api("ERROR", "api_server.py:1012", f"Port {s.port} on {s.host} is already in use; cannot start.")
            return 1
        self.core = EngineCoreChild(s.gpu_dir, s.served_model_name, s.role, s.port, s.gpus, self.engine.tp)
        self.log.core_pid = self.core.pid
        ticker = loop.create_task(self._tick())
        try:
            start = loop.create_task(self._start_up())
            # Typed: a set of a Task[None] and a Future[str] would otherwise be a set of objects.
            racers: set[asyncio.Future[Any]] = {start, stop_signal}
            done, _ = await asyncio.wait(racers, return_when=asyncio.FIRST_COMPLETED)
            if start not in done:
                start.cancel()
                await asyncio.gather(start, return_exceptions=True)
                startup.shutdown_lines(self.log, stop_signal.result())
                return 0
            try:
                start.result()
            except StartupFailed:
                return 1
            runner = web.AppRunner(build_app(self.engine), access_log=None, handle_signals=False,
                                   shutdown_timeout=1.0)
            await runner.setup()
            site = web.SockSite(runner, http_sock)
            await site.start()
            startup.uvicorn_started(self.log, self.pid)
            self.engine.mark_ready()
            if s.faults.hang:
                self.engine.hung = True
            if s.faults.crash_after == 0:
                self.engine.crash_requested.set()
            crash = loop.create_task(self.engine.crash_requested.wait())
            racers = {crash, stop_signal}
            done, _ = await asyncio.wait(racers, return_when=asyncio.FIRST_COMPLETED)
            if crash in done:
                await asyncio.sleep(0.05)  # let the answer that reached N requests flush out
                startup.crash_lines(self.log)
                return 1
            crash.cancel()
            startup.shutdown_lines(self.log, stop_signal.result())
            await runner.cleanup()
            return 0
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
            self.engine.close()
            http_sock.close()
            if self.core is not None:
                self.core.stop()

    async def _start_up(self) -> None:
        """The milestones of a real start, spread over PDTUI_SIM_STARTUP_S (+ slow_start)."""
        s = self.settings
        eng = self.engine
        total = s.startup_s + s.faults.slow_start_s
        began = time.monotonic()

        async def at(fraction: float) -> None:
            delay = began + total * fraction - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

        startup.api_server_begins(self.log, s, eng.engine_id)
        await at(0.3)
        eng.memory_bytes = 600 * 1024**2  # CUDA context
        startup.engine_core_loads_weights(self.log, s, eng.shape)
        eng.memory_bytes += eng.weight_bytes_per_gpu
        if s.faults.oom:
            await at(0.45)
            startup.oom_failure(self.log, s, eng.reserved_bytes - eng.memory_bytes + 2 * 1024**3, 140 * 1024**2,
                                s.gpu_total_bytes)
            raise StartupFailed("oom")
        await at(0.6)
        kv_bytes = max(0, eng.reserved_bytes - eng.memory_bytes - 300 * 1024**2)
        startup.engine_core_allocates_kv(self.log, s, kv_bytes, s.kv_capacity_tokens, eng.engine_id)
        eng.memory_bytes = eng.reserved_bytes
        startup.lmcache_initialises(self.log, s, eng.shape, eng.chunk_bytes)
        try:
            eng.start_transfers()
        except TransferError as exc:
            self.log.core("ERROR", "core.py:1330", "EngineCore failed to start.")
            self.log.core("ERROR", "core.py:1330", f"zmq.error.ZMQError: {exc}")
            self.log.api_raw(
                "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}"
            )
            raise StartupFailed(str(exc)) from None
        await at(0.9)
        startup.engine_core_ready(self.log, s, time.monotonic() - began)
        await at(1.0)
        startup.api_server_ready(self.log, s)

    async def _tick(self) -> None:
        """GPU usage file, periodic stats line, held-block expiry; cheap when idle."""
        last_stats = time.monotonic()
        while True:
            if self.core is not None:
                self.core.update(self.engine.memory_bytes, self.engine.utilization)
            now = time.monotonic()
            if self.engine.ready and not self.engine.hung and now - last_stats >= self.settings.stats_interval_s:
                last_stats = now
                self.engine.log_stats_if_active()
                await self.engine.expire_held_blocks()
            await asyncio.sleep(TICK_S)


def _loop_factory():
    """uvloop where it is installed, as the proxy (and vLLM's API server, through uvicorn) runs
    on: the transport layer in C makes each HTTP request a fraction of the CPU, so a
    benchmark through the simulated engines measures the proxy, not the simulator. The
    standard loop otherwise, or when PDTUI_SIM_LOOP=asyncio asks for it."""
    if os.environ.get("PDTUI_SIM_LOOP", "") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def serve(settings: SimSettings) -> int:
    process = EngineProcess(settings)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(process.run())
    except KeyboardInterrupt:
        return 0
    finally:
        sys.stdout.flush()
