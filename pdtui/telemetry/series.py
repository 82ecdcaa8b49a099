"""Bounded time series: fixed memory per series whatever the uptime.

`RingSeries(capacity)` keeps the last `capacity` (time, value) points in two preallocated
`array('d')` buffers; appending past capacity overwrites the oldest point. Times are unix
seconds and must not go backwards (an out-of-order point is dropped and counted in
`dropped`). A missing value is stored as NaN so plots show a gap rather than a fake zero.

`SeriesStore` is a dict of named RingSeries created on first use, all with the same
capacity (default: 30 minutes at one point every 2 s; the deployment monitor's store holds
an hour at 1 s). Writers (the monitor's thread) and readers (the UI) may be different
threads: creating a series and listing names take a lock; a reader may see a point
appended while it reads, never a torn buffer. `memory_bytes()` is what the buffers hold.
"""

from __future__ import annotations

import math
import threading
from array import array
from collections.abc import Iterator

__all__ = ["DEFAULT_CAPACITY", "RingSeries", "SeriesStore"]

DEFAULT_CAPACITY = 900  # 30 min at the default 2 s scrape interval


class RingSeries:
    __slots__ = ("_times", "_values", "_capacity", "_start", "_len", "dropped")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        self._capacity = capacity
        self._times = array("d", bytes(8 * capacity))
        self._values = array("d", bytes(8 * capacity))
        self._start = 0
        self._len = 0
        self.dropped = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return self._len

    def append(self, t: float, value: float | None) -> bool:
        """Add a point; False (and `dropped` += 1) when `t` is earlier than the last point."""
        if self._len and t < self._times[(self._start + self._len - 1) % self._capacity]:
            self.dropped += 1
            return False
        v = math.nan if value is None else float(value)
        if self._len < self._capacity:
            idx = (self._start + self._len) % self._capacity
            self._len += 1
        else:
            idx = self._start
            self._start = (self._start + 1) % self._capacity
        self._times[idx] = t
        self._values[idx] = v
        return True

    def last(self) -> tuple[float, float] | None:
        if not self._len:
            return None
        idx = (self._start + self._len - 1) % self._capacity
        return self._times[idx], self._values[idx]

    def __iter__(self) -> Iterator[tuple[float, float]]:
        cap, start = self._capacity, self._start
        for i in range(self._len):
            idx = (start + i) % cap
            yield self._times[idx], self._values[idx]

    def points(self) -> list[tuple[float, float]]:
        return list(self)

    def since(self, t0: float) -> list[tuple[float, float]]:
        """Points with time >= t0, oldest first (binary search: times are sorted)."""
        lo, hi = 0, self._len
        cap, start, times = self._capacity, self._start, self._times
        while lo < hi:
            mid = (lo + hi) // 2
            if times[(start + mid) % cap] < t0:
                lo = mid + 1
            else:
                hi = mid
        return [(times[(start + i) % cap], self._values[(start + i) % cap]) for i in range(lo, self._len)]

    def window(self, seconds: float, now: float | None = None) -> list[tuple[float, float]]:
        """The last `seconds` of points, relative to `now` (default: the newest point)."""
        if now is None:
            last = self.last()
            if last is None:
                return []
            now = last[0]
        return self.since(now - seconds)

    def values(self, seconds: float | None = None, now: float | None = None) -> list[float]:
        """Values only, e.g. for a sparkline of the last N minutes (NaN = gap)."""
        pts = self.points() if seconds is None else self.window(seconds, now)
        return [v for _, v in pts]


class SeriesStore:
    """Named series, created on first `record`."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        self.capacity = capacity
        self._series: dict[str, RingSeries] = {}
        self._lock = threading.Lock()

    def record(self, name: str, t: float, value: float | None) -> None:
        series = self._series.get(name)
        if series is None:
            with self._lock:
                series = self._series.get(name)
                if series is None:
                    series = self._series[name] = RingSeries(self.capacity)
        series.append(t, value)

    def get(self, name: str) -> RingSeries | None:
        return self._series.get(name)

    def values(self, name: str, seconds: float | None = None, now: float | None = None) -> list[float]:
        """The named series' values (empty when it does not exist yet)."""
        series = self._series.get(name)
        return [] if series is None else series.values(seconds, now)

    def latest(self, name: str) -> float | None:
        """The newest value, None when missing or NaN (a gap)."""
        series = self._series.get(name)
        last = series.last() if series is not None else None
        return None if last is None or math.isnan(last[1]) else last[1]

    def names(self, prefix: str = "") -> list[str]:
        with self._lock:
            return sorted(n for n in self._series if n.startswith(prefix))

    def memory_bytes(self) -> int:
        """Bytes held by the series' buffers (two float64 arrays of `capacity` each)."""
        with self._lock:
            return len(self._series) * (2 * 8 * self.capacity + 200)

    def __contains__(self, name: object) -> bool:
        return name in self._series

    def __len__(self) -> int:
        return len(self._series)
