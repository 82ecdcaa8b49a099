"""The KV-transfer view: per prefiller -> decoder pair (from the proxy's /events, when a
`PairStats` is given), per instance (from the engines' logs), the slowest recent
transfers and hand-offs, and alarms.

The pair rows' GB/s is an estimate, labelled so: the prefiller's store GB/s from its log
split by the pair's share of its requests (LMCache's lines do not name the decoder); the
per-instance table below shows the measured GB/s.
"""

from __future__ import annotations

import re

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from collections.abc import Callable

from pdtui.telemetry.pairs import PairStats
from pdtui.telemetry.kvstats import KvTransferStats, pair_view_rows

__all__ = ["KvTransferView", "short_request_ids"]

_HEX_ID = re.compile(r"[0-9a-f]{16,}")  # the random part of a request id (vLLM's cmpl-<hex>-0-<hex>, the proxy's <hex>)


def short_request_ids(ids: list[str], min_length: int = 8) -> dict[str, str]:
    """Each request id -> its short form for narrow screens, git-style: the start of its
    random hex part, as long as it takes to tell the ids apart (at least `min_length`).
    One request keeps one short form in every table: the prefiller's and the decoder's
    `cmpl-<hex>-0-<suffix>` and the proxy's `<hex>` all become `<hex>[:n]`; ids without a
    hex part stay whole."""
    cores = {full: (found.group(0) if (found := _HEX_ID.search(full)) else full) for full in set(ids)}
    distinct = {core for full, core in cores.items() if core != full or _HEX_ID.fullmatch(full)}
    length = min_length
    longest = max((len(c) for c in distinct), default=0)
    while length < longest and len({c[:length] for c in distinct}) < len(distinct):
        length += 1
    short: dict[str, str] = {}
    for full, core in cores.items():
        short[full] = core[:length] if core in distinct else full
    return short


def _num(value: float | None, fmt: str) -> str:
    return "N/A" if value is None else format(value, fmt)


def _ms(value: float | None) -> str:
    return "N/A" if value is None else f"{value:.1f} ms" if value >= 1 else f"{value:.3f} ms"


def _pct(value: float | None) -> str:
    return "N/A" if value is None else f"{value * 100:.1f}%"


