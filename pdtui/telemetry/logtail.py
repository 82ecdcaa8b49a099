"""A followed log file: line numbers, read-back, search and filtered scans, off the UI thread.

No textual here. `LogFollower(path)` is the one tail of a file: it keeps the file open
(reopened only when the file is replaced or truncated), reads new complete lines on each
`poll()`, counts them, keeps a sparse index (byte offset of every `INDEX_STRIDE`-th line)
so any line can be read back from the file later, and hands the lines to `on_lines`
listeners (the parsers) and to every `LogView`. A view is what one pane needs: its own
filter, search matches and a bounded queue of new lines the UI drains (`LogView`,
pdtui.telemetry.logview; re-exported here); a
follower has a default view (its own `take_pending`/`set_filter`/`search`), and
`follower.view()` adds more, so two panes of the same file never read it twice.

`poll()` is driven either by the follower's own thread (`start()`, for a standalone pane)
or by the deployment monitor's single tail loop over every file (`start_thread=False`).
The file on disk keeps everything; memory here is the sparse index plus at most `window`
pending lines per view (older pending lines would be scrolled out of the pane anyway:
they are counted in `skipped`, still on disk, and reachable through `read_lines`).

What a view shows is a `ViewFilter` (pdtui.telemetry.logfilter; re-exported here).
"""

from __future__ import annotations

import os
import re
import threading
from array import array
from collections import deque
from typing import BinaryIO
from collections.abc import Callable, Iterable, Iterator

from pdtui.telemetry.logfilter import LEVEL_RANK, ViewFilter, is_error_line, is_polling_line, level_rank
from pdtui.telemetry.logview import MAX_MATCHES, LogView

__all__ = ["INDEX_STRIDE", "LEVEL_RANK", "MAX_MATCHES", "LogFollower", "LogView", "ViewFilter", "is_error_line", "is_polling_line",
           "level_rank"]

