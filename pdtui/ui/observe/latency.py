"""The latency view: the proxy's stages (TTFT split into tokenize, prefill, KV wait,
decoder first token), p50/p99 over time as sparklines, and per instance throughput,
ITL and KV cache usage from vLLM's /metrics (series made by pdtui.telemetry.derive)."""

from __future__ import annotations

import math

from rich.console import Group
from rich.table import Table
from textual.widgets import Static

from pdtui.telemetry.stages import PROXY_STAGES
from pdtui.telemetry.series import SeriesStore

__all__ = ["LatencyView", "sparkline"]

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 30) -> str:
    """The last `width` values as block characters; a gap (NaN) is a space."""
    values = values[-width:]
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return ""
    low, high = min(finite), max(finite)
    span = high - low or 1.0
    return "".join(" " if math.isnan(v) else _BARS[min(7, int((v - low) / span * 7.999))] for v in values)


def _ms(value: float | None) -> str:
    return "N/A" if value is None or math.isnan(value) else f"{value * 1000:.1f} ms"


class LatencyView(Static):
    DEFAULT_CSS = "LatencyView { height: auto; padding: 0 1; }"

    def __init__(self, store: SeriesStore, instances: list[str], id: str | None = None) -> None:
        super().__init__("", id=id)
        self.store = store
        self.instances = instances

    def on_mount(self) -> None:
        self.refresh_view()
        self.set_interval(1.0, self.refresh_view)

    def _last(self, name: str) -> float | None:
        series = self.store.get(name)
        point = series.last() if series is not None else None
        return None if point is None else point[1]

    def _values(self, name: str) -> list[float]:
        series = self.store.get(name)
        return series.values() if series is not None else []

    def refresh_view(self) -> None:
        stages = Table(title="proxy stages (ms, last 60 s)", expand=True)
        for column in ("stage", "p50", "p99", "p50 over time"):
            stages.add_column(column, justify="left" if column in ("stage", "p50 over time") else "right")
        for stage in PROXY_STAGES:
            stages.add_row(stage, _ms(self._last(f"proxy/{stage}_p50")), _ms(self._last(f"proxy/{stage}_p99")),
                           sparkline(self._values(f"proxy/{stage}_p50")))
        rps = self._last("proxy/requests_per_s")
        errs = self._last("proxy/errors_per_s")
        engines = Table(title="instances", expand=True)
        for column in ("instance", "gen tok/s", "ITL p50", "ITL p99", "TTFT p99", "KV cache", "tok/s over time"):
            engines.add_column(column, justify="left" if column in ("instance", "tok/s over time") else "right")
        for name in self.instances:
            tps = self._last(f"{name}/generation_tokens_per_s")
            kv = self._last(f"{name}/kv_cache_usage")
            engines.add_row(
                name, "N/A" if tps is None or math.isnan(tps) else f"{tps:.1f}",
                _ms(self._last(f"{name}/itl_p50")), _ms(self._last(f"{name}/itl_p99")),
                _ms(self._last(f"{name}/ttft_p99")),
                "N/A" if kv is None or math.isnan(kv) else f"{kv * 100:.1f}%",
                sparkline(self._values(f"{name}/generation_tokens_per_s")))
        summary = (f"proxy: {'N/A' if rps is None or math.isnan(rps) else f'{rps:.2f}'} req/s, "
                   f"{'N/A' if errs is None or math.isnan(errs) else f'{errs:.2f}'} errors/s")
        self.update(Group(summary, stages, engines))