class KvTransferView(Static):
    DEFAULT_CSS = "KvTransferView { height: auto; padding: 0 1; }"

    def __init__(self, stats: KvTransferStats, id: str | None = None, *, pairs: PairStats | None = None,
                 name: Callable[[str], str] = lambda url: url,
                 source_status: Callable[[], str | None] | None = None) -> None:
        super().__init__("", id=id)
        self.stats = stats
        self.pairs = pairs
        self.url_name = name  # backend URL -> instance name
        self.shown: Group | None = None  # the last rendered Group
        self.source_status = source_status  # e.g. "proxy /events: reconnecting (...)"

    def on_mount(self) -> None:
        self.refresh_view()
        self.set_interval(1.0, self.refresh_view)

    @property
    def narrow(self) -> bool:
        """Under 120 columns: fewer, shorter columns so that names are never cut."""
        return 0 < (self.size.width or self.app.size.width) < 120

    def _pair_parts(self, pairs: PairStats) -> list:
        rows = pair_view_rows(self.stats.rows(), pairs.pairs(), self.url_name)
        narrow = self.narrow
        title = ("P → D (proxy /events, last %gs; est. GB/s: P's store GB/s × pair's share)" if narrow else
                 "prefiller → decoder (proxy /events, last %gs; est. GB/s = P's store GB/s × "
                 "pair's share of P's requests)") % pairs.window_s
        table = Table(title=title, expand=True,
                      caption=None if rows else "no requests through the proxy yet", caption_justify="left")
        names = [f"{r.prefiller} → {r.decoder}" for r in rows]
        columns = (("P → D", "req/s", "kv p50", "kv p99", "err", "est GB/s", "D hit") if narrow else
                   ("P → D", "req/s", "reqs", "prefill p50", "kv_wait p50", "kv_wait p99",
                    "err", "timeout", "est. GB/s", "D hit rate"))
        for column in columns:
            table.add_column(column, justify="left" if column == "P → D" else "right", no_wrap=True,
                             min_width=max([len(n) for n in names] + [5]) if column == "P → D" else None)
        for name, r in zip(names, rows):
            if narrow:
                table.add_row(name, f"{r.requests_per_s:.2f}", _ms(r.kv_wait_p50_ms), _ms(r.kv_wait_p99_ms),
                              str(r.errors + r.timeouts), _num(r.est_gbps, ".2f"), _pct(r.decoder_hit_rate))
            else:
                table.add_row(name, f"{r.requests_per_s:.2f}", str(r.requests),
                              _ms(r.prefill_p50_ms), _ms(r.kv_wait_p50_ms), _ms(r.kv_wait_p99_ms),
                              str(r.errors), str(r.timeouts), _num(r.est_gbps, ".3f"), _pct(r.decoder_hit_rate))
        parts: list = [table]
        status = self.source_status() if self.source_status else None
        if status:
            parts.append(Text(status, style="yellow"))
        return parts

    def _handoff_table(self, handoffs: list, request: dict[str, str]) -> Table:
        slow = Table(title="slowest recent KV hand-offs (proxy kv_wait)", expand=True)
        for column in ("P → D", "request", "kv_wait ms", "outcome"):
            slow.add_column(column, no_wrap=True)
        for h in handoffs:
            slow.add_row(f"{self.url_name(h.prefiller)} → {self.url_name(h.decoder)}", request.get(h.req_id, h.req_id),
                         f"{h.kv_wait_ms:.3f}", "ok" if h.ok else "error")
        return slow

    def refresh_view(self) -> None:
        rows = self.stats.rows()
        table = Table(title="KV transfer (log lines, last %gs)" % self.stats.window_s, expand=True,
                      caption=None if rows else "no KV-transfer lines yet", caption_justify="left")
        headers = (("instance", "role", "xfer/s", "GB/s", "stored", "hit tok", "hit %", "zero", "retry")
                   if self.narrow else
                   ("instance", "role", "xfer/s", "GB/s", "stored tok", "hit tok", "hit rate", "zero hits", "alloc retry"))
        name_width = max([len(r.instance) for r in rows] + [8])
        for column in headers:
            table.add_column(column, justify="left" if column in ("instance", "role") else "right", no_wrap=True,
                             min_width=name_width if column == "instance" else None)
        for r in rows:
            table.add_row(r.instance, r.role[0].upper() if self.narrow else r.role, f"{r.transfers_per_s:.2f}",
                          _num(r.gbps, ".3f"), str(r.stored_tokens),
                          str(r.hit_tokens), _num(None if r.hit_rate is None else r.hit_rate * 100, ".1f") + ("%" if r.hit_rate is not None else ""),
                          str(r.zero_hits), str(r.alloc_retries))
        transfers = self.stats.slowest()
        handoffs = self.pairs.slowest() if self.pairs is not None else []
        ids = [t.request_id for t in transfers if t.request_id] + [h.req_id for h in handoffs]
        # Under 120 columns whole ids (40+ characters) would be cut: a short form that still
        # tells them apart, the same for one request in both tables.
        request = short_request_ids(ids) if self.narrow else {i: i for i in ids}
        slow = Table(title="slowest recent transfers" + (" (request: short id)" if self.narrow else ""), expand=True)
        for column in ("instance", "request", "tokens", "ms", "GB/s"):
            slow.add_column(column, no_wrap=True)
        for t in transfers:
            slow.add_row(t.instance, request.get(t.request_id, t.request_id) if t.request_id else "-", str(t.tokens),
                         f"{t.duration_ms:.1f}", _num(t.throughput_gbps, ".2f"))
        alarms = self.stats.alarms()
        if self.pairs is not None:
            alarms = self.pairs.alarms(self.url_name) + alarms
        alarm_text = Text("\n".join("! " + a for a in alarms) if alarms else "no alarms", style="bold red" if alarms else "green")
        if self.pairs is None:
            shown = Group(table, slow, alarm_text)
        else:
            shown = Group(*self._pair_parts(self.pairs), table, slow, self._handoff_table(handoffs, request), alarm_text)
        self.shown = shown
        self.update(shown)  # `shown` kept so tests can render it as plain text