INDEX_STRIDE = 256
MAX_READ_BYTES = 4 << 20  # per tick; a flood is caught up over a few ticks
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


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
        # (first line number, raw lines) on the polling thread: the parsers (KV stats).
        self._listeners: list[Callable[[int, list[str]], None]] = [on_lines] if on_lines is not None else []
        self._lock = threading.Lock()
        self._index = array("q")  # byte offset of line k * INDEX_STRIDE
        self._offset = 0
        self._partial = b""
        self._handle: BinaryIO | None = None
        self._inode: tuple[int, int] | None = None
        self.opens = 0  # times the file was opened for tailing (once, unless replaced)
        self.total_lines = 0  # complete lines seen so far (line numbers are 0-based)
        self.last_error_line: int | None = None
        self._default = LogView(self, window)
        self._views: list[LogView] = [self._default]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.problem: str | None = None
        self.managed = False  # True: someone else (the monitor) polls; start() starts no thread

    # --- readers ----------------------------------------------------------------------
    def add_listener(self, on_lines: Callable[[int, list[str]], None]) -> None:
        self._listeners.append(on_lines)

    def view(self, window: int | None = None, view: ViewFilter | None = None) -> LogView:
        """A new view of this file (a pane): its own filter, search and pending lines."""
        new = LogView(self, window or self.window, view)
        with self._lock:
            self._views.append(new)
        return new

    def remove_view(self, view: LogView) -> None:
        with self._lock:
            if view in self._views and view is not self._default:
                self._views.remove(view)
        if view is self._default and self._thread is not None:
            self.stop()  # a standalone pane's own follower

    # --- thread ---------------------------------------------------------------------
    def start(self) -> LogFollower:
        if self._thread is None and not self.managed:
            self.poll()  # the existing content is indexed before the first frame
            self._thread = threading.Thread(target=self._run, name=f"log-follow:{os.path.basename(self.path)}", daemon=True)
            self._thread.start()
        return self

    @property
    def started(self) -> bool:
        return self._thread is not None or self._polled

    _polled = False

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self.close()

    def close(self) -> None:
        with self._lock:
            handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            while self.poll() and not self._stop.is_set():
                pass  # a big backlog: keep reading without sleeping

    def _open(self) -> BinaryIO | None:
        """The tail's handle: opened once, reopened when the path names another file."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.problem = f"{self.path} does not exist (yet)"
            return None
        except OSError as exc:
            self.problem = f"cannot read {self.path}: {exc.strerror or exc}"
            return None
        inode = (st.st_dev, st.st_ino)
        if self._handle is not None and inode == self._inode:
            return self._handle
        if self._handle is not None:  # replaced (rotated): start again on the new file
            self.close()
            self._reset()
        try:
            self._handle = open(self.path, "rb")
        except OSError as exc:
            self.problem = f"cannot read {self.path}: {exc.strerror or exc}"
            return None
        self.opens += 1
        self._inode = inode
        return self._handle

    def poll(self) -> bool:
        """Read what is new; True when a full MAX_READ_BYTES chunk was read (more may wait)."""
        self._polled = True
        handle = self._open()
        if handle is None:
            return False
        try:
            size = os.fstat(handle.fileno()).st_size
            if size < self._offset:  # truncated: start again
                self._reset()
            if size == self._offset:
                self.problem = None
                return False
            handle.seek(self._offset)
            data = handle.read(min(size - self._offset, MAX_READ_BYTES))
        except (OSError, ValueError) as exc:  # ValueError: closed by stop() meanwhile
            self.problem = f"cannot read {self.path}: {getattr(exc, 'strerror', None) or exc}"
            return False
        self.problem = None
        line_start = self._offset - len(self._partial)
        self._offset += len(data)
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        lines = []
        first = self.total_lines
        with self._lock:
            views = self._views
            searching = any(v._search for v in views)
            n = first
            for raw in complete:
                if n % INDEX_STRIDE == 0:
                    self._index.append(line_start)
                line_start += len(raw) + 1
                line = _decode(raw)
                lines.append(line)
                if is_error_line(line):
                    self.last_error_line = n
                lowered = line.lower() if searching else None
                for v in views:
                    v._offer(n, line, lowered)
                n += 1
            self.total_lines = n
            doorbells = [bell for bell in (v._signal() for v in views) if bell is not None] if lines else []
        if lines:
            for listener in self._listeners:
                listener(first, lines)
        for bell in doorbells:
            bell()
        return len(data) - len(self._partial) >= MAX_READ_BYTES

    def _reset(self) -> None:
        with self._lock:
            self._offset, self._partial, self.total_lines = 0, b"", 0
            self._index = array("q")
            for v in self._views:
                v._matches = array("q")
            self.last_error_line = None

    # --- the default view (a pane that owns this follower) --------------------------
    @property
    def skipped(self) -> int:
        return self._default.skipped

    @property
    def on_new(self) -> Callable[[], None] | None:
        return self._default.on_new

    @on_new.setter
    def on_new(self, bell: Callable[[], None] | None) -> None:
        self._default.on_new = bell

    def take_pending(self) -> tuple[list[tuple[int, str]], int]:
        return self._default.take_pending()

    def set_filter(self, view: ViewFilter) -> None:
        self._default.set_filter(view)

    def search(self, text: str) -> list[int]:
        return self._default.search(text)

    def matches(self) -> list[int]:
        return self._default.matches()

    # --- reading back from the file -------------------------------------------------
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
        """The last `count` lines passing `view`. A filtered tail reads backwards in
        growing blocks, so hiding the polling lines of a long log reads only its end."""
        if view is None or not view.active:
            return self.read_lines(self.total_lines - count, count)
        stop = self.total_lines
        kept: list[tuple[int, str]] = []
        block = max(count, 256)
        while stop > 0 and len(kept) < count:
            start = max(0, stop - block)
            found = [item for item in self.iter_lines(start, stop) if view.accepts(item[1])]
            kept = found + kept
            stop = start
            block *= 2
        return kept[-count:] if count else []

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

    def save(self, destination: str | os.PathLike[str], lines: Iterable[str]) -> str:
        path = os.fspath(destination)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(line + "\n")
        os.replace(tmp, path)
        return path
