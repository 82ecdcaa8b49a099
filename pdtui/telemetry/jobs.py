"""Background jobs of a deployment (a load run): coroutines on the monitor's loop.

    job = jobs.start("load", lambda job: run_load(url, spec, on_result=job.count))
    job.done, job.completed, job.failed, job.result, job.error
    job.cancel()

A job belongs to the deployment, not to the screen that started it: leaving the screen
does not cancel it; `cancel()` (or the monitor's stop) does. One job per name at a time;
the finished one stays readable until the next of that name starts, so a screen that
comes back finds the result. Counters are plain ints written by the loop's thread and
read by the UI (a torn read is impossible for an int under the GIL).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["BackgroundJobs", "Job", "JobBusy"]


class JobBusy(RuntimeError):
    """A job of that name is still running."""


class Job:
    def __init__(self, name: str, detail: str = "") -> None:
        self.name = name
        self.detail = detail  # what was asked, for the screen ("20 requests, 4 at a time")
        self.started_at = time.time()
        self.finished_at: float | None = None
        self.completed = 0
        self.failed = 0
        self.total: int | None = None
        self.result: Any = None
        self.error: str | None = None
        self.cancelled = False
        self._future: concurrent.futures.Future[Any] | None = None

    def count(self, _index: object = None, result: object = None) -> None:
        """Progress callback: one unit done (`result.ok` False counts as failed)."""
        self.completed += 1
        if result is not None and not getattr(result, "ok", True):
            self.failed += 1

    @property
    def done(self) -> bool:
        return self.finished_at is not None

    def cancel(self) -> None:
        if self._future is not None and not self._future.done():
            self.cancelled = True
            self._future.cancel()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until finished (tests, the headless CLI); True when it finished."""
        future = self._future
        if future is None:
            return self.done
        try:
            future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            return False
        except BaseException:  # noqa: BLE001 - recorded in self.error
            pass
        return True


def _mark_finished(job: Job) -> None:
    # A job cancelled before its coroutine ran never reaches its own `finally`.
    if job.finished_at is None:
        job.error = job.error or "stopped"
        job.finished_at = time.time()


class BackgroundJobs:
    def __init__(self, loop_getter: Callable[[], asyncio.AbstractEventLoop | None]) -> None:
        self._loop_getter = loop_getter
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}

    def get(self, name: str) -> Job | None:
        return self._jobs.get(name)

    def running(self) -> list[Job]:
        return [j for j in self._jobs.values() if not j.done]

    def start(self, name: str, factory: Callable[[Job], Awaitable[Any]], *, detail: str = "",
              total: int | None = None) -> Job:
        loop = self._loop_getter()
        if loop is None or loop.is_closed():
            raise RuntimeError("the deployment monitor is not running")
        with self._lock:
            current = self._jobs.get(name)
            if current is not None and not current.done:
                raise JobBusy(f"a {name} run is still going ({current.completed} done); stop it first")
            job = self._jobs[name] = Job(name, detail)
        job.total = total

        async def run() -> Any:
            try:
                job.result = await factory(job)
                return job.result
            except asyncio.CancelledError:
                job.error = "stopped"
                raise
            except Exception as exc:  # reported on the job, never lost
                job.error = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                job.finished_at = time.time()

        job._future = asyncio.run_coroutine_threadsafe(run(), loop)
        job._future.add_done_callback(lambda _f: _mark_finished(job))
        return job

    def cancel_all(self) -> None:
        for job in list(self._jobs.values()):
            job.cancel()
