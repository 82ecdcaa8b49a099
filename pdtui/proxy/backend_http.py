"""A lean keep-alive HTTP/1.1 client for the backend calls answered in one piece
(tokenize, prefill): a fifth of aiohttp's client CPU per request, which at two such
calls per proxied request is the largest cost the proxy has left (benchmarks/
proxy_overhead.py --profile-proxy). Streams (the decode) stay on aiohttp.

One request at a time per connection; connections are kept per backend (the most
recently used first) and closed when idle KEEPALIVE_S, when the answer says so, and
when the caller is cancelled or times out (which makes vLLM abort that request). The
response is parsed by aiohttp's HTTP parser (llhttp), so Content-Length and chunked
answers are read alike.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from typing import Any, cast
from urllib.parse import urlsplit

from aiohttp.http_parser import HttpResponseParser

KEEPALIVE_S = 60.0
_LIMIT = 2**16


class Disconnected(ConnectionError):
    """The backend closed (or reset) the connection before its answer was complete.
    `before_answer`: closed cleanly before any of the answer came (aiohttp's
    ServerDisconnectedError: the backend is going away), not broken mid-answer."""

    def __init__(self, message: str, before_answer: bool = False) -> None:
        super().__init__(message)
        self.before_answer = before_answer


class _NoFlowControl:
    """The parser's body reader asks its protocol to pause past a high-water mark; a
    whole answer is read into memory anyway (as aiohttp's resp.read() does)."""

    _reading_paused = False
    connected = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self, resume_parser: bool = True) -> None:
        pass


_NO_FLOW = _NoFlowControl()


class _Conn(asyncio.Protocol):
    __slots__ = ("pool", "transport", "parser", "waiter", "closed", "idle_since", "answered_any",
                 "counted", "_message")

    def __init__(self, pool: BackendHttp, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        # the parser only calls the flow-control methods (duck-typed, not a BaseProtocol)
        self.parser = HttpResponseParser(cast(Any, _NO_FLOW), loop, _LIMIT,
                                         max_line_size=8190, max_field_size=8190)
        self.waiter: asyncio.Future | None = None
        self.closed = False
        self.idle_since = 0.0
        self.answered_any = False  # bytes of the current answer came
        self.counted = True  # holds a slot of the ConnectionBudget
        self._message: tuple[Any, Any] | None = None  # (message, body reader) in progress

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: this connection is unusable
            self.close()
            return
        self.answered_any = True
        try:
            messages, _, _ = self.parser.feed_data(data)
        except Exception as exc:  # a malformed answer: this connection is done
            self._fail(Disconnected(f"malformed HTTP answer: {exc}"))
            self.close()
            return
        for message, payload in messages:
            self._message = (message, payload)
        self._answer_if_whole()

    def eof_received(self) -> bool:
        try:
            self.parser.feed_eof()  # a body delimited by the end of the connection
        except Exception:
            pass  # a short body: connection_lost reports it
        self._answer_if_whole()
        return False

    def _answer_if_whole(self) -> None:
        if self._message is None:
            return
        message, payload = self._message
        if payload.is_eof() and self.waiter is not None and not self.waiter.done():
            self._message = None
            self.waiter.set_result((message, payload.read_nowait(-1)))

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.pool._lost(self)
        if exc is not None:
            self._fail(Disconnected(f"the connection broke: {exc}"))
        elif self.answered_any:
            self._fail(Disconnected("the server closed the connection mid-answer"))
        else:
            self._fail(Disconnected("the server closed the connection", before_answer=True))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class BackendHttp:
    """POST JSON to one backend and read the whole answer: `(status, body bytes)`."""

    def __init__(self, base_url: str, budget: ConnectionBudget) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self._prefix = parts.path.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = f"{host}:{self.port}"
        self._idle: deque[_Conn] = deque()
        self._budget = budget

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """Raises OSError (connect), Disconnected; the caller bounds it with a timeout.
        A cancelled or timed-out call closes its connection."""
        head = [f"POST {self._prefix}{path} HTTP/1.1\r\nHost: {self._host_header}\r\n"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value:
                raise ValueError(f"header {name} has a line break")
            head.append(f"{name}: {value}\r\n")
        head.append(f"Content-Length: {len(body)}\r\n\r\n")
        conn = await self._acquire()
        assert conn.transport is not None
        conn.waiter = asyncio.get_running_loop().create_future()
        conn.answered_any = False
        ok = False
        try:
            conn.transport.writelines(("".join(head).encode("latin-1"), body))
            message, data = await conn.waiter
            ok = not message.should_close
            return message.code, data
        finally:
            conn.waiter = None
            if ok:
                self._release(conn)
            else:
                conn.close()

    async def _acquire(self) -> _Conn:
        while True:
            now = time.monotonic()
            while self._idle:
                conn = self._idle.pop()
                if conn.closed:
                    continue
                if now - conn.idle_since > KEEPALIVE_S:
                    self._budget.closing(conn)
                    continue
                return conn
            if await self._budget.take(self):
                break  # a slot for a new connection (else: retry, one may be idle now)
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(lambda: _Conn(self, loop), self.host,
                                                   self.port)
            sock = conn.transport.get_extra_info("socket") if conn.transport else None
            if sock is not None:  # small requests go out at once (as aiohttp sets it)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            self._budget.give_back()
            raise
        return conn

    def _release(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)
        self._budget.freed_idle()

    def _lost(self, conn: _Conn) -> None:
        try:
            self._idle.remove(conn)
        except ValueError:
            pass
        if conn.counted:
            conn.counted = False
            self._budget.give_back()

    def close_idle_one(self) -> bool:
        """Close the longest-idle connection (the budget needs room); False if none."""
        while self._idle:
            conn = self._idle.popleft()
            if not conn.closed:
                self._budget.closing(conn)
                return True
        return False

    def close(self) -> None:
        while self._idle:
            self._budget.closing(self._idle.pop())


class ConnectionBudget:
    """How many connections the lean pools may hold open together (0: no cap): at the
    cap an idle one is closed to make room, else the caller waits for one to close."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._pools: list[BackendHttp] = []
        self._waiters: deque[asyncio.Future] = deque()

    def pool(self, base_url: str) -> BackendHttp:
        pool = BackendHttp(base_url, self)
        self._pools.append(pool)
        return pool

    async def take(self, pool: BackendHttp) -> bool:
        """True: counted a new connection of `pool`. False: woken because a connection
        went idle or closed; the caller looks for an idle one again first."""
        if self.limit and self.open >= self.limit:
            if not any(p.close_idle_one() for p in self._pools):
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                try:
                    await waiter
                finally:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
                return False
        self.open += 1
        return True

    def closing(self, conn: _Conn) -> None:
        """Close `conn` now, its slot free at once (not when its transport is gone)."""
        if conn.counted:
            conn.counted = False
            self.open -= 1
        conn.close()

    def give_back(self) -> None:
        self.open -= 1
        self._wake()

    def freed_idle(self) -> None:
        """An idle connection now exists: a waiter may take or close it."""
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for pool in self._pools:
            pool.close()
