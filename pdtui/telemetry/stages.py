"""Per-stage latency of the proxy from its `/metrics` (`pdtui_proxy_stage_seconds{stage}`).

`ProxyStageTracker(window_s).ingest(snapshot)` keeps, per stage, the cumulative
histograms of recent scrapes and records the p50/p99 of the observations inside the
window into a SeriesStore as `proxy/<stage>_p50` and `proxy/<stage>_p99` (seconds), plus
`proxy/requests_per_s` and `proxy/errors_per_s` from `pdtui_proxy_requests_total`.
"""

from __future__ import annotations

import pdtui.constants as C

from collections import deque

from pdtui.telemetry.derive import counter_rate, histogram_delta, histogram_quantile
from pdtui.telemetry.metrics import Histogram, MetricsSnapshot
from pdtui.telemetry.series import RingSeries, SeriesStore

__all__ = ["PROXY_STAGES", "ProxyStageTracker"]

PROXY_STAGES = C.TIMED_STAGES
_FAMILY = "pdtui_proxy_stage_seconds"
_REQUESTS = "pdtui_proxy_requests"


class ProxyStageTracker:
    def __init__(self, store: SeriesStore, window_s: float = 60.0) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s!r}")
        self.store = store
        self.window_s = window_s
        self._history: dict[str, deque[tuple[float, Histogram]]] = {}
        self._requests = RingSeries(256)
        self._errors = RingSeries(256)

    def ingest(self, snapshot: MetricsSnapshot) -> dict[str, float | None]:
        t = snapshot.taken_at
        out: dict[str, float | None] = {}
        for stage in PROXY_STAGES:
            hist = snapshot.histogram(_FAMILY, stage=stage)
            if hist is None:
                continue
            history = self._history.setdefault(stage, deque(maxlen=256))
            history.append((t, hist))
            base = None
            for ts, old in history:
                if ts <= t - self.window_s:
                    base = old
                else:
                    break
            if base is None and len(history) > 1:
                base = history[0][1]
            window = histogram_delta(base, hist) if base is not None and base is not hist else hist
            out[f"{stage}_p50"] = histogram_quantile(0.5, window)
            out[f"{stage}_p99"] = histogram_quantile(0.99, window)
        total = snapshot.value(_REQUESTS)
        if total is not None:
            ok = snapshot.value(_REQUESTS, outcome="ok") or 0.0
            self._requests.append(t, total)
            self._errors.append(t, total - ok)
            out["requests_per_s"] = counter_rate(self._requests.window(self.window_s, t))
            out["errors_per_s"] = counter_rate(self._errors.window(self.window_s, t))
        for name, value in out.items():
            self.store.record(f"proxy/{name}", t, value)
        return out
