"""Poll `/metrics` endpoints with aiohttp: one task per endpoint, never overlapping itself.

    scraper = Scraper([ScrapeTarget("prefill-0", "http://127.0.0.1:7100/metrics"), ...],
                      interval_s=2.0, on_result=callback)
    await scraper.start()      # one asyncio task per target
    scraper.latest("prefill-0")  # last ScrapeResult (snapshot or error)
    await scraper.stop()

Each target's task scrapes, hands the result to `on_result` (sync or async callable), then
sleeps for the rest of its interval: a scrape that takes longer than the interval delays
only its own next scrape, and a per-target timeout (default: the interval, at most 5 s)
bounds it, so a slow or dead endpoint never stalls the others. Errors become
`ScrapeResult.error` strings ("connection refused", "timed out after 2.0 s", "HTTP 500"),
never exceptions. A body over INLINE_PARSE_CHARS is parsed in a worker thread, so it does
not block the loop; the usual one is parsed in place.

`targets_for_instance` builds the usual set for one vLLM instance: its /metrics and,
when LMCache's internal API server is enabled, that server's /metrics (the only place
LMCache's histograms are served).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Union
from collections.abc import Awaitable, Callable, Iterable

import aiohttp

from pdtui.telemetry.metrics import MetricsParseError, MetricsSnapshot, parse_metrics

__all__ = ["ScrapeResult", "ScrapeTarget", "Scraper", "scrape_once", "targets_for_instance"]

_log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024  # a /metrics body larger than this is not a metrics body
# A real vLLM + LMCache body (~50 KB) parses in ~0.4 ms: less than handing it to a worker
# thread and back costs. Only a body past this size is parsed off the loop.
INLINE_PARSE_CHARS = 1 << 20


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    """`name` is unique per Scraper; `instance` groups several endpoints of one instance."""

    name: str
    url: str
    kind: str = "vllm"  # "vllm" | "proxy" | "lmcache_internal"
    instance: str | None = None
    keep_prefixes: tuple[str, ...] | None = None  # e.g. ("vllm:", "lmcache:"); None keeps all


@dataclass(frozen=True, slots=True)
class ScrapeResult:
    target: ScrapeTarget
    started_at: float  # unix time
    duration_s: float
    snapshot: MetricsSnapshot | None
    error: str | None = None
    status: int | None = None

    @property
    def ok(self) -> bool:
        return self.snapshot is not None


ResultCallback = Callable[[ScrapeResult], Union[None, Awaitable[None]]]


def targets_for_instance(
    name: str, host: str, port: int, lmcache_internal_port: int | None = None
) -> list[ScrapeTarget]:
    targets = [ScrapeTarget(name, f"http://{host}:{port}/metrics", "vllm", name)]
    if lmcache_internal_port is not None:
        targets.append(
            ScrapeTarget(
                f"{name}/lmcache",
                f"http://{host}:{lmcache_internal_port}/metrics",
                "lmcache_internal",
                name,
            )
        )
    return targets


async def scrape_once(session: aiohttp.ClientSession, target: ScrapeTarget, timeout_s: float) -> ScrapeResult:
    """One GET + parse; every failure is reported in the result, none raised."""
    started = time.time()
    t0 = time.monotonic()
    status = None
    try:
        async with session.get(target.url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            status = resp.status
            if resp.status != 200:
                return ScrapeResult(target, started, time.monotonic() - t0, None, f"HTTP {resp.status}", status)
            # Read to the end (content.read(n) would stop at the first chunk), capped.
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    error = f"body larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB, not a metrics page"
                    return ScrapeResult(target, started, time.monotonic() - t0, None, error, status)
                chunks.append(chunk)
        text = b"".join(chunks).decode("utf-8", errors="replace")
        if len(text) <= INLINE_PARSE_CHARS:
            snapshot = parse_metrics(text, started, target.keep_prefixes)
        else:
            snapshot = await asyncio.to_thread(parse_metrics, text, started, target.keep_prefixes)
        return ScrapeResult(target, started, time.monotonic() - t0, snapshot, None, status)
    except asyncio.TimeoutError:
        error = f"timed out after {timeout_s:g} s"
    except aiohttp.ClientConnectorError as exc:
        error = f"cannot connect: {exc.os_error.strerror if exc.os_error else exc}"
    except aiohttp.ClientError as exc:
        error = f"{type(exc).__name__}: {exc}"
    except MetricsParseError as exc:
        error = f"unparsable body: {exc}"
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc}"
    return ScrapeResult(target, started, time.monotonic() - t0, None, error, status)


class Scraper:
    """Polls its targets until stopped. Use as `async with Scraper(...) as s:` or start/stop."""

    def __init__(
        self,
        targets: Iterable[ScrapeTarget] = (),
        interval_s: float = 2.0,
        timeout_s: float | None = None,
        on_result: ResultCallback | None = None,
        idle_interval_s: float | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        if idle_interval_s is not None and idle_interval_s < interval_s:
            raise ValueError(f"idle_interval_s must be >= interval_s, got {idle_interval_s!r}")
        self.interval_s = interval_s
        # With `idle_interval_s`, targets are polled that slowly unless `busy()` was called
        # within `busy_hold_s`: an idle deployment's counters do not move, so scraping it
        # every second buys nothing but CPU; traffic (the caller knows) wakes it at once.
        self.idle_interval_s = idle_interval_s
        self.busy_hold_s = 15.0
        self._busy_until = 0.0
        self._wake: asyncio.Event | None = None
        self.timeout_s = timeout_s if timeout_s is not None else min(interval_s, 5.0)
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        self._on_result = on_result
        self._targets: dict[str, ScrapeTarget] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._latest: dict[str, ScrapeResult] = {}
        self._session: aiohttp.ClientSession | None = None
        for target in targets:
            self._add(target)

    def _add(self, target: ScrapeTarget) -> None:
        if target.name in self._targets:
            raise ValueError(f"duplicate scrape target name {target.name!r}")
        self._targets[target.name] = target

    @property
    def targets(self) -> list[ScrapeTarget]:
        return list(self._targets.values())

    @property
    def running(self) -> bool:
        return self._session is not None

    def latest(self, name: str) -> ScrapeResult | None:
        return self._latest.get(name)

    def current_interval(self) -> float:
        if self.idle_interval_s is None or time.monotonic() < self._busy_until:
            return self.interval_s
        return self.idle_interval_s

    def busy(self) -> None:
        """Traffic: poll at `interval_s` for the next `busy_hold_s` (call on the loop)."""
        was_idle = time.monotonic() >= self._busy_until
        self._busy_until = time.monotonic() + self.busy_hold_s
        if was_idle and self._wake is not None:
            self._wake.set()  # cut the idle sleeps short

    async def start(self) -> None:
        if self._session is not None:
            return
        self._wake = asyncio.Event()
        # Fresh connection per scrape: a dead or restarted engine must not leave a stale
        # keep-alive socket behind, and scrapes are seconds apart anyway.
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0))
        for target in self._targets.values():
            self._spawn(target)

    def _spawn(self, target: ScrapeTarget) -> None:
        self._tasks[target.name] = asyncio.create_task(self._poll(target), name=f"scrape:{target.name}")

    async def add_target(self, target: ScrapeTarget) -> None:
        self._add(target)
        if self._session is not None:
            self._spawn(target)

    async def remove_target(self, name: str) -> None:
        self._targets.pop(name, None)
        self._latest.pop(name, None)
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Scraper:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _poll(self, target: ScrapeTarget) -> None:
        assert self._session is not None
        session = self._session
        while True:
            t0 = time.monotonic()
            result = await scrape_once(session, target, self.timeout_s)
            self._latest[target.name] = result
            if self._on_result is not None:
                try:
                    outcome = self._on_result(result)
                    if inspect.isawaitable(outcome):
                        await outcome
                except asyncio.CancelledError:
                    raise
                except Exception:  # a consumer bug must not kill the poll loop
                    _log.exception("scrape callback failed for %s", target.name)
            await self._sleep(max(0.0, self.current_interval() - (time.monotonic() - t0)), t0)

    async def _sleep(self, seconds: float, started: float) -> None:
        wake = self._wake
        if wake is None or self.idle_interval_s is None:
            await asyncio.sleep(seconds)
            return
        try:
            await asyncio.wait_for(wake.wait(), seconds)
        except asyncio.TimeoutError:
            return
        # Woken: every poller saw it; clear once they had the chance, and keep the
        # busy pace from the start of the last scrape.
        asyncio.get_running_loop().call_soon(wake.clear)
        await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))
