"""Text sparklines for table cells: one block character per point, NaN as a gap.

A cell of a `DataTable` holds text, so a history column is a string of `▁▂▃▄▅▆▇█`;
`scale_max` lets a column share one scale across rows (tokens/s of every instance on
the same axis), so a row's bars compare with the other rows'.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from typing import Any

__all__ = ["BLOCKS", "BucketCache", "sparkline", "shared_max", "time_buckets"]

BLOCKS = "▁▂▃▄▅▆▇█"


def _bucketed(values: Sequence[float], width: int) -> list[float]:
    """The last values squeezed into `width` points (each the max of its bucket)."""
    if len(values) <= width:
        return list(values)
    out = []
    step = len(values) / width
    for i in range(width):
        chunk = [v for v in values[int(i * step): int((i + 1) * step) or 1] if not math.isnan(v)]
        out.append(max(chunk) if chunk else math.nan)
    return out


_DRAWN: dict[tuple, str] = {}  # the cockpit draws ~24 histories a second, nearly all as before
_DRAWN_MAX = 1024


def sparkline(values: Sequence[float], width: int, scale_max: float | None = None, scale_min: float = 0.0) -> str:
    """`width` characters, newest on the right; padded with spaces on the left."""
    if width <= 0:
        return ""
    key = (tuple(values), width, scale_max, scale_min)
    drawn = _DRAWN.get(key)
    if drawn is None:
        if len(_DRAWN) >= _DRAWN_MAX:
            _DRAWN.clear()
        drawn = _DRAWN[key] = _draw(values, width, scale_max, scale_min)
    return drawn


def _draw(values: Sequence[float], width: int, scale_max: float | None, scale_min: float) -> str:
    points = _bucketed(values, width)
    finite = [v for v in points if not math.isnan(v)]
    top = scale_max if scale_max is not None else (max(finite) if finite else 0.0)
    span = top - scale_min
    chars = []
    for v in points:
        if math.isnan(v):
            chars.append(" ")
        elif span <= 0:
            chars.append(BLOCKS[0])
        else:
            level = (min(max(v, scale_min), top) - scale_min) / span
            chars.append(BLOCKS[min(len(BLOCKS) - 1, int(level * (len(BLOCKS) - 1) + 0.5))])
    return " " * (width - len(chars)) + "".join(chars)


def shared_max(series: Sequence[Sequence[float]]) -> float:
    return max((v for values in series for v in values if not math.isnan(v)), default=0.0)


def time_buckets(points: Sequence[tuple[float, float]], width: int, span_s: float) -> list[float]:
    """`points` (time, value), oldest first, as exactly `width` buckets of `span_s / width`
    seconds each (max of each), aligned to absolute time and ending with the newest point's.

    Aligned buckets make a history cell stable: it changes when a bucket's max changes or a
    new bucket starts (every `span_s / width` s), not with every sample as a window that
    slides one point at a time does -- an idle cockpit repaints nothing. An empty bucket
    after the first point repeats the one before (an idle engine is scraped less often and
    its values do not move); a NaN point (a recorded gap) stays a gap.
    """
    if width <= 0:
        return []
    if not points:
        return [math.nan] * width
    bucket_s = span_s / width
    last = int(points[-1][0] // bucket_s)
    first = last - width + 1
    out: list[float | None] = [None] * width
    before: float | None = None  # the last value older than the window carries into it
    for t, v in points:
        index = int(t // bucket_s) - first
        if index < 0:
            before = v
            continue
        seen = out[index]
        if seen is None or (math.isnan(seen) and not math.isnan(v)) or (not math.isnan(v) and v > seen):
            out[index] = v
    filled: list[float] = []
    carry: float = math.nan if before is None else before
    for bucket in out:
        if bucket is not None:
            carry = bucket
        filled.append(carry)
    return filled


class BucketCache:
    """`time_buckets` of a series' window, kept between calls: a sample that lands in the
    newest bucket folds into it (the common case once a second), a new bucket recomputes.
    Without it every cockpit refresh walked five minutes of points of every series."""

    def __init__(self) -> None:
        self._cache: weakref.WeakKeyDictionary[Any, dict[tuple[int, float], tuple[float, list[float]]]] = weakref.WeakKeyDictionary()

    def buckets(self, series: Any, width: int, span_s: float) -> list[float]:
        """`series` is a `RingSeries` (last(), since(t), window(seconds))."""
        last = series.last()
        if last is None or width <= 0:
            return time_buckets([], width, span_s)
        per_series = self._cache.setdefault(series, {})
        key = (width, span_s)
        bucket_s = span_s / width
        cached = per_series.get(key)
        if cached is not None and cached[0] == last[0]:
            return cached[1]
        if cached is not None and int(cached[0] // bucket_s) == int(last[0] // bucket_s):
            out = list(cached[1])
            for _, v in series.since(cached[0]):
                seen = out[-1]
                if math.isnan(seen) or (not math.isnan(v) and v > seen):
                    out[-1] = v
        else:  # the buckets' own window (plus a minute before it: the value a leading empty bucket carries)
            first_start = (int(last[0] // bucket_s) - width + 1) * bucket_s
            out = time_buckets(series.since(first_start - 60.0), width, span_s)
        per_series[key] = (last[0], out)
        return out
