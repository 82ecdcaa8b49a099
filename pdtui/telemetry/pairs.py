"""Per prefiller -> decoder pair numbers from the proxy's `GET /events` stage events.

    stats = PairStats(window_s=30)
    stats.feed(event_dict)            # or stats.feed_line(raw_json_line); thread-safe
    stats.pairs() -> list[PairRow]    # one row per (prefiller URL, decoder URL)
    stats.slowest() -> list[SlowHandoff]
    stats.alarms() -> list[str]

Which pair served a request: the `route` end event's detail `{prefiller, decoder}`; when a
proxy does not send it, the `prefill` stage's backend is the prefiller and the
`decode`/`decode_ttft` stage's backend the decoder (or `kv_wait`'s detail.decoder). A
request is counted when its final `request` end/error event arrives (it follows `total`
and carries the outcome). `kv_wait`'s elapsed time is the KV hand-off wait.

Windows use the proxy's own event `ts` (wall clock) against `clock()`, so a recorded
stream gives exact numbers with a fixed clock. The quantiles are over the last
`keep_recent` finished requests of a pair (not only the window), so an idle pair still
shows what its last requests looked like. Memory is bounded: open requests, finished
ids remembered for de-duplication (the stream replays its history on every reconnect),
per-pair history and the slow list all have caps.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from pdtui.telemetry.derive import percentile
from pdtui.text import plural

__all__ = ["PairRow", "PairStats", "SlowHandoff"]

_DECODE_STAGES = ("decode", "decode_ttft")


@dataclass(frozen=True)
class PairRow:
    prefiller: str  # backend URL as the proxy names it
    decoder: str
    requests: int  # finished requests, all time
    requests_per_s: float  # finished in the window / window_s
    window_requests: int
    prefill_p50_ms: float | None
    kv_wait_p50_ms: float | None
    kv_wait_p99_ms: float | None
    errors: int  # requests with a stage in `error` state or a non-ok outcome
    timeouts: int  # outcome "timeout" (a stage wait ran out)
    last_error: str | None  # "stage: message" of the latest error


@dataclass(frozen=True)
class SlowHandoff:
    req_id: str
    prefiller: str
    decoder: str
    kv_wait_ms: float
    ts: float
    ok: bool


@dataclass
class _Open:
    prefiller: str | None = None
    decoder: str | None = None
    prefill_start: float | None = None
    prefill_ms: float | None = None
    kv_start: float | None = None
    kv_wait_ms: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class _Done:
    ts: float
    ok: bool
    timeout: bool
    prefill_ms: float | None
    kv_wait_ms: float | None


class _Pair:
    def __init__(self, keep: int) -> None:
        self.done: deque[_Done] = deque(maxlen=keep)
        self.requests = self.errors = self.timeouts = 0
        self.last_error: str | None = None


def _url(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class PairStats:
    def __init__(self, window_s: float = 30.0, keep_slowest: int = 5, keep_recent: int = 500,
                 max_open: int = 5000, max_pairs: int = 256, clock=time.time) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s!r}")
        self.window_s = window_s
        self.keep_slowest = keep_slowest
        self.keep_recent = keep_recent
        self.max_open = max_open
        self.max_pairs = max_pairs
        self._clock = clock
        self._lock = threading.Lock()
        self._open: OrderedDict[str, _Open] = OrderedDict()
        self._closed: OrderedDict[str, None] = OrderedDict()  # finished ids, for replays
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._handoffs: deque[SlowHandoff] = deque(maxlen=1000)
        self.unpaired_errors = 0  # failed before a pair was chosen (e.g. no healthy backend)
        self.dropped = 0  # events the proxy says this reader lost
        self.bad_lines = 0

    # -- input -------------------------------------------------------------------------

    def feed_line(self, line: bytes | str) -> None:
        """One JSON line of /events; heartbeats and junk are skipped (junk is counted)."""
        if isinstance(line, bytes):
            line = line.decode("utf-8", errors="replace")
        line = line.strip()
        if not line:
            return
        if line.startswith("data:"):  # the SSE spelling of the same stream
            line = line[5:].strip()
        try:
            event = json.loads(line)
        except ValueError:
            with self._lock:
                self.bad_lines += 1
            return
        if isinstance(event, dict):
            self.feed(event)

    def feed(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "dropped":
            with self._lock:
                try:
                    self.dropped += int(event.get("count") or 0)
                except (TypeError, ValueError):
                    self.bad_lines += 1
            return
        if kind != "stage":
            return
        req_id, stage, state = event.get("req_id"), event.get("stage"), event.get("state")
        if not isinstance(req_id, str) or not isinstance(stage, str) or state not in ("start", "end", "error"):
            with self._lock:
                self.bad_lines += 1
            return
        try:
            elapsed = float(event.get("elapsed_ms") or 0.0)
            ts = float(event.get("ts") or self._clock())
        except (TypeError, ValueError):
            with self._lock:
                self.bad_lines += 1
            return
        backend = _url(event.get("backend"))
        raw_detail = event.get("detail")
        detail = raw_detail if isinstance(raw_detail, dict) else {}
        with self._lock:
            if req_id in self._closed:
                return
            req = self._open.get(req_id)
            if req is None:
                req = self._open[req_id] = _Open()
                while len(self._open) > self.max_open:
                    self._open.popitem(last=False)
            if stage == "route" and state == "end":
                req.prefiller = _url(detail.get("prefiller")) or req.prefiller
                req.decoder = _url(detail.get("decoder")) or req.decoder
            elif stage == "prefill":
                req.prefiller = req.prefiller or backend
                req.decoder = req.decoder or _url(detail.get("decoder"))
                if state == "start":
                    req.prefill_start = elapsed
                elif req.prefill_start is not None:
                    req.prefill_ms = elapsed - req.prefill_start
            elif stage == "kv_wait":
                req.prefiller = req.prefiller or backend
                req.decoder = req.decoder or _url(detail.get("decoder"))
                if state == "start":
                    req.kv_start = elapsed
                elif req.kv_start is not None:
                    req.kv_wait_ms = elapsed - req.kv_start
            elif stage in _DECODE_STAGES:
                req.decoder = req.decoder or backend
            if state == "error" and stage != "request" and req.error is None:
                req.error = f"{stage}: {detail.get('error') or 'failed'}"
            if stage == "request" and state != "start":
                del self._open[req_id]
                self._closed[req_id] = None
                while len(self._closed) > self.max_open:
                    self._closed.popitem(last=False)
                self._finish(req_id, req, ts, state, str(detail.get("outcome") or ""))

    def _finish(self, req_id: str, req: _Open, ts: float, state: str, outcome: str) -> None:
        ok = state == "end" and req.error is None and outcome in ("", "ok")
        if req.prefiller is None or req.decoder is None:
            if not ok:
                self.unpaired_errors += 1
            return
        key = (req.prefiller, req.decoder)
        pair = self._pairs.get(key)
        if pair is None:
            if len(self._pairs) >= self.max_pairs:
                return
            pair = self._pairs[key] = _Pair(self.keep_recent)
        timeout = outcome == "timeout"
        pair.done.append(_Done(ts, ok, timeout, req.prefill_ms, req.kv_wait_ms))
        pair.requests += 1
        if not ok:
            pair.errors += 1
            pair.last_error = req.error or f"request: {outcome or 'error'}"
        if timeout:
            pair.timeouts += 1
        if req.kv_wait_ms is not None:
            self._handoffs.append(SlowHandoff(req_id, req.prefiller, req.decoder, req.kv_wait_ms, ts, ok))

    # -- output ------------------------------------------------------------------------

    def pairs(self) -> list[PairRow]:
        since = self._clock() - self.window_s
        out = []
        with self._lock:
            for (p, d), pair in sorted(self._pairs.items()):
                recent = sum(1 for x in pair.done if x.ts >= since)
                prefill = [x.prefill_ms for x in pair.done if x.prefill_ms is not None]
                kv = [x.kv_wait_ms for x in pair.done if x.kv_wait_ms is not None]
                out.append(PairRow(p, d, pair.requests, recent / self.window_s, recent,
                                   percentile(prefill, 0.5), percentile(kv, 0.5), percentile(kv, 0.99),
                                   pair.errors, pair.timeouts, pair.last_error))
        return out

    def slowest(self) -> list[SlowHandoff]:
        """The longest KV hand-off waits among the last 1000 finished requests."""
        with self._lock:
            return sorted(self._handoffs, key=lambda h: -h.kv_wait_ms)[: self.keep_slowest]

    def open_requests(self) -> int:
        with self._lock:
            return len(self._open)

    def alarms(self, name=lambda url: url) -> list[str]:
        """Per-pair failures, and a pair that stopped serving while its peers serve.

        `name(url)` turns a backend URL into what the user calls it (an instance name).
        """
        out = []
        rows = self.pairs()
        busy = any(r.window_requests for r in rows)
        for r in rows:
            label = f"{name(r.prefiller)} → {name(r.decoder)}"
            if r.timeouts:
                out.append(f"{label}: {plural(r.timeouts, 'request')} timed out (last: {r.last_error})")
            if r.errors > r.timeouts:
                out.append(f"{label}: {plural(r.errors - r.timeouts, 'request')} failed (last: {r.last_error})")
            if busy and not r.window_requests and r.requests:
                out.append(f"{label}: no requests in the last {self.window_s:g} s while other pairs serve")
        if self.unpaired_errors:
            out.append(f"{plural(self.unpaired_errors, 'request')} failed before a prefiller/decoder pair was chosen")
        if self.dropped:
            out.append(f"the proxy dropped {plural(self.dropped, 'event')} for this reader (numbers are partial)")
        return out
