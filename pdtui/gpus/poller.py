"""Polling a GpuSource on one background thread.

One thread means a poll can never overlap the previous one (dolphie's rule): if NVML
is slow, the next poll simply starts later. The UI wraps this; nothing here knows
about Textual, the callback runs on the poller thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pdtui.gpus.snapshot import GpuInventory
from pdtui.gpus.source import GpuSource

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 1.0
MIN_INTERVAL_S = 0.25  # as nvitop: faster polling costs more than it shows


def validate_interval(interval_s: float) -> float:
    if not isinstance(interval_s, (int, float)) or isinstance(interval_s, bool) or interval_s != interval_s:
        raise ValueError(f"GPU poll interval must be a number of seconds, got {interval_s!r}")
    if interval_s < MIN_INTERVAL_S:
        raise ValueError(
            f"GPU poll interval {interval_s:g}s is too short: the minimum is {MIN_INTERVAL_S:g}s "
            f"(polling faster costs more than it shows; the default is {DEFAULT_INTERVAL_S:g}s)"
        )
    return float(interval_s)


class GpuPoller:
    """Calls `source.poll()` every `interval_s` and hands each inventory to `on_inventory`.

    The interval is measured start to start; a poll that takes longer than the interval
    is followed at once by the next (never two at a time). An exception from the source
    becomes an inventory with `error`; one from the callback is logged and polling goes on.
    """

    def __init__(
        self,
        source: GpuSource,
        on_inventory: Callable[[GpuInventory], object],
        interval_s: float = DEFAULT_INTERVAL_S,
        *,
        name: str = "pdtui-gpu-poller",
    ) -> None:
        self._interval_s = validate_interval(interval_s)
        self._source = source
        self._on_inventory = on_inventory
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._polls = 0
        self._latest: GpuInventory | None = None

    @property
    def interval_s(self) -> float:
        return self._interval_s

    @property
    def polls(self) -> int:
        """How many polls have completed (for tests and the status bar)."""
        return self._polls

    @property
    def latest(self) -> GpuInventory | None:
        return self._latest

    def start(self) -> None:
        if self._thread.is_alive() or self._stop.is_set():
            raise RuntimeError("GpuPoller can be started once")
        self._thread.start()

    def poll_now(self) -> None:
        """Ask for a poll as soon as the current one (if any) is done."""
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop and wait for the thread; the source is left open for the caller to close."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            inventory = self._poll_once()
            self._latest = inventory
            self._polls += 1
            if self._stop.is_set():
                break
            try:
                self._on_inventory(inventory)
            except Exception:
                log.exception("GPU inventory callback failed; polling continues")
            remaining = self._interval_s - (time.monotonic() - started)
            if remaining > 0:
                self._wake.wait(remaining)
            self._wake.clear()

    def _poll_once(self) -> GpuInventory:
        try:
            return self._source.poll()
        except Exception as exc:  # a source bug must not kill the thread silently
            log.exception("GPU source poll failed")
            return GpuInventory(
                gpus=(),
                timestamp=time.time(),
                source=getattr(self._source, "kind", "nvml"),
                error=f"GPU poll failed: {type(exc).__name__}: {exc}",
            )
