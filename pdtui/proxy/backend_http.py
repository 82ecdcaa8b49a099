"""A lean keep-alive HTTP/1.1 client for the proxy's backend calls (tokenize and
prefill, answered whole; the decode, streamed): a fifth of aiohttp's client CPU per
call, which at three calls per proxied request was the largest cost the proxy had
(benchmarks/proxy_overhead.py --profile-proxy). https backends stay on aiohttp.

One request at a time per connection; connections are kept per backend (the most
recently used first) and closed when idle KEEPALIVE_S, when the answer says so, when a
stream is let go before its end, and when the caller is cancelled or times out (which
makes vLLM abort that request). The response is parsed by aiohttp's HTTP parser
(llhttp) into aiohttp's StreamReader, so Content-Length and chunked answers are read
alike and a stream reads as aiohttp's `resp.content` does.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from typing import Any, cast
from urllib.parse import urlsplit

from aiohttp.http_parser import HttpResponseParser

# An idle connection is not reused after this: vLLM's server closes kept-alive connections
# idle 5 s (VLLM_HTTP_TIMEOUT_KEEP_ALIVE), and reusing one as it closes fails the request.
KEEPALIVE_S = 4.0
_LIMIT = 2**16


class Disconnected(ConnectionError):
    """The backend closed (or reset) the connection before its answer was complete.
    `before_answer`: closed cleanly before any of the answer came (aiohttp's
    ServerDisconnectedError: the backend is going away), not broken mid-answer."""

    def __init__(self, message: str, before_answer: bool = False) -> None:
        super().__init__(message)
        self.before_answer = before_answer


class _Conn(asyncio.Protocol):
    """One connection. It is also the protocol of its parser's body reader: while a
    stream is read (`streaming`) a full buffer pauses the socket; a whole answer is read
    into memory anyway (as aiohttp's resp.read() does), so it never pauses."""

    __slots__ = ("pool", "transport", "parser", "waiter", "busy", "streaming", "closed",
                 "idle_since", "answered_any", "counted", "read_timeout", "total", "last_data",
                 "_timer", "_message", "_reading_paused", "connected")

    def __init__(self, pool: BackendHttp, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        # the parser only calls the flow-control methods (duck-typed, not a BaseProtocol)
        self.parser = HttpResponseParser(cast(Any, self), loop, _LIMIT,
                                         max_line_size=8190, max_field_size=8190)
        # resolved with (message, whole body) or, streaming, (message, body reader)
        self.waiter: asyncio.Future | None = None
        self.busy = False  # a request is out on it
        self.streaming = False
        self.closed = False
        self.idle_since = 0.0
        self.answered_any = False  # bytes of the current answer came
        self.counted = True  # holds a slot of the ConnectionBudget
        self.read_timeout: float | None = None  # longest silence while streaming
        self.total = False  # read_timeout bounds the whole answer, not each silence
        self.last_data = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._message: tuple[Any, Any] | None = None  # (message, body reader) in progress
        self._reading_paused = False
        self.connected = True

    # -- flow control, called by the body reader ---------------------------------------
    def pause_reading(self) -> None:
        if self.streaming and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self, resume_parser: bool = True) -> None:
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.last_data = time.monotonic()  # paused by us: not a silence of the backend
            self.transport.resume_reading()

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.busy:  # bytes nobody asked for: this connection is unusable
            self.close()
            return
        self.answered_any = True
        if self.read_timeout is not None:
            self.last_data = time.monotonic()
        try:
            messages, _, _ = self.parser.feed_data(data)
        except Exception as exc:  # a malformed answer: this connection is done
            self._fail(Disconnected(f"malformed HTTP answer: {exc}"))
            self.close()
            return
        for message, payload in messages:
            self._message = (message, payload)
        self._answer()

    def eof_received(self) -> bool:
        try:
            self.parser.feed_eof()  # a body delimited by the end of the connection
        except Exception:
            pass  # a short body: connection_lost reports it
        self._answer()
        return False

    def _answer(self) -> None:
        if self._message is None or self.waiter is None or self.waiter.done():
            return
        message, payload = self._message
        if self.streaming:
            self.waiter.set_result(self._message)
        elif payload.is_eof():
            self._message = None
            self.waiter.set_result((message, payload.read_nowait(-1)))

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.connected = False
        self._stop_timer()
        self.pool._lost(self)
        if exc is not None:
            error = Disconnected(f"the connection broke: {exc}")
        elif self.answered_any:
            error = Disconnected("the server closed the connection mid-answer")
        else:
            error = Disconnected("the server closed the connection", before_answer=True)
        self._fail(error)

    def _fail(self, exc: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        if self._message is not None:  # a body being streamed: its reader raises it
            payload = self._message[1]
            if not payload.is_eof():
                payload.set_exception(exc)

    # -- timeouts: one timer per request (or per silence), not asyncio.timeout's machinery
    # (a cancel scope per call) nor a timer per chunk
    def start_timer(self, seconds: float, total: bool = False) -> None:
        """Fail the answer with asyncio.TimeoutError (and close) after `seconds` of
        silence, or, `total`, after `seconds` whatever comes."""
        self.read_timeout, self.total = seconds, total
        self.last_data = time.monotonic()
        self._timer = asyncio.get_running_loop().call_later(seconds, self._check_silence)

    def _check_silence(self) -> None:
        assert self.read_timeout is not None
        left = 0.0 if self.total else self.last_data + self.read_timeout - time.monotonic()
        if self._reading_paused and not self.total:  # the reader is slow (as aiohttp)
            left = self.read_timeout
        if left > 0:
            self._timer = asyncio.get_running_loop().call_later(left, self._check_silence)
            return
        self._timer = None
        self._fail(asyncio.TimeoutError())
        self.close()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.read_timeout = None

    def done(self) -> None:
        """The request is over: nothing more is expected on this connection."""
        self._stop_timer()
        self.busy = self.streaming = False
        self.waiter = None
        self._message = None

    def close(self) -> None:
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.close()


class StreamAnswer:
    """A streamed answer whose status line and headers are in: the parts of aiohttp's
    ClientResponse the flows use (`status`, `headers`, `content`, `release`, `close`)."""

    __slots__ = ("status", "headers", "content", "_conn", "_keep", "closed")

    def __init__(self, conn: _Conn, message, payload) -> None:
        self.status: int = message.code
        self.headers = message.headers
        self.content = payload  # aiohttp's StreamReader: readany(), is_eof(), wait_eof()
        self._conn = conn
        self._keep = not message.should_close
        self.closed = False

    async def text(self) -> str:
        return (await self.content.read()).decode("utf-8", "replace")

    def release(self) -> None:
        """Back to the pool if the answer was read to its end; else closed."""
        if self.closed:
            return
        self.closed = True
        conn = self._conn
        if self._keep and self.content.is_eof() and not conn.closed:
            conn.done()
            conn.pool._release(conn)
        else:
            conn.done()
            conn.close()

    def close(self) -> None:
        """Drop the connection (mid-answer, this makes vLLM abort the request)."""
        if self.closed:
            return
        self.closed = True
        self._conn.done()
        self._conn.close()


class BackendHttp:
    """POST JSON to one backend: the whole answer (`post`), or a stream (`post_stream`)."""

    def __init__(self, base_url: str, budget: ConnectionBudget) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self._prefix = parts.path.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = f"{host}:{self.port}"
        self._idle: deque[_Conn] = deque()
        self._budget = budget

    async def post(self, path: str, body: bytes, headers: dict[str, str], *,
                   timeout_s: float) -> tuple[int, bytes]:
        """Raises asyncio.TimeoutError after `timeout_s` for all of it, OSError (connect),
        Disconnected. A cancelled or timed-out call closes its connection."""
        request = self._request_head(path, headers, len(body))
        deadline = time.monotonic() + timeout_s
        conn = self._idle_conn() or await self._new_conn(timeout_s)
        ok = False
        try:
            conn.start_timer(deadline - time.monotonic(), total=True)
            message, data = await self._send(conn, request, body, streaming=False)
            ok = not message.should_close
            return message.code, data
        finally:
            conn.done()
            if ok:
                self._release(conn)
            else:
                conn.close()

    async def post_stream(self, path: str, body: bytes, headers: dict[str, str], *,
                          read_timeout_s: float) -> StreamAnswer:
        """POST and return once the status line and headers are in; `read_timeout_s`
        bounds the connect, the wait for them and every silence in the body after
        (asyncio.TimeoutError). The caller must release() or close() the answer."""
        request = self._request_head(path, headers, len(body))
        conn = self._idle_conn() or await self._new_conn(read_timeout_s)
        try:
            conn.start_timer(read_timeout_s)
            message, payload = await self._send(conn, request, body, streaming=True)
        except BaseException:
            conn.done()
            conn.close()
            raise
        return StreamAnswer(conn, message, payload)

    def _request_head(self, path: str, headers: dict[str, str], length: int) -> bytes:
        head = [f"POST {self._prefix}{path} HTTP/1.1\r\nHost: {self._host_header}\r\n"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value:
                raise ValueError(f"header {name} has a line break")
            head.append(f"{name}: {value}\r\n")
        head.append(f"Content-Length: {length}\r\n\r\n")
        return "".join(head).encode("latin-1")

    @staticmethod
    async def _send(conn: _Conn, request: bytes, body: bytes, streaming: bool):
        assert conn.transport is not None
        conn.waiter = asyncio.get_running_loop().create_future()
        conn.busy, conn.streaming, conn.answered_any = True, streaming, False
        conn.transport.writelines((request, body))
        return await conn.waiter

    def _idle_conn(self) -> _Conn | None:
        """The most recently used kept-alive connection, or None."""
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.closed:
                continue
            if now - conn.idle_since > KEEPALIVE_S:
                self._budget.closing(conn)
                continue
            return conn
        return None

    async def _new_conn(self, timeout_s: float) -> _Conn:
        """A connection once the budget has room (or one went idle meanwhile), connected
        within `timeout_s` (asyncio.TimeoutError)."""
        async with asyncio.timeout(timeout_s):
            while True:
                idle = self._idle_conn()
                if idle is not None:
                    return idle
                if await self._budget.take(self):
                    break  # a slot for a new connection (else: one may be idle now)
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
