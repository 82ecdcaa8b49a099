"""Derived numbers from successive scrapes: rates, windowed quantiles, hit rates.

Pure helpers:
- `counter_increase(points)` / `counter_rate(points)`: increase of a counter over (t, v)
  points, a drop being a restart from zero (an engine restart resets its counters), as
  Prometheus' `increase()`/`rate()` do.
- `histogram_delta(old, new)`: bucket-wise difference of two cumulative histograms (the
  observations between two scrapes); the new one alone after a reset.
- `histogram_quantile(q, hist)`: Prometheus' linear interpolation inside the bucket.

Stateful:
- `InstanceDeriver(name, store)`: `ingest(snapshot)` computes and records, as series
  `"<name>/<metric>"` in a SeriesStore, the metrics of DERIVED_METRICS whose source
  families the instance exports (an absent family gives no series: the UI shows N/A).
- `Deriver(store)`: one InstanceDeriver per scrape target; `ingest(result)` fits
  `Scraper(on_result=...)`.

LMCache flushes its counters to /metrics every 10 s, so its token rates use a window of
`lmcache_window_s` (default 30 s, must be > 10 s); vLLM rates use `rate_window_s`
(default 10 s) and the latency quantiles `quantile_window_s` (default 60 s).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

from pdtui.telemetry.metrics import Histogram, MetricsSnapshot
from pdtui.telemetry.series import RingSeries, SeriesStore

__all__ = [
    "DERIVED_METRICS",
    "Deriver",
    "InstanceDeriver",
    "LMCACHE_FLUSH_INTERVAL_S",
    "counter_increase",
    "counter_rate",
    "deriver_families",
    "histogram_delta",
    "histogram_quantile",
    "percentile",
]

LMCACHE_FLUSH_INTERVAL_S = 10.0

# name -> unit, for the UI's labels.
DERIVED_METRICS: dict[str, str] = {
    "request_rate": "req/s",
    "prompt_tokens_per_s": "tok/s",
    "generation_tokens_per_s": "tok/s",
    "running": "reqs",
    "waiting": "reqs",
    "kv_cache_usage": "fraction",
    "ttft_p50": "s",
    "ttft_p99": "s",
    "itl_p50": "s",
    "itl_p99": "s",
    "e2e_p50": "s",
    "e2e_p99": "s",
    "lmcache_stored_tokens_per_s": "tok/s",
    "lmcache_hit_tokens_per_s": "tok/s",
    "decoder_hit_rate": "fraction",
    "lmcache_time_to_store_p50": "s",
    "lmcache_time_to_store_p99": "s",
    "lmcache_time_to_retrieve_p50": "s",
    "lmcache_time_to_retrieve_p99": "s",
}


def counter_increase(points: Sequence[tuple[float, float]]) -> float | None:
    """Increase over the points (NaN points skipped); None with fewer than two values."""
    total, prev, seen = 0.0, None, 0
    for _, value in points:
        if math.isnan(value):
            continue
        seen += 1
        if prev is not None:
            # A drop means the process restarted and counts again from zero.
            total += value - prev if value >= prev else value
        prev = value
    return total if seen >= 2 else None


def counter_rate(points: Sequence[tuple[float, float]]) -> float | None:
    valid = [(t, v) for t, v in points if not math.isnan(v)]
    if len(valid) < 2:
        return None
    span = valid[-1][0] - valid[0][0]
    if span <= 0:
        return None
    increase = counter_increase(valid)
    return None if increase is None else increase / span


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated q-quantile (0..1) of the values; None when there are none."""
    if not values:
        return None
    data = sorted(values)
    pos = q * (len(data) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def histogram_delta(old: Histogram | None, new: Histogram) -> Histogram:
    """Observations made between `old` and `new`."""
    if old is None or len(old.buckets) != len(new.buckets) or new.count < old.count:
        return new
    buckets = []
    for (bound_old, c_old), (bound_new, c_new) in zip(old.buckets, new.buckets):
        if bound_old != bound_new or c_new < c_old:
            return new  # layout changed or counter reset: the new histogram is all we know
        buckets.append((bound_new, c_new - c_old))
    return Histogram(tuple(buckets), new.count - old.count, new.sum - old.sum)


def histogram_quantile(q: float, hist: Histogram | None) -> float | None:
    """The q-quantile (0..1) of a cumulative histogram; None without observations."""
    if hist is None or not hist.buckets or not 0.0 <= q <= 1.0:
        return None
    total = hist.buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in hist.buckets:
        if count >= rank:
            if math.isinf(bound):
                # Above the highest finite bound: that bound is the best we can say.
                return prev_bound
            in_bucket = count - prev_count
            if in_bucket <= 0:
                return bound
            lower = prev_bound if prev_bound < bound else 0.0
            return lower + (bound - lower) * (rank - prev_count) / in_bucket
        prev_bound, prev_count = bound, count
    return prev_bound


_HISTORY_POINTS = 512  # raw points kept per counter/histogram: covers minutes at 2 s

_COUNTER_RATES = (
    # derived name, alias key, window attribute
    ("request_rate", "request_success", "rate_window_s"),
    ("prompt_tokens_per_s", "prompt_tokens", "rate_window_s"),
    ("generation_tokens_per_s", "generation_tokens", "rate_window_s"),
    ("lmcache_stored_tokens_per_s", "lmcache_stored_tokens", "lmcache_window_s"),
    ("lmcache_hit_tokens_per_s", "lmcache_hit_tokens", "lmcache_window_s"),
)
_GAUGES = (("running", "running"), ("waiting", "waiting"), ("kv_cache_usage", "kv_cache_usage"))
_QUANTILES = (
    ("ttft", "ttft"),
    ("itl", "itl"),
    ("e2e", "e2e"),
    ("lmcache_time_to_store", "lmcache_time_to_store"),
    ("lmcache_time_to_retrieve", "lmcache_time_to_retrieve"),
)
# (hits, queries, window attribute): vLLM's connector counters first, LMCache's as fallback.
_HIT_RATE_SOURCES = (
    ("external_prefix_cache_hits", "external_prefix_cache_queries", "rate_window_s"),
    ("lmcache_hit_tokens", "lmcache_requested_tokens", "lmcache_window_s"),
)


def deriver_families() -> tuple[str, ...]:
    """Every metric family spelling the deriver reads: a scrape that keeps only these
    skips the rest of a ~50 KB vLLM body (cheap enough to scrape every second)."""
    from pdtui.telemetry.metrics import METRIC_ALIASES

    keys = {key for _, key, _ in _COUNTER_RATES} | {key for _, key in _GAUGES} | {key for _, key in _QUANTILES}
    keys |= {k for hits, queries, _ in _HIT_RATE_SOURCES for k in (hits, queries)}
    return tuple(sorted(name for key in keys for name in METRIC_ALIASES[key]))


class InstanceDeriver:
    def __init__(
        self,
        name: str,
        store: SeriesStore,
        rate_window_s: float = 10.0,
        lmcache_window_s: float = 30.0,
        quantile_window_s: float = 60.0,
    ) -> None:
        if lmcache_window_s <= LMCACHE_FLUSH_INTERVAL_S:
            raise ValueError(
                f"lmcache_window_s must be longer than LMCache's {LMCACHE_FLUSH_INTERVAL_S:g} s "
                f"flush interval, got {lmcache_window_s!r}"
            )
        for label, value in (("rate_window_s", rate_window_s), ("quantile_window_s", quantile_window_s)):
            if value <= 0:
                raise ValueError(f"{label} must be > 0, got {value!r}")
        self.name = name
        self.store = store
        self.rate_window_s = rate_window_s
        self.lmcache_window_s = lmcache_window_s
        self.quantile_window_s = quantile_window_s
        self._counters: dict[str, RingSeries] = {}
        self._histograms: dict[str, deque[tuple[float, Histogram]]] = {}

    def _counter_window(self, key: str, snapshot: MetricsSnapshot, window_s: float) -> list[tuple[float, float]] | None:
        value = snapshot.value(key)
        if value is None:
            return None
        raw = self._counters.get(key)
        if raw is None:
            raw = self._counters[key] = RingSeries(_HISTORY_POINTS)
        raw.append(snapshot.taken_at, value)
        return raw.window(window_s, snapshot.taken_at)

    def ingest(self, snapshot: MetricsSnapshot) -> dict[str, float | None]:
        """Compute the derived metrics present in this snapshot; also record them."""
        t = snapshot.taken_at
        out: dict[str, float | None] = {}
        windows: dict[str, list[tuple[float, float]] | None] = {}

        def window_of(key: str, attr: str) -> list[tuple[float, float]] | None:
            if key not in windows:
                windows[key] = self._counter_window(key, snapshot, getattr(self, attr))
            return windows[key]

        for derived, key, attr in _COUNTER_RATES:
            pts = window_of(key, attr)
            if pts is not None:
                out[derived] = counter_rate(pts)
        for derived, key in _GAUGES:
            value = snapshot.value(key)
            if value is not None:
                out[derived] = value
        for prefix, key in _QUANTILES:
            hist = snapshot.histogram(key)
            if hist is None:
                continue
            history = self._histograms.get(key)
            if history is None:
                history = self._histograms[key] = deque(maxlen=_HISTORY_POINTS)
            history.append((t, hist))
            base = None
            for ts, old in history:  # oldest first: the newest one at or before the window start
                if ts <= t - self.quantile_window_s:
                    base = old
                else:
                    break
            if base is None and len(history) > 1:
                base = history[0][1]
            window_hist = histogram_delta(base, hist) if base is not hist else hist
            out[f"{prefix}_p50"] = histogram_quantile(0.5, window_hist)
            out[f"{prefix}_p99"] = histogram_quantile(0.99, window_hist)
        for hits_key, queries_key, attr in _HIT_RATE_SOURCES:
            hits_pts = window_of(hits_key, attr)
            queries_pts = window_of(queries_key, attr)
            if hits_pts is None or queries_pts is None:
                continue
            hits = counter_increase(hits_pts)
            queries = counter_increase(queries_pts)
            out["decoder_hit_rate"] = hits / queries if hits is not None and queries else None
            break
        for derived, value in out.items():
            self.store.record(f"{self.name}/{derived}", t, value)
        return out


class Deriver:
    """One InstanceDeriver per scrape target name; `ingest` accepts a ScrapeResult."""

    def __init__(self, store: SeriesStore, **windows: float) -> None:
        self.store = store
        self._windows = windows
        self._instances: dict[str, InstanceDeriver] = {}

    def instance(self, name: str) -> InstanceDeriver:
        deriver = self._instances.get(name)
        if deriver is None:
            deriver = self._instances[name] = InstanceDeriver(name, self.store, **self._windows)
        return deriver

    def ingest(self, result) -> dict[str, float | None]:  # result: pdtui.telemetry.scrape.ScrapeResult
        deriver = self.instance(result.target.name)
        if result.snapshot is None:
            self.store.record(f"{deriver.name}/up", result.started_at, 0.0)
            return {}
        self.store.record(f"{deriver.name}/up", result.started_at, 1.0)
        return deriver.ingest(result.snapshot)
