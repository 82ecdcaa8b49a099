"""Which log lines a pane shows: `ViewFilter` (text, level, pdtui's own polling) and the
per-line tests it uses. No textual here; `LogFollower`/`LogView` (logtail) apply it to new
lines as they are read, and to the file when a pane reads back.

`ViewFilter.hide_polling` (on by default) hides pdtui's own polling from panes: the
access-log lines of `GET /health` and `GET /metrics` from a loopback client (our
supervisor, proxy health checks and scraper), about three lines per 2 s per engine.
The file keeps them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pdtui.telemetry.logparse import parse_header

__all__ = ["LEVEL_RANK", "ViewFilter", "is_error_line", "is_polling_line", "level_rank"]

# uvicorn/aiohttp access lines of our own polling: `127.0.0.1:40000 - "GET /metrics HTTP/1.1" 200`.
_POLLING = re.compile(r'(?:127\.0\.0\.1|localhost|\[?::1\]?):\d+ - "GET /(?:health|metrics)(?:\?\S*)? HTTP/')


def is_polling_line(line: str) -> bool:
    """An access-log line of a loopback GET /health or /metrics (pdtui's own polling)."""
    return '"GET /' in line and _POLLING.search(line) is not None


LEVEL_RANK = {"DEBUG": 0, "INFO": 1, "WARNING": 2, "WARN": 2, "ERROR": 3, "CRITICAL": 4}
_ERRORISH = ("ERROR", "CRITICAL", "Traceback", "Error:", "Exception:", "out of memory")


def level_rank(line: str) -> int:
    """0 debug .. 4 critical; 1 (info) for lines without a level. Cheap for plain lines."""
    if "ERROR" not in line and "WARN" not in line and "CRITICAL" not in line and "DEBUG" not in line:
        return 1
    level = parse_header(line).level
    return LEVEL_RANK.get(level or "", 1)


def is_error_line(line: str) -> bool:
    if not any(marker in line for marker in _ERRORISH):
        return False
    head = parse_header(line)
    if head.level in ("ERROR", "CRITICAL"):
        return True
    if head.level in ("DEBUG", "INFO", "WARNING"):
        return False
    return "Traceback" in line or "Error:" in line or "Exception:" in line or "out of memory" in line


@dataclass(frozen=True)
class ViewFilter:
    """What the pane shows: lines containing `text` (case-insensitive) when `only_matching`,
    at least `min_level` (1 = everything, 2 = warnings and errors, 3 = errors), and
    without pdtui's own /health and /metrics polling when `hide_polling`."""

    text: str = ""
    only_matching: bool = False
    min_level: int = 1
    hide_polling: bool = True

    @property
    def active(self) -> bool:
        return (self.only_matching and bool(self.text)) or self.min_level > 1 or self.hide_polling

    def accepts(self, line: str) -> bool:
        if self.hide_polling and is_polling_line(line):
            return False
        if self.only_matching and self.text and self.text.lower() not in line.lower():
            return False
        if self.min_level > 1 and level_rank(line) < self.min_level:
            return False
        return True
