"""Client connections: header-read and idle timeouts, and a cap on how many are open.

aiohttp's server has a keep-alive timer but no header-read timeout (a slow-loris client
that trickles header bytes is kept for as long as the keep-alive allows) and no cap on
connections (20k idle sockets exhaust the file descriptors, and then the proxy's own
backend and health-check connections fail). `ConnectionGuard` wraps each aiohttp
protocol instance: it sees when a request's first bytes arrive and, through
`middleware`, when its handler starts and ends. One sweep a second closes connections
past their header or idle deadline. At the cap the longest-idle connection is closed to
make room; only when every connection is mid-request does a new one get a 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from aiohttp import web

from pdtui.proxy.config import ClientLimits

log = logging.getLogger(__name__)


def _busy_answer(limit: int) -> bytes:
    body = json.dumps({"error": {
        "message": f"the proxy has {limit} client connections open, all with a request in "
                   "progress (--max-connections); retry shortly",
        "type": "backend_unavailable", "code": 503, "stage": "connect", "backend": None,
        "request_id": None}}).encode()
    return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nRetry-After: 1\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


class _Guarded(asyncio.Protocol):
    """asyncio protocol in front of one aiohttp RequestHandler."""

    __slots__ = ("guard", "inner", "transport", "busy", "pending_since", "idle_since",
                 "__weakref__")

    def __init__(self, guard: ConnectionGuard, inner) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.busy = 0  # requests in their handler (aiohttp runs them one at a time)
        self.pending_since: float | None = None  # first byte of a request not yet handled
        self.idle_since = time.monotonic()

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        if not self.guard.admit(self):
            try:
                transport.write(self.guard.busy_answer)
            finally:
                transport.close()
            self.inner = None
            return
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        if not self.busy and self.pending_since is None:
            self.pending_since = time.monotonic()
        self.inner.data_received(data)

    def eof_received(self):
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc) -> None:
        self.guard.release(self)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    # -- request lifecycle (from the middleware) -----------------------------------------
    def request_started(self) -> None:
        self.busy += 1
        self.pending_since = None

    def request_ended(self) -> None:
        self.busy -= 1
        self.idle_since = time.monotonic()
        self.guard.touch(self)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class ConnectionGuard:
    def __init__(self, limits: ClientLimits, max_connections: int) -> None:
        self.limits = limits
        self.max_connections = max_connections
        self.busy_answer = _busy_answer(max_connections)
        # insertion order = least recently active first (touch() moves to the end)
        self._conns: dict[_Guarded, None] = {}
        self._sweeper: asyncio.Task | None = None
        self.refused = 0
        self.evicted = 0
        self.timed_out_headers = 0
        self.timed_out_idle = 0

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    def factory(self, make_inner: Callable[[], object]) -> Callable[[], _Guarded]:
        return lambda: _Guarded(self, make_inner())

    def admit(self, conn: _Guarded) -> bool:
        if len(self._conns) >= self.max_connections and not self._evict_one():
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warning("client connection refused with 503: %d connections open, all "
                            "mid-request (--max-connections %d); %d refused so far",
                            len(self._conns), self.max_connections, self.refused)
            return False
        self._conns[conn] = None
        return True

    def _evict_one(self) -> bool:
        for conn in self._conns:
            if not conn.busy:
                self.evicted += 1
                del self._conns[conn]
                conn.close()
                return True
        return False

    def release(self, conn: _Guarded) -> None:
        self._conns.pop(conn, None)

    def touch(self, conn: _Guarded) -> None:
        if conn in self._conns:
            del self._conns[conn]
            self._conns[conn] = None

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop(),
                                                               name="proxy-connection-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            try:
                await self._sweeper
            except asyncio.CancelledError:
                pass

    async def _sweep_loop(self) -> None:
        period = min(1.0, self.limits.header_timeout_s / 4, self.limits.idle_timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            self.sweep()

    def sweep(self, now: float | None = None) -> int:
        """Close connections past their header-read or idle deadline; returns how many."""
        now = time.monotonic() if now is None else now
        header_s, idle_s = self.limits.header_timeout_s, self.limits.idle_timeout_s
        closing = []
        for conn in self._conns:
            if conn.busy:
                continue
            if conn.pending_since is not None:
                if now - conn.pending_since > header_s:
                    self.timed_out_headers += 1
                    closing.append(conn)
            elif now - conn.idle_since > idle_s:
                self.timed_out_idle += 1
                closing.append(conn)
        for conn in closing:
            self._conns.pop(conn, None)
            conn.close()
        return len(closing)

    def stats(self) -> dict:
        return {"open": len(self._conns), "max": self.max_connections,
                "refused_503": self.refused, "evicted_idle": self.evicted,
                "closed_header_timeout": self.timed_out_headers,
                "closed_idle_timeout": self.timed_out_idle}


def middleware_for(guard: ConnectionGuard):
    @web.middleware
    async def connection_guard(request: web.Request, handler):
        transport = request.transport
        conn = transport.get_protocol() if transport is not None else None
        if not isinstance(conn, _Guarded):  # e.g. a test client without the guard
            return await handler(request)
        conn.request_started()
        try:
            return await handler(request)
        finally:
            conn.request_ended()

    return connection_guard
