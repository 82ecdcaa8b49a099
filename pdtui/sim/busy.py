"""GPU utilization the way NVML measures it: the share of the last sample period during
which the GPU was busy (here weighted by how hard the simulated work drives it).

The engine's load changes at request boundaries (tens of ms apart under a light load); the
GPU usage file is written every 0.5 s. Sampling the instantaneous level would read 0 between
two short requests and 97 during one: the average over the window follows the load instead.
"""

from __future__ import annotations

import time
from collections import deque

WINDOW_S = 1.0  # nvidia-smi's sample period is 1/6 s to 1 s depending on the product


class BusyMeter:
    def __init__(self, window_s: float = WINDOW_S, clock=time.monotonic) -> None:
        self._window_s = window_s
        self._clock = clock
        self._level = 0.0
        self._since = clock()
        self._past: deque[tuple[float, float, float]] = deque()  # (start, end, level > 0)

    def set_level(self, level: float) -> None:
        """The load from now on, 0..100."""
        if level == self._level:
            return
        now = self._clock()
        if self._level > 0 and now > self._since:
            self._past.append((self._since, now, self._level))
        self._level, self._since = level, now
        self._forget(now)

    def average(self) -> float:
        """Mean load over the last window, 0..100, rounded to 0.1 (as the file stores it)."""
        now = self._clock()
        start = now - self._window_s
        self._forget(now)
        total = sum(level * (end - max(begin, start)) for begin, end, level in self._past)
        total += self._level * (now - max(self._since, start))
        return round(min(100.0, max(0.0, total / self._window_s)), 1)

    def _forget(self, now: float) -> None:
        start = now - self._window_s
        while self._past and self._past[0][1] <= start:
            self._past.popleft()
