"""A background reader of the proxy's `GET /events` stream (JSON lines).

    reader = ProxyEventsReader("http://127.0.0.1:9100", on_line=stats.feed_line)
    reader.start()      # its own thread and event loop: never the UI thread
    ...
    reader.stop()       # cancels the read and joins the thread (bounded wait)

When the proxy is down or restarts, the reader reconnects with exponential backoff
(`backoff_s` doubling up to `max_backoff_s`, reset once a connection stays up). The
stream replays the proxy's kept history on every connect; `PairStats` ignores requests
it has already counted, so replays do not double-count. `on_line` is called on the
reader's thread with each raw line; it must be quick and thread-safe.

The deployment monitor runs `read_forever()` as a task on its own loop instead of
`start()`: one thread for all of a deployment's telemetry.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import aiohttp

__all__ = ["ProxyEventsReader"]

# A line longer than this is not an event of ours; aiohttp raises instead of buffering it.
_MAX_LINE = 1 << 20


class ProxyEventsReader:
    def __init__(self, proxy_url: str, on_line: Callable[[bytes], None], *, backoff_s: float = 0.5,
                 max_backoff_s: float = 10.0, idle_timeout_s: float = 45.0) -> None:
        self.url = proxy_url.rstrip("/") + "/events"
        self.on_line = on_line
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        # The proxy sends a heartbeat every 15 s; silence for much longer means a dead peer.
        self.idle_timeout_s = idle_timeout_s
        self.connected = False
        self.connects = 0
        self.lines = 0
        self.last_error: str | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="pdtui-proxy-events", daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def stop(self, timeout_s: float = 5.0) -> None:
        loop, task, thread = self._loop, self._task, self._thread
        if loop is not None and task is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop closed in between
                pass
        if thread is not None:
            thread.join(timeout_s)
        self._thread = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._task = loop.create_task(self.read_forever())
            self._ready.set()
            try:
                loop.run_until_complete(self._task)
            except asyncio.CancelledError:
                pass
        finally:
            self.connected = False
            loop.close()

    async def read_forever(self) -> None:
        """Read until cancelled, reconnecting with backoff (on the caller's loop)."""
        delay = self.backoff_s
        async with aiohttp.ClientSession(read_bufsize=1 << 16, max_line_size=_MAX_LINE) as session:
            while True:
                try:
                    timeout = aiohttp.ClientTimeout(total=None, connect=5, sock_read=self.idle_timeout_s)
                    async with session.get(self.url, timeout=timeout) as resp:
                        if resp.status != 200:
                            raise RuntimeError(f"GET {self.url} answered HTTP {resp.status}")
                        self.connected = True
                        self.connects += 1
                        self.last_error = None
                        delay = self.backoff_s
                        while True:
                            raw = await resp.content.readline()
                            if not raw:
                                break
                            self.lines += 1
                            self.on_line(raw)
                    self.last_error = f"{self.url}: the proxy closed the stream"
                except asyncio.CancelledError:
                    raise
                except (aiohttp.ClientError, asyncio.TimeoutError, RuntimeError, ValueError, OSError) as exc:
                    self.last_error = f"{self.url}: {exc or type(exc).__name__}"
                finally:
                    self.connected = False
                await asyncio.sleep(delay)
                delay = min(self.max_backoff_s, delay * 2)
