"""KV-ready notifications: LMCache prefillers PUSH one ProxyNotif per TP rank.

`KvReadyWaiters` turns the counted notifications into one awaitable per request
id (no polling). A prefiller can notify before the proxy has read the prefill
answer and registered its waiter, so counts for unknown ids are kept as early
arrivals in a bounded LRU map; ids the proxy has finished with (timed out,
cancelled) are remembered for a while so their late messages are dropped
instead of piling up as early arrivals.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable

import zmq
import zmq.asyncio

from pdtui.proxy.protocol import ProtocolError, ProxyNotif, decode_pd_message

log = logging.getLogger(__name__)

# kind of notification -> counted in metrics by the caller
NotifObserver = Callable[[str], None]


class _Waiter:
    __slots__ = ("expected", "received", "future")

    def __init__(self, expected: int, received: int, future: asyncio.Future) -> None:
        self.expected = expected
        self.received = received
        self.future = future


class KvReadyWaiters:
    def __init__(self, max_early: int = 10_000, max_finished: int = 10_000) -> None:
        self._waiters: dict[str, _Waiter] = {}
        self._early: OrderedDict[str, int] = OrderedDict()
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._max_early = max_early
        self._max_finished = max_finished
        self.early_evicted = 0

    def __len__(self) -> int:
        return len(self._waiters)

    @property
    def early_count(self) -> int:
        return len(self._early)

    def register(self, req_id: str, expected: int) -> asyncio.Future:
        """The future resolves once `expected` notifications for req_id have arrived."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        received = self._early.pop(req_id, 0)
        waiter = _Waiter(expected, received, future)
        if received >= expected:
            future.set_result(received)
        else:
            self._waiters[req_id] = waiter
        return future

    def received(self, req_id: str) -> int:
        """Notifications counted so far for a registered (or early) request id."""
        waiter = self._waiters.get(req_id)
        return waiter.received if waiter is not None else self._early.get(req_id, 0)

    def notify(self, req_id: str) -> str:
        """Count one notification; returns how it was used: matched/early/late."""
        waiter = self._waiters.get(req_id)
        if waiter is not None:
            waiter.received += 1
            if waiter.received >= waiter.expected:
                del self._waiters[req_id]
                if not waiter.future.done():
                    waiter.future.set_result(waiter.received)
            return "matched"
        if req_id in self._finished:
            return "late"
        self._early[req_id] = self._early.get(req_id, 0) + 1
        self._early.move_to_end(req_id)
        while len(self._early) > self._max_early:
            self._early.popitem(last=False)
            self.early_evicted += 1
        return "early"

    def forget(self, req_id: str) -> None:
        """The proxy is done with req_id (answered, timed out or cancelled)."""
        waiter = self._waiters.pop(req_id, None)
        if waiter is not None and not waiter.future.done():
            waiter.future.cancel()
        self._early.pop(req_id, None)
        self._finished[req_id] = None
        while len(self._finished) > self._max_finished:
            self._finished.popitem(last=False)

    async def wait(self, req_id: str, expected: int, timeout: float) -> int:
        """Wait for `expected` notifications; asyncio.TimeoutError after `timeout` s."""
        future = self.register(req_id, expected)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.forget(req_id)


class ProxyNotifListener:
    """Binds the ZMQ PULL socket the prefillers PUSH to, and feeds KvReadyWaiters."""

    def __init__(
        self,
        host: str,
        port: int,
        waiters: KvReadyWaiters,
        observe: NotifObserver | None = None,
    ) -> None:
        self.endpoint = f"tcp://{host}:{port}"
        self._waiters = waiters
        self._observe = observe or (lambda kind: None)
        self._ctx = zmq.asyncio.Context()
        self._socket: zmq.asyncio.Socket | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Bind now (so a port clash fails at start, with the endpoint named) and read."""
        sock = self._ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.LINGER, 0)
        # Bounded: if the loop stalls, ZMQ holds at most this many messages per peer.
        sock.setsockopt(zmq.RCVHWM, 100_000)
        try:
            sock.bind(self.endpoint)
        except zmq.ZMQError as exc:
            sock.close()
            raise OSError(f"cannot bind the ZMQ PULL socket at {self.endpoint}: {exc}") from exc
        self._socket = sock
        self._task = asyncio.create_task(self._read_loop(), name="proxy-notif-listener")

    async def _read_loop(self) -> None:
        assert self._socket is not None
        while True:
            try:
                data = await self._socket.recv()
            except asyncio.CancelledError:
                raise
            except zmq.ZMQError as exc:
                if exc.errno in (zmq.ETERM, zmq.ENOTSOCK):
                    return
                log.warning("ZMQ receive error on %s: %s", self.endpoint, exc)
                await asyncio.sleep(0.05)
                continue
            self.handle(data)

    def handle(self, data: bytes) -> None:
        try:
            msg = decode_pd_message(data)
        except ProtocolError as exc:
            log.warning("ignored a malformed message on %s: %s", self.endpoint, exc)
            self._observe("malformed")
            return
        if not isinstance(msg, ProxyNotif):
            self._observe("other")
            return
        self._observe(self._waiters.notify(msg.req_id))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._socket is not None:
            self._socket.close(linger=0)
        self._ctx.term()
