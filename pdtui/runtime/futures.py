"""Run a blocking job on a thread of its own and hand back a Future of its result."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import TypeVar
from collections.abc import Callable

T = TypeVar("T")


def in_thread(job: Callable[[], T], name: str) -> Future:
    """The job's return value (or exception) lands in the Future; never left hanging."""
    future: Future = Future()
    future.set_running_or_notify_cancel()

    def run() -> None:
        try:
            future.set_result(job())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future
