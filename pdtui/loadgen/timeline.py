"""The proxy's per-request timeline (`GET /events`, JSON lines) for one request.

Events: `{"type": "stage", req_id, route, stage, state: start|end|error, backend, ts,
elapsed_ms[, detail]}`; stages include request, route, tokenize, prefill, kv_wait,
decode_ttft, ttft, decode, total. The stream replays the proxy's kept history first, then
follows live, so one read finds a request that has already finished.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import aiohttp

__all__ = ["StageEvent", "fetch_timeline", "parse_event_line", "stage_durations"]


@dataclass(frozen=True, slots=True)
class StageEvent:
    req_id: str
    stage: str
    state: str  # start | end | error
    elapsed_ms: float
    backend: str | None = None
    detail: object = None


def parse_event_line(line: bytes | str) -> StageEvent | None:
    """One JSON line of /events; None for heartbeats, drop notices and junk."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or obj.get("type") != "stage":
        return None
    try:
        return StageEvent(str(obj["req_id"]), str(obj["stage"]), str(obj["state"]),
                          float(obj.get("elapsed_ms") or 0.0), obj.get("backend"), obj.get("detail"))
    except (KeyError, TypeError, ValueError):
        return None


async def fetch_timeline(session: aiohttp.ClientSession, proxy_url: str, req_id: str,
                         timeout_s: float = 10.0) -> list[StageEvent]:
    """The stage events of `req_id`, up to its final `request` event (or what came before timeout)."""
    events: list[StageEvent] = []
    deadline = time.monotonic() + timeout_s
    url = proxy_url.rstrip("/") + "/events"
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            if resp.status != 200:
                raise RuntimeError(f"GET {url} answered HTTP {resp.status}")
            while time.monotonic() < deadline:
                raw = await asyncio.wait_for(resp.content.readline(), max(0.05, deadline - time.monotonic()))
                if not raw:
                    break
                event = parse_event_line(raw)
                if event is None or event.req_id != req_id:
                    continue
                events.append(event)
                if event.stage == "request" and event.state != "start":
                    break
    except asyncio.TimeoutError:
        pass
    return events


def stage_durations(events: list[StageEvent]) -> list[tuple[str, float, float, str]]:
    """(stage, start_ms, end_ms, state) per finished stage, in the order the stages ended.

    A point stage (one `end` without `start`, e.g. ttft) spans 0 .. its elapsed time.
    """
    starts: dict[str, float] = {}
    out = []
    for e in events:
        if e.state == "start":
            starts[e.stage] = e.elapsed_ms
        elif e.stage != "request" or e.state == "error":
            begin = starts.pop(e.stage, 0.0)
            if isinstance(e.detail, dict) and "seconds" in e.detail:
                try:
                    begin = max(0.0, e.elapsed_ms - float(e.detail["seconds"]) * 1000.0)
                except (TypeError, ValueError):
                    pass
            out.append((e.stage, begin, e.elapsed_ms, e.state))
    return out
