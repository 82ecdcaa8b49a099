"""Text sparklines for table cells: one block character per point, NaN as a gap.

A cell of a `DataTable` holds text, so a history column is a string of `▁▂▃▄▅▆▇█`;
`scale_max` lets a column share one scale across rows (tokens/s of every instance on
the same axis), so a row's bars compare with the other rows'.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["BLOCKS", "sparkline", "shared_max"]

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


def sparkline(values: Sequence[float], width: int, scale_max: float | None = None, scale_min: float = 0.0) -> str:
    """`width` characters, newest on the right; padded with spaces on the left."""
    if width <= 0:
        return ""
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
