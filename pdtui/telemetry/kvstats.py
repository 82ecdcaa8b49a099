"""KV-transfer numbers per instance from parsed log events (no textual).

Fed from the log followers' threads (`feed` is thread-safe): a prefiller's
`StoreEvent`s are its transfers to the decoder (tokens, GiB, GB/s, time); a decoder's
`LookupHitEvent`s give tokens hit vs asked (its hit rate) and its `RetrieveEvent`s the
loads. Alarms: hit tokens 0 on a decoder (the transfer was missed), allocation retries
(decoder buffer full), and store throughput far below the link (`link_gbps`, when known).
Rates use the time the line was read, so a log read from the start counts its history
as "now" for the first window.

`pair_view_rows` joins these per-instance numbers with the proxy's per-pair numbers
(`pdtui.telemetry.pairs.PairStats`): each prefiller -> decoder row carries an *estimated*
GB/s — the prefiller's store rate from its log split across its pairs by each pair's
share of the prefiller's requests in the window (LMCache's log lines do not name the
decoder) — and the decoder's own hit rate (per decoder, not per pair).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from pdtui.telemetry.events import Alert, LookupHitEvent, RetrieveEvent, StoreEvent
from pdtui.text import plural

__all__ = ["KvRow", "KvTransferStats", "PairViewRow", "SlowTransfer", "pair_view_rows", "url_namer"]


@dataclass(frozen=True)
class KvRow:
    instance: str
    role: str
    transfers_per_s: float
    gbps: float | None  # GiB moved per second over the window
    stored_tokens: int
    hit_tokens: int
    asked_tokens: int
    hit_rate: float | None
    zero_hits: int
    alloc_retries: int


@dataclass(frozen=True)
class SlowTransfer:
    instance: str
    request_id: str | None
    tokens: int
    duration_ms: float
    throughput_gbps: float | None


class _Instance:
    def __init__(self, role: str) -> None:
        self.role = role
        self.transfers: deque[tuple[float, float]] = deque(maxlen=10_000)  # (time, GiB)
        self.stored = self.hit = self.asked = self.zero_hits = self.alloc_retries = 0
        self.slow_store_gbps: list[float] = []


class KvTransferStats:
    def __init__(self, window_s: float = 30.0, keep_slowest: int = 5, link_gbps: float | None = None,
                 clock=time.time) -> None:
        self.window_s = window_s
        self.keep_slowest = keep_slowest
        self.link_gbps = link_gbps
        self._clock = clock
        self._lock = threading.Lock()
        self._instances: dict[str, _Instance] = {}
        self._recent: deque[SlowTransfer] = deque(maxlen=500)
        self._slow_link = 0

    def feed(self, instance: str, role: str, events) -> None:
        now = self._clock()
        with self._lock:
            state = self._instances.get(instance)
            if state is None:
                state = self._instances[instance] = _Instance(role)
            for event in events:
                if isinstance(event, StoreEvent):
                    state.transfers.append((now, event.size_gib))
                    state.stored += event.tokens
                    self._recent.append(SlowTransfer(instance, event.request_id, event.tokens,
                                                     event.put_ms or event.duration_ms, event.throughput_gbps))
                    if self.link_gbps and event.throughput_gbps < 0.1 * self.link_gbps:
                        self._slow_link += 1
                elif isinstance(event, RetrieveEvent):
                    if event.size_gib is not None:
                        state.transfers.append((now, event.size_gib))
                    if event.duration_ms is not None:
                        self._recent.append(SlowTransfer(instance, event.request_id, event.tokens,
                                                         event.duration_ms, event.throughput_gbps))
                elif isinstance(event, LookupHitEvent):
                    state.hit += event.hit_tokens
                    state.asked += event.total_tokens
                elif isinstance(event, Alert):
                    if event.kind == "decoder_zero_hit":
                        state.zero_hits += 1
                    elif event.kind == "alloc_retry":
                        state.alloc_retries += 1

    def rows(self) -> list[KvRow]:
        now = self._clock()
        out = []
        with self._lock:
            for name, s in sorted(self._instances.items()):
                recent = [(t, g) for t, g in s.transfers if t >= now - self.window_s]
                moved = sum(g for _, g in recent)
                out.append(KvRow(
                    name, s.role, len(recent) / self.window_s, moved / self.window_s if recent else None,
                    s.stored, s.hit, s.asked, s.hit / s.asked if s.asked else None,
                    s.zero_hits, s.alloc_retries))
        return out

    def slowest(self) -> list[SlowTransfer]:
        with self._lock:
            return sorted(self._recent, key=lambda x: -x.duration_ms)[: self.keep_slowest]

    def alarms(self) -> list[str]:
        out = []
        for row in self.rows():
            if row.zero_hits:
                out.append(f"{row.instance}: {plural(row.zero_hits, 'request')} with LMCache hit tokens 0 "
                           "(the KV transfer from the prefiller was missed)")
            if row.alloc_retries:
                out.append(f"{row.instance}: {row.alloc_retries} allocation retries (decoder pd_buffer_size full)")
        if self._slow_link:
            out.append(f"{plural(self._slow_link, 'store')} below 10% of the {self.link_gbps:g} GB/s link")
        return out


@dataclass(frozen=True)
class PairViewRow:
    prefiller: str  # instance name (or the backend URL when no instance has its port)
    decoder: str
    requests_per_s: float
    requests: int
    prefill_p50_ms: float | None
    kv_wait_p50_ms: float | None
    kv_wait_p99_ms: float | None
    errors: int
    timeouts: int
    est_gbps: float | None  # the prefiller's store GB/s x this pair's share of its requests
    decoder_hit_rate: float | None  # the decoder's, from its log


def url_namer(ports: Mapping[int, str]) -> Callable[[str], str]:
    """Backend URL -> instance name by port (the proxy may say localhost where we say 127.0.0.1)."""

    def name(url: str) -> str:
        try:
            port = urlsplit(url).port
        except ValueError:
            return url
        return ports.get(port, url) if port is not None else url

    return name


def pair_view_rows(kv_rows: list[KvRow], pair_rows, name: Callable[[str], str]) -> list[PairViewRow]:
    """One row per prefiller -> decoder pair (`PairStats.pairs()`), with the log numbers."""
    by_instance = {r.instance: r for r in kv_rows}
    per_prefiller: dict[str, int] = {}
    for p in pair_rows:
        per_prefiller[p.prefiller] = per_prefiller.get(p.prefiller, 0) + p.window_requests
    out = []
    for p in pair_rows:
        p_name, d_name = name(p.prefiller), name(p.decoder)
        p_row, d_row = by_instance.get(p_name), by_instance.get(d_name)
        total = per_prefiller[p.prefiller]
        est = None
        if p_row is not None and p_row.gbps is not None and total:
            est = p_row.gbps * p.window_requests / total
        out.append(PairViewRow(p_name, d_name, p.requests_per_s, p.requests, p.prefill_p50_ms,
                               p.kv_wait_p50_ms, p.kv_wait_p99_ms, p.errors, p.timeouts, est,
                               d_row.hit_rate if d_row is not None else None))
    return out
