"""The proxy's log: one access line per request, and repeated warnings rate-limited.

Under a flood of one failure (e.g. "Too many open files" on every accept, or every
backend call failing the same way) an unlimited log grows by megabytes a second. The
filter lets each kind of warning (its logger and message template) through a few times
per window, then counts the rest and says how many it held back when the window ends.
Access lines are INFO and never limited.
"""

from __future__ import annotations

import logging
import time

ACCESS_LOGGER = "pdtui.proxy.access"


class RateLimitFilter(logging.Filter):
    def __init__(self, per_window: int = 5, window_s: float = 10.0,
                 clock=time.monotonic) -> None:
        super().__init__()
        self.per_window = per_window
        self.window_s = window_s
        self._clock = clock
        # (logger, template) -> [window start, passed in window, suppressed in window]
        self._seen: dict[tuple[str, str], list] = {}
        self.suppressed_total = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        entry = self._seen.get(key)
        if entry is None or now - entry[0] >= self.window_s:
            held = entry[2] if entry is not None else 0
            if len(self._seen) > 1000:  # bounded: forget old kinds
                self._seen.clear()
            self._seen[key] = [now, 1, 0]
            if held:
                record.msg = f"{record.msg} [{held} more like this held back in the last " \
                             f"{self.window_s:g} s]"
            return True
        if entry[1] < self.per_window:
            entry[1] += 1
            return True
        if entry[1] == self.per_window:
            # say once, as it starts, that this kind is being held back
            entry[1] += 1
            record.msg = f"{record.msg} [repeated; more like this are held back for " \
                         f"{self.window_s:g} s]"
            record.exc_info = None
            record.exc_text = None
            return True
        entry[2] += 1
        self.suppressed_total += 1
        return False


def configure(level: str) -> RateLimitFilter:
    """The proxy process's logging: one stream handler with the rate limit on it."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    limiter = RateLimitFilter()
    handler.addFilter(limiter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))
    return limiter


_access = logging.getLogger(ACCESS_LOGGER)


def access_line(req_id: str, route: str, prefiller: str | None, decoder: str | None,
                status: int, outcome: str, durations: dict[str, float]) -> None:
    """`access <id> <route> P -> D status=.. outcome=.. tokenize=..ms ... total=..ms`."""
    if not _access.isEnabledFor(logging.INFO):
        return
    stages = " ".join(f"{k}={v * 1000.0:.1f}ms" for k, v in durations.items())
    _access.info("access %s %s %s -> %s status=%d outcome=%s %s", req_id, route,
                 prefiller or "-", decoder or "-", status, outcome, stages)
