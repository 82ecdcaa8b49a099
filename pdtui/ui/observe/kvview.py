"""The KV-transfer view: a table per instance, the slowest recent transfers, alarms."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from pdtui.ui.observe.kvstats import KvTransferStats

__all__ = ["KvTransferView"]


def _num(value: float | None, fmt: str) -> str:
    return "N/A" if value is None else format(value, fmt)


class KvTransferView(Static):
    DEFAULT_CSS = "KvTransferView { height: auto; padding: 0 1; }"

    def __init__(self, stats: KvTransferStats, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.stats = stats

    def on_mount(self) -> None:
        self.refresh_view()
        self.set_interval(1.0, self.refresh_view)

    def refresh_view(self) -> None:
        table = Table(title="KV transfer (log lines, last %gs)" % self.stats.window_s, expand=True)
        for column in ("instance", "role", "xfer/s", "GB/s", "stored tok", "hit tok", "hit rate", "zero hits", "alloc retry"):
            table.add_column(column, justify="left" if column in ("instance", "role") else "right")
        rows = self.stats.rows()
        for r in rows:
            table.add_row(r.instance, r.role, f"{r.transfers_per_s:.2f}", _num(r.gbps, ".3f"), str(r.stored_tokens),
                          str(r.hit_tokens), _num(None if r.hit_rate is None else r.hit_rate * 100, ".1f") + ("%" if r.hit_rate is not None else ""),
                          str(r.zero_hits), str(r.alloc_retries))
        if not rows:
            table.add_row("no KV-transfer lines yet", "", "", "", "", "", "", "", "")
        slow = Table(title="slowest recent transfers", expand=True)
        for column in ("instance", "request", "tokens", "ms", "GB/s"):
            slow.add_column(column)
        for s in self.stats.slowest():
            slow.add_row(s.instance, s.request_id or "-", str(s.tokens), f"{s.duration_ms:.1f}", _num(s.throughput_gbps, ".2f"))
        alarms = self.stats.alarms()
        alarm_text = Text("\n".join("! " + a for a in alarms) if alarms else "no alarms", style="bold red" if alarms else "green")
        self.update(Group(table, slow, alarm_text))
