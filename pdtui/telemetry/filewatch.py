"""`FileWatch`: wake an asyncio loop when followed files are written (Linux inotify).

The deployment monitor's tail loop would otherwise have to poll every log file at a
fixed pace to notice a new line promptly; with a watch it sleeps until a file is
written, so an idle deployment costs (almost) nothing and a new line is read at once.

inotify is reached through ctypes (no dependency). Where it is missing (not Linux, a
libc without it, the per-user watch limit reached) `available` is False and the caller
polls instead. A watch follows an inode: `watch(path)` is cheap and idempotent, and the
tail loop calls it after each poll so a replaced (rotated) file is watched again.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable, Iterable

__all__ = ["FileWatch"]

_log = logging.getLogger(__name__)

# <sys/inotify.h>
IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_MOVE_SELF = 0x800
IN_DELETE_SELF = 0x400
_MASK = IN_MODIFY | IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        return libc
    except (OSError, AttributeError):  # no libc by that name, or no inotify in it
        return None


class FileWatch:
    """`on_change()` is called on the loop when any watched file is written, at most once
    per batch of kernel events (the events themselves are drained and dropped: the caller
    polls its files to see what changed)."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._libc = None if os.environ.get("PDTUI_NO_INOTIFY") else _libc()
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self.wakeups = 0  # batches of events seen (tests, benchmarks)
        if self._libc is not None:
            fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd >= 0:
                self._fd = fd

    @property
    def available(self) -> bool:
        return self._fd >= 0

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start delivering wake-ups on `loop` (call on that loop's thread)."""
        if self._fd >= 0 and self._loop is None:
            self._loop = loop
            loop.add_reader(self._fd, self._drain)

    def watch(self, paths: Iterable[str]) -> None:
        """Watch each existing path (again: a replaced file is a new inode). A path that
        does not exist yet is skipped; the next call picks it up."""
        if self._fd < 0 or self._libc is None:
            return
        for path in paths:
            if self._libc.inotify_add_watch(self._fd, os.fsencode(path), _MASK) < 0:
                errno = ctypes.get_errno()
                if errno == 28:  # ENOSPC: the user's watch limit; polling still works
                    _log.warning("inotify watch limit reached; %s is polled", path)

    def pause(self) -> None:
        """Stop waking the loop; the kernel keeps the events (see resume)."""
        if self._fd >= 0 and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)

    def resume(self, *, discard: bool = False) -> None:
        """Wake the loop again: at once if files were written while paused, unless
        `discard` (the caller reads every file next, so those writes are seen anyway)."""
        if self._fd >= 0 and self._loop is not None and not self._loop.is_closed():
            if discard:
                self._discard()
            self._loop.add_reader(self._fd, self._drain)

    def _discard(self) -> None:
        try:
            while os.read(self._fd, 65536):
                pass
        except OSError:  # BlockingIOError: nothing (more) pending
            pass

    def _drain(self) -> None:
        try:
            while os.read(self._fd, 65536):
                pass
        except BlockingIOError:
            pass
        except OSError:
            return
        self.wakeups += 1
        self._on_change()

    def close(self) -> None:
        if self._fd >= 0:
            if self._loop is not None and not self._loop.is_closed():
                try:
                    self._loop.remove_reader(self._fd)
                except (RuntimeError, ValueError):
                    pass
            os.close(self._fd)
            self._fd = -1
