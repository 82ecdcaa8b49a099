"""GpuPoller: one thread, never overlapping, errors contained, stop joins."""

from __future__ import annotations

import threading
import time

import pytest

from pdtui.gpus.poller import GpuPoller
from pdtui.gpus.recorded_source import RecordedSource
from pdtui.gpus.snapshot import GpuInventory


class SlowSource:
    """Polls take longer than the interval; records how many run at once."""

    kind = "simulated"

    def __init__(self, poll_s: float, fail_on: set[int] | None = None) -> None:
        self.poll_s = poll_s
        self.fail_on = fail_on or set()
        self.active = 0
        self.max_active = 0
        self.count = 0
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def poll(self) -> GpuInventory:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.count += 1
            number = self.count
        self.threads.add(threading.current_thread().name)
        try:
            time.sleep(self.poll_s)
            if number in self.fail_on:
                raise RuntimeError("driver hiccup")
            return GpuInventory(gpus=(), timestamp=time.time(), source="simulated")
        finally:
            with self._lock:
                self.active -= 1

    def close(self) -> None:
        pass


def wait_for(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("interval", [0.0, 0.1, 0.249, -1, float("nan")])
def test_refuses_too_short_intervals(interval):
    with pytest.raises(ValueError, match="minimum is 0.25s|number of seconds"):
        GpuPoller(RecordedSource.demo(1), lambda inv: None, interval)


def test_delivers_inventories_in_order_and_stops():
    seen: list[GpuInventory] = []
    poller = GpuPoller(RecordedSource.demo(2, seed=1), seen.append, 0.25)
    poller.start()
    try:
        wait_for(lambda: len(seen) >= 3)
    finally:
        poller.stop()
    assert not poller.running
    assert [len(inv.gpus) for inv in seen[:3]] == [2, 2, 2]
    assert all(a.timestamp <= b.timestamp for a, b in zip(seen, seen[1:]))
    count = len(seen)
    time.sleep(0.4)
    assert len(seen) == count  # nothing after stop()


def test_slow_polls_never_overlap_and_errors_are_contained():
    source = SlowSource(poll_s=0.35, fail_on={2})
    seen: list[GpuInventory] = []

    def callback(inventory: GpuInventory) -> None:
        seen.append(inventory)
        if len(seen) == 3:
            raise ValueError("UI callback bug")  # logged; polling goes on

    poller = GpuPoller(source, callback, 0.25)
    poller.start()
    try:
        wait_for(lambda: len(seen) >= 5)
    finally:
        poller.stop()
    assert source.max_active == 1
    assert source.threads == {"pdtui-gpu-poller"}
    assert seen[1].error == "GPU poll failed: RuntimeError: driver hiccup"
    assert seen[0].error is None and seen[2].error is None


def test_poll_now_wakes_the_poller_early():
    seen: list[GpuInventory] = []
    poller = GpuPoller(RecordedSource.demo(1), seen.append, 30.0)
    poller.start()
    try:
        wait_for(lambda: len(seen) == 1)
        poller.poll_now()
        wait_for(lambda: len(seen) == 2)
    finally:
        poller.stop()


def test_start_once():
    poller = GpuPoller(RecordedSource.demo(1), lambda inv: None, 1.0)
    poller.start()
    poller.stop()
    with pytest.raises(RuntimeError):
        poller.start()
