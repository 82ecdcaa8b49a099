"""A followed log file: line numbers, read-back, search and filtered scans, off the UI thread.

No textual here. `LogFollower(path)` runs one daemon thread that reads new complete lines
every `interval_s`, counts them, keeps a sparse index (byte offset of every
`INDEX_STRIDE`-th line) so any line can be read back from the file later, and hands the
lines that pass the current view filter to a bounded queue the UI drains at ~10 Hz. The
file on disk keeps everything; memory here is the sparse index plus at most `window`
pending lines (older pending lines would be scrolled out of the pane anyway: they are
counted in `skipped`, still on disk, and reachable through `read_lines`).
"""

from __future__ import annotations

import os
import re
import threading
from array import array
from collections import deque
from dataclasses import dataclass
from collections.abc import Callable, Iterable, Iterator

from pdtui.telemetry.logparse import parse_header

__all__ = ["INDEX_STRIDE", "LEVEL_RANK", "LogFollower", "ViewFilter", "level_rank"]

INDEX_STRIDE = 256
MAX_READ_BYTES = 4 << 20  # per tick; a flood is caught up over a few ticks
MAX_MATCHES = 200_000
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

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
    and at least `min_level` (1 = everything, 2 = warnings and errors, 3 = errors)."""

    text: str = ""
    only_matching: bool = False
    min_level: int = 1

    @property
    def active(self) -> bool:
        return (self.only_matching and bool(self.text)) or self.min_level > 1

    def accepts(self, line: str) -> bool:
        if self.only_matching and self.text and self.text.lower() not in line.lower():
            return False
        if self.min_level > 1 and level_rank(line) < self.min_level:
            return False
        return True


def _decode(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").rstrip("\r")
    return _ANSI.sub("", text) if "\x1b" in text else text


class LogFollower:
    def __init__(
        self,
        path: str | os.PathLike[str],
        window: int = 5000,
        interval_s: float = 0.1,
        on_lines: Callable[[int, list[str]], None] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.window = window
        self.interval_s = interval_s
        self.on_lines = on_lines  # (first line number, raw lines) on the follower thread: KV stats
        self._lock = threading.Lock()
        self._index = array("q")  # byte offset of line k * INDEX_STRIDE
        self._offset = 0
        self._partial = b""
        self.total_lines = 0  # complete lines seen so far (line numbers are 0-based)
        self.last_error_line: int | None = None
        self._pending: deque[tuple[int, str]] = deque(maxlen=window)
        self.skipped = 0  # pending lines dropped from the queue (still on disk)
        self._filter = ViewFilter()
        self._search = ""
        self._matches = array("q")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.problem: str | None = None

    # --- thread ---------------------------------------------------------------------
    def start(self) -> LogFollower:
        if self._thread is None:
            self.poll()  # the existing content is indexed before the first frame
            self._thread = threading.Thread(target=self._run, name=f"log-follow:{os.path.basename(self.path)}", daemon=True)
            self._thread.start()
        return self

    @property
    def started(self) -> bool:
        return self._thread is not None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            while self.poll() and not self._stop.is_set():
                pass  # a big backlog: keep reading without sleeping

    def poll(self) -> bool:
        """Read what is new; True when a full MAX_READ_BYTES chunk was read (more may wait)."""
        try:
            with open(self.path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size < self._offset:  # truncated or replaced: start again
                    self._reset()
                if size == self._offset:
                    self.problem = None
                    return False
                handle.seek(self._offset)
                data = handle.read(min(size - self._offset, MAX_READ_BYTES))
        except FileNotFoundError:
            self.problem = f"{self.path} does not exist (yet)"
            return False
        except OSError as exc:
            self.problem = f"cannot read {self.path}: {exc.strerror or exc}"
            return False
        self.problem = None
        line_start = self._offset - len(self._partial)
        self._offset += len(data)
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        lines = []
        first = self.total_lines
        with self._lock:
            view, search = self._filter, self._search.lower()
            n = first
            for raw in complete:
                if n % INDEX_STRIDE == 0:
                    self._index.append(line_start)
                line_start += len(raw) + 1
                line = _decode(raw)
                lines.append(line)
                if is_error_line(line):
                    self.last_error_line = n
                if search and search in line.lower() and len(self._matches) < MAX_MATCHES:
                    self._matches.append(n)
                if view.accepts(line):
                    if len(self._pending) == self._pending.maxlen:
                        self.skipped += 1
                    self._pending.append((n, line))
                n += 1
            self.total_lines = n
        if self.on_lines is not None and lines:
            self.on_lines(first, lines)
        return len(data) - len(self._partial) >= MAX_READ_BYTES

    def _reset(self) -> None:
        with self._lock:
            self._offset, self._partial, self.total_lines = 0, b"", 0
            self._index = array("q")
            self._matches = array("q")
            self.last_error_line = None

    # --- for the UI -----------------------------------------------------------------
    def take_pending(self) -> tuple[list[tuple[int, str]], int]:
        """New (line number, line) pairs passing the view filter, and how many were skipped."""
        with self._lock:
            batch = list(self._pending)
            self._pending.clear()
            skipped, self.skipped = self.skipped, 0
        return batch, skipped

    def set_filter(self, view: ViewFilter) -> None:
        with self._lock:
            self._filter = view
            self._pending.clear()

    def _offset_of(self, line_no: int) -> tuple[int, int]:
        """(byte offset, line number) of the indexed line at or before line_no."""
        with self._lock:
            k = min(line_no // INDEX_STRIDE, len(self._index) - 1)
            if k < 0:
                return 0, 0
            return self._index[k], k * INDEX_STRIDE

    def iter_lines(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, str]]:
        """(line number, line) from the file, start <= n < stop (default: every complete line)."""
        stop = self.total_lines if stop is None else min(stop, self.total_lines)
        if start >= stop:
            return
        offset, n = self._offset_of(start)
        with open(self.path, "rb") as handle:
            handle.seek(offset)
            for raw in handle:
                if n >= stop:
                    break
                if not raw.endswith(b"\n"):
                    break  # the partial last line is not a line yet
                if n >= start:
                    yield n, _decode(raw[:-1])
                n += 1

    def read_lines(self, start: int, count: int) -> list[tuple[int, str]]:
        return list(self.iter_lines(max(0, start), max(0, start) + count))

    def tail(self, count: int, view: ViewFilter | None = None) -> list[tuple[int, str]]:
        """The last `count` lines passing `view` (a filtered tail scans the whole file)."""
        if view is None or not view.active:
            return self.read_lines(self.total_lines - count, count)
        kept: deque[tuple[int, str]] = deque(maxlen=count)
        kept.extend(item for item in self.iter_lines() if view.accepts(item[1]))
        return list(kept)

    def around(self, line_no: int, count: int, view: ViewFilter | None = None) -> list[tuple[int, str]]:
        """About `count` lines passing `view` centred on line_no (which is included when it passes)."""
        if view is None or not view.active:
            return self.read_lines(line_no - count // 2, count)
        before: deque[tuple[int, str]] = deque(maxlen=count // 2)
        after: list[tuple[int, str]] = []
        for item in self.iter_lines():
            if not view.accepts(item[1]):
                continue
            if item[0] < line_no:
                before.append(item)
            else:
                after.append(item)
                if len(after) >= count - count // 2:
                    break
        return list(before) + after

    def search(self, text: str) -> list[int]:
        """Line numbers containing `text` (case-insensitive), and keep matching new lines."""
        needle = text.lower()
        with self._lock:
            # From here poll() records matches of new lines; the scan covers the lines
            # that were already there, so no line is missed or counted twice.
            self._search = text
            self._matches = array("q")
            stop = self.total_lines
        found = array("q")
        if needle:
            for n, line in self.iter_lines(0, stop):
                if needle in line.lower():
                    found.append(n)
                    if len(found) >= MAX_MATCHES:
                        break
        with self._lock:
            found.extend(self._matches)
            self._matches = found
            return list(found)

    def matches(self) -> list[int]:
        with self._lock:
            return list(self._matches)

    def save(self, destination: str | os.PathLike[str], lines: Iterable[str]) -> str:
        path = os.fspath(destination)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(line + "\n")
        os.replace(tmp, path)
        return path
