"""Per-request timelines for GET /events: stage start/end events, kept and streamed.

Each event is a flat dict (one JSON line): req_id, route, stage, state
(start|end|error), backend, ts (unix seconds), elapsed_ms since the request
arrived, and an optional detail. The hub keeps the last N finished timelines
plus the ones in flight, and fans events out to subscribers through bounded
queues: a slow reader loses events (and is told how many), it never grows memory.
A request's events are kept as small tuples and become dicts only when read (a
subscriber, GET /events' history): ~14 events per request, most never read.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from typing import Any


class Subscriber:
    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[dict] = asyncio.Queue(maxsize)
        self.dropped = 0
        # Set when the proxy stops: a reader's stream ends at once instead of holding
        # the shutdown until its next heartbeat (or aiohttp's shutdown timeout).
        self.closed = asyncio.Event()

    def offer(self, event: dict) -> None:
        if self.dropped:
            # Tell the reader what it missed as soon as there is room again.
            if self.queue.maxsize - self.queue.qsize() >= 2:
                self.queue.put_nowait({"type": "dropped", "count": self.dropped, "ts": time.time()})
                self.dropped = 0
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1


class TimelineHub:
    def __init__(self, history: int = 200, max_in_flight: int = 10_000,
                 max_events_per_request: int = 64) -> None:
        self._finished: deque[list[dict]] = deque(maxlen=max(history, 0))
        self._in_flight: OrderedDict[str, list[dict]] = OrderedDict()
        self._max_in_flight = max_in_flight
        self._max_events = max_events_per_request
        self._subscribers: set[Subscriber] = set()

    def subscribe(self, maxsize: int = 4096) -> Subscriber:
        sub = Subscriber(maxsize)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def close(self) -> None:
        """End every subscriber's stream (the proxy is stopping)."""
        for sub in self._subscribers:
            sub.closed.set()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def history(self) -> list[dict]:
        """Events of the kept finished timelines, then of those in flight, oldest first."""
        events = [_as_event(e) for timeline in self._finished for e in timeline]
        events.extend(_as_event(e) for timeline in self._in_flight.values() for e in timeline)
        return events

    def finished_timelines(self) -> list[list[dict]]:
        return [[_as_event(e) for e in timeline] for timeline in self._finished]

    def emit(self, event: dict) -> None:
        self._keep(event["req_id"], event,
                   event["stage"] == "request" and event["state"] != "start")
        for sub in self._subscribers:
            sub.offer(event)

    def record(self, req_id: str, rec: tuple, ends_request: bool) -> None:
        """A request's stage event as RequestTimeline makes it (see _as_event)."""
        self._keep(req_id, rec, ends_request)
        if self._subscribers:
            event = _as_event(rec)
            for sub in self._subscribers:
                sub.offer(event)

    def _keep(self, req_id: str, item, ends_request: bool) -> None:
        timeline = self._in_flight.get(req_id)
        if timeline is None:
            timeline = self._in_flight[req_id] = []
            while len(self._in_flight) > self._max_in_flight:
                self._in_flight.popitem(last=False)
        if len(timeline) < self._max_events:
            timeline.append(item)
        if ends_request:
            self._in_flight.pop(req_id, None)
            if self._finished.maxlen:
                self._finished.append(timeline)


def _as_event(item) -> dict:
    """The JSON-line form of a kept event: dicts as they are, a RequestTimeline's
    (timeline, stage, state, backend, detail, perf_counter time) tuples made into one."""
    if isinstance(item, dict):
        return item
    tl, stage, state, backend, detail, now = item
    event = {
        "type": "stage",
        "req_id": tl.req_id,
        "route": tl.route,
        "stage": stage,
        "state": state,
        "backend": backend,
        "ts": tl.ts0 + (now - tl.t0),
        "elapsed_ms": round((now - tl.t0) * 1000.0, 3),
    }
    if detail is not None:
        event["detail"] = detail
    return event


class RequestTimeline:
    """The events of one request, with stage timings kept for the metrics."""

    __slots__ = ("hub", "req_id", "route", "t0", "ts0", "durations", "_starts")

    def __init__(self, hub: TimelineHub, req_id: str, route: str) -> None:
        self.hub = hub
        self.req_id = req_id
        self.route = route
        self.t0 = time.perf_counter()
        self.ts0 = time.time()
        self.durations: dict[str, float] = {}
        self._starts: dict[str, float] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def _emit(self, stage: str, state: str, backend: str | None, detail: Any, now: float) -> None:
        self.hub.record(self.req_id, (self, stage, state, backend, detail, now),
                        stage == "request" and state != "start")

    def start(self, stage: str, backend: str | None = None, detail: Any = None) -> None:
        now = time.perf_counter()
        self._starts[stage] = now
        self._emit(stage, "start", backend, detail, now)

    def end(self, stage: str, backend: str | None = None, detail: Any = None,
            state: str = "end") -> float:
        now = time.perf_counter()
        began = self._starts.pop(stage, self.t0)
        self.durations[stage] = now - began
        self._emit(stage, state, backend, detail, now)
        return now - began

    def record(self, stage: str, seconds: float, backend: str | None = None) -> None:
        """A stage measured elsewhere (e.g. the decoder's time to first event)."""
        now = time.perf_counter()
        self.durations[stage] = seconds
        self._emit(stage, "end", backend, {"seconds": round(seconds, 6)}, now)

    def mark(self, stage: str, backend: str | None = None, detail: Any = None) -> float:
        """A point event measured from the request's arrival (e.g. end-to-end TTFT)."""
        now = time.perf_counter()
        self.durations[stage] = now - self.t0
        self._emit(stage, "end", backend, detail, now)
        return now - self.t0
