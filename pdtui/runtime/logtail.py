"""Following a log file that another process appends to, in whole lines."""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path

# A tick never reads more than this much of one file, so one chatty instance cannot
# stall the others; the rest comes on the next tick.
MAX_READ_BYTES = 1 << 20


class LogTailer:
    def __init__(self, path: str | Path, offset: int = 0) -> None:
        self.path = str(path)
        self.offset = offset
        self._partial = b""
        # How often the file was actually opened and read; a stat that shows nothing new
        # does not count. The supervisor polls several logs for as long as a run lives,
        # so the idle path must stay one stat per file per tick (tests check it here).
        self.reads = 0

    @classmethod
    def at_end(cls, path: str | Path) -> LogTailer:
        try:
            size = os.path.getsize(path)
        except OSError:
            size = 0
        return cls(path, size)

    def size(self) -> int | None:
        try:
            return os.stat(self.path).st_size
        except OSError:
            return None

    def skip_to(self, size: int) -> None:
        """Leave what lies before `size` unread (no LogLines subscriber wants it)."""
        if size != self.offset:
            self.offset, self._partial = size, b""

    def read_lines(self) -> list[str]:
        """New complete lines since the last call (a trailing partial line waits)."""
        try:
            size = os.stat(self.path).st_size
        except OSError:
            return []
        if size == self.offset:  # nothing new: the common case, one stat and no open
            return []
        self.reads += 1
        try:
            with open(self.path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size < self.offset:  # truncated or replaced: start again
                    self.offset, self._partial = 0, b""
                if size == self.offset:
                    return []
                handle.seek(self.offset)
                data = handle.read(min(size - self.offset, MAX_READ_BYTES))
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        if len(self._partial) > MAX_READ_BYTES:  # a "line" without end (progress bars): cut it
            complete.append(self._partial)
            self._partial = b""
        return [line.decode("utf-8", "replace").rstrip("\r") for line in complete]


def last_lines(path: str | Path, count: int, start_offset: int = 0, max_bytes: int = 256 * 1024) -> list[str]:
    """The last `count` lines of a file (only what lies after start_offset)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            begin = max(start_offset if start_offset <= size else 0, size - max_bytes)
            handle.seek(begin)
            data = handle.read(size - begin)
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    if begin > start_offset and lines:
        lines = lines[1:]  # the first one is probably cut
    return list(deque(lines, maxlen=count)) if count > 0 else []
