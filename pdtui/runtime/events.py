"""The event stream the UI (or the CLI) subscribes to.

Callbacks run on a supervisor thread: a Textual app hands them to its own loop with
`app.call_from_thread(...)` (or reads `subscribe_queue()` from a worker). A slow or
failing subscriber never breaks the supervisor: exceptions are logged and dropped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Union
from collections.abc import Callable

from pdtui.runtime.status import InstanceState, InstanceStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StateChanged:
    run_name: str
    name: str
    status: InstanceStatus
    previous: InstanceState
    time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class ReadinessProgress:
    run_name: str
    name: str
    milestone: str  # pdtui.telemetry.events.MILESTONE_KINDS
    detail: str
    elapsed_s: float | None  # since the process was started; None when unknown (re-attach)
    time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class LogLines:
    run_name: str
    name: str
    lines: tuple[str, ...]  # complete lines without the newline, in file order
    time: float = field(default_factory=time.time)


DEPLOYMENT_EVENT_KINDS = (
    "preflight_failed",
    "ready",
    "failed",
    "stopped",
    "detached",
    "attached",
    "instance_crashed",
    "auto_restart",
)


@dataclass(frozen=True)
class DeploymentEvent:
    run_name: str
    kind: str  # one of DEPLOYMENT_EVENT_KINDS
    message: str
    time: float = field(default_factory=time.time)


Event = Union[StateChanged, ReadinessProgress, LogLines, DeploymentEvent]
Callback = Callable[[Event], None]


class EventBus:
    """Fan-out of events to callbacks and bounded queues; safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[Callback] = []
        self._without_lines: list[Callback] = []  # subscribers that take no LogLines

    def subscribe(self, callback: Callback, *, log_lines: bool = True) -> Callable[[], None]:
        """log_lines=False: every event but LogLines (the supervisor reads a ready
        instance's log only while some subscriber takes its lines)."""
        with self._lock:
            self._callbacks.append(callback)
            if not log_lines:
                self._without_lines.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)
                if callback in self._without_lines:
                    self._without_lines.remove(callback)

        return unsubscribe

    @property
    def wants_log_lines(self) -> bool:
        with self._lock:
            return len(self._callbacks) > len(self._without_lines)

    def subscribe_queue(self, maxsize: int = 10000) -> queue.Queue[Event]:
        q: queue.Queue[Event] = queue.Queue(maxsize=maxsize)

        def put(event: Event) -> None:
            try:
                q.put_nowait(event)
            except queue.Full:
                # A reader that fell behind loses old events rather than stalling the
                # supervisor; state is still available from Supervisor.status().
                try:
                    q.get_nowait()
                except queue.Empty:
                    pass
                try:
                    q.put_nowait(event)
                except queue.Full:
                    pass

        self.subscribe(put)
        return q

    def publish(self, event: Event) -> None:
        with self._lock:
            callbacks = list(self._callbacks)
            if isinstance(event, LogLines):
                callbacks = [c for c in callbacks if c not in self._without_lines]
        for callback in callbacks:
            try:
                callback(event)
            except Exception:  # a subscriber's bug must not stop the supervisor
                log.exception("event subscriber %r failed", callback)
