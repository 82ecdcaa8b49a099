"""A tiny time-to-live cache for slow-changing NVML fields.

nvitop keeps fan, temperature, MIG/ECC/compute mode for 5 s; re-reading them every
second only costs NVML round trips. Values that are not available are cached too,
so a GPU that says "Not Supported" is not asked again every poll.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any


class TtlCache:
    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s < 0:
            raise ValueError(f"ttl_s must be >= 0, got {ttl_s}")
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[Hashable, tuple[float, Any]] = {}

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        value = compute()
        self._entries[key] = (now + self._ttl_s, value)
        return value

    def forget(self, predicate: Callable[[Hashable], bool]) -> None:
        for key in [k for k in self._entries if predicate(k)]:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()
