"""`LogView`: one pane's view of a followed file (pdtui.telemetry.logtail's `LogFollower`).

Its own filter (`ViewFilter`), search matches, and a bounded queue of the new lines that
pass the filter, which the pane takes with `take_pending()`. The follower offers each
new line to every view under its lock; the file stays the follower's (read-back goes
through it). `on_new`, when set, is the pane's doorbell: called on the polling thread
when new lines reach the view and the pane took the earlier ones, so a pane drains on
that signal instead of on a timer and an idle pane costs nothing.
"""

from __future__ import annotations

import os
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from pdtui.telemetry.logfilter import ViewFilter

__all__ = ["MAX_MATCHES", "LogView"]

MAX_MATCHES = 200_000


class LogView:
    """One reader's view of a followed file: filter, search matches, pending new lines."""

    # `follower` is the LogFollower that made this view (untyped here: logtail imports
    # this module, and the layer contract forbids the cycle an import back would make).
    def __init__(self, follower: Any, window: int, view: ViewFilter | None = None) -> None:
        self.follower = follower
        self._filter = view or ViewFilter()
        self._pending: deque[tuple[int, str]] = deque(maxlen=window)
        self.skipped = 0  # pending lines dropped from the queue (still on disk)
        self._search = ""
        self._matches = array("q")
        # `on_new()`: called on the polling thread when lines arrive and the pending
        # lines were taken since the last call (one signal per drain, however many lines).
        self.on_new: Callable[[], None] | None = None
        self._signalled = False

    # Called by the follower, under its lock, for each new line.
    def _offer(self, n: int, line: str, lowered: str | None) -> None:
        if self._search and len(self._matches) < MAX_MATCHES:
            if (lowered if lowered is not None else line.lower()).find(self._search) >= 0:
                self._matches.append(n)
        if self._filter.accepts(line):
            if len(self._pending) == self._pending.maxlen:
                self.skipped += 1
            self._pending.append((n, line))

    # Called by the follower, under its lock, after a batch: the callback to make, if any.
    def _signal(self) -> Callable[[], None] | None:
        if self.on_new is None or self._signalled or not (self._pending or self.skipped):
            return None
        self._signalled = True
        return self.on_new

    # --- the follower's file, for the pane -------------------------------------------
    @property
    def path(self) -> str:
        return self.follower.path

    @property
    def total_lines(self) -> int:
        return self.follower.total_lines

    @property
    def last_error_line(self) -> int | None:
        return self.follower.last_error_line

    @property
    def problem(self) -> str | None:
        return self.follower.problem

    @property
    def started(self) -> bool:
        return self.follower.started

    def start(self) -> LogView:
        """Start the follower's own thread unless someone (the monitor) polls it."""
        self.follower.start()
        return self

    def stop(self) -> None:
        """This view is done; the follower stops only if it runs for this view alone."""
        self.follower.remove_view(self)

    def iter_lines(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, str]]:
        return self.follower.iter_lines(start, stop)

    def read_lines(self, start: int, count: int) -> list[tuple[int, str]]:
        return self.follower.read_lines(start, count)

    def tail(self, count: int, view: ViewFilter | None = None) -> list[tuple[int, str]]:
        return self.follower.tail(count, view)

    def around(self, line_no: int, count: int, view: ViewFilter | None = None) -> list[tuple[int, str]]:
        return self.follower.around(line_no, count, view)

    def save(self, destination: str | os.PathLike[str], lines: Iterable[str]) -> str:
        return self.follower.save(destination, lines)

    # --- this view's state ----------------------------------------------------------
    def take_pending(self) -> tuple[list[tuple[int, str]], int]:
        """New (line number, line) pairs passing the view filter, and how many were skipped."""
        with self.follower._lock:
            batch = list(self._pending)
            self._pending.clear()
            skipped, self.skipped = self.skipped, 0
            self._signalled = False
        return batch, skipped

    def set_filter(self, view: ViewFilter) -> None:
        with self.follower._lock:
            self._filter = view
            self._pending.clear()
            self._signalled = False

    def search(self, text: str) -> list[int]:
        """Line numbers containing `text` (case-insensitive), and keep matching new lines."""
        needle = text.lower()
        lock = self.follower._lock
        with lock:
            # From here new lines are matched as they come; the scan covers the lines
            # that were already there, so no line is missed or counted twice.
            self._search = needle
            self._matches = array("q")
            stop = self.follower.total_lines
        found = array("q")
        if needle:
            for n, line in self.follower.iter_lines(0, stop):
                if needle in line.lower():
                    found.append(n)
                    if len(found) >= MAX_MATCHES:
                        break
        with lock:
            found.extend(self._matches)
            self._matches = found
            return list(found)

    def matches(self) -> list[int]:
        with self.follower._lock:
            return list(self._matches)
