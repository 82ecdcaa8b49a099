"""Background health checks: GET <backend>/health for every backend, every few seconds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiohttp

import errno
import time

from pdtui.proxy.backends import HEALTH_DEGRADED, HEALTH_DOWN, HEALTH_UP, Backend

# Failures that say this process is out of resources, not that the backend is down.
_LOCAL_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

log = logging.getLogger(__name__)


class HealthChecker:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        backends: list[Backend],
        interval_s: float,
        timeout_s: float,
        on_change: Callable[[Backend], None] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._session = session
        self._backends = backends
        self._interval = interval_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._on_change = on_change or (lambda b: None)
        self._headers = headers or {}
        self._task: asyncio.Task | None = None
        self.rounds = 0

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(b) for b in self._backends))
        self.rounds += 1

    async def check(self, backend: Backend) -> None:
        try:
            async with self._session.get(
                backend.url + "/health", timeout=self._timeout, headers=self._headers
            ) as resp:
                await resp.read()
                backend.health_timeouts = 0
                if resp.status == 200:
                    self.mark(backend, HEALTH_UP)
                else:
                    self.mark(backend, HEALTH_DOWN, f"GET /health answered HTTP {resp.status}")
        except asyncio.TimeoutError:
            backend.health_timeouts += 1
            if backend.state == HEALTH_UP and backend.health_timeouts < 2:
                # A loop busy with client traffic can miss one deadline by itself; a
                # healthy backend is taken out on the second timeout in a row, not the first.
                log.warning("health check of %s timed out once; marked unhealthy if the next "
                            "one does too", backend.url)
                return
            # Slow, not gone: no new requests until it answers again, but the ones it is
            # working on (a huge prompt can keep its loop busy past two checks) go on, each
            # under its own stage timeout. A refused or reset connection still aborts them.
            self.mark(backend, HEALTH_DOWN, "GET /health timed out", abort_in_flight=False)
        except aiohttp.ClientError as exc:
            if local_failure(exc):
                # Out of file descriptors here says nothing about the backend: keep its
                # state rather than turn a local overload into "no healthy decoder".
                log.warning("health check of %s skipped: %s", backend.url, exc)
                return
            self.mark(backend, HEALTH_DOWN, f"GET /health failed: {exc}")

    def mark(self, backend: Backend, state: str, error: str | None = None, *,
             abort_in_flight: bool = True) -> None:
        if state == HEALTH_UP and backend.state == HEALTH_DEGRADED:
            # /health passing says nothing about its KV notifications: degrade.py decides.
            backend.last_checked = time.time()
            return
        if state == HEALTH_UP and backend.state == HEALTH_DOWN:
            backend.kv_timeouts = 0  # a restarted engine starts with a clean record
        if backend.set_state(state, error, abort_in_flight=abort_in_flight):
            log.info("%s %s is now %s%s", backend.role, backend.url, state,
                     f" ({error})" if error else "")
            self._on_change(backend)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="proxy-health-checker")

    async def _loop(self) -> None:
        while True:
            try:
                await self.check_all()
            except Exception:  # a bug here must not stop health checking for good
                log.exception("health check round failed")
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


def local_failure(exc: BaseException | None) -> bool:
    for _ in range(5):  # the exception and what it wraps
        if exc is None:
            return False
        if isinstance(exc, OSError) and exc.errno in _LOCAL_ERRNOS:
            return True
        exc = exc.__cause__ or exc.__context__
    return False
