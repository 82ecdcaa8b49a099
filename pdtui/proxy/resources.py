"""Process resources of the proxy: its open-files limit, and giving memory back.

File descriptors: the proxy raises its soft RLIMIT_NOFILE to the hard limit at start,
then splits what it has: a reserve for its own needs (ZMQ, log, health checks), and the
rest between client connections and backend connections (one or two per request in
flight). Capping client connections there is what keeps an idle-connection flood from
starving its health checks and backend calls.

Memory: a huge request (a 10 MB prompt becomes millions of token ids, several copies
of JSON) leaves glibc's heap grown after it is freed; malloc_trim(0) hands the free
pages back. It runs at most once a second, after a large request, off the hot path.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# ZMQ, the log, health checks, and the accept burst: asyncio accepts up to ACCEPT_BACKLOG
# sockets in one go before the guard sees (and closes) any of them.
ACCEPT_BACKLOG = 128
FD_RESERVE = 2 * ACCEPT_BACKLOG + 128
NOFILE_TARGET = 1 << 20


def raise_nofile_limit() -> int:
    """Raise the soft open-files limit toward the hard one; returns the soft limit now."""
    try:
        import resource
    except ImportError:  # not POSIX
        return 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = NOFILE_TARGET if hard == resource.RLIM_INFINITY else min(hard, NOFILE_TARGET)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit from %d to %d: %s",
                        soft, target, exc)
    return soft if soft != resource.RLIM_INFINITY else NOFILE_TARGET


def client_connection_budget(requested: int, nofile: int) -> int:
    """Client connections allowed: the request, within what the fd limit can carry (each
    busy client connection can hold one more to a backend)."""
    fit = max((nofile - FD_RESERVE) // 2, 16)
    return min(requested, fit)


class MemoryTrimmer:
    """Calls glibc's malloc_trim(0) after large requests, at most once per `min_gap_s`."""

    LARGE_BYTES = 1 << 20

    def __init__(self, min_gap_s: float = 1.0) -> None:
        self._trim = _malloc_trim()
        self._gap = min_gap_s
        self._handle: asyncio.TimerHandle | None = None
        self.trims = 0

    def after_request(self, body_bytes: int) -> None:
        if self._trim is None or body_bytes < self.LARGE_BYTES or self._handle is not None:
            return
        self._handle = asyncio.get_running_loop().call_later(self._gap, self._run)

    def _run(self) -> None:
        self._handle = None
        import gc

        gc.collect()
        self._trim(0)
        self.trims += 1

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def _malloc_trim():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn
