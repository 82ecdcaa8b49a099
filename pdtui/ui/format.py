"""Text for table cells: bars, sizes, durations. Pure functions, tested directly."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import TypeIs

    from pdtui.gpus.snapshot import NotAvailable

GIB = 1024**3
_BLOCKS = " ▏▎▍▌▋▊▉█"


def missing(value: object) -> TypeIs[NotAvailable | None]:
    """None, or the GPU layer's N/A marker. The GPU layer is imported on the first call,
    not with this module: the dashboard's first frame shows no GPU cell yet, and its
    modules are a noticeable part of the start-up import time."""
    if value is None:
        return True
    from pdtui.gpus.snapshot import NotAvailable

    return isinstance(value, NotAvailable)


def bar(percent: float | None, width: int = 10) -> str:
    """A fixed-width bar with eighth-cell resolution; blank dots when unknown."""
    if percent is None or percent != percent:
        return "·" * width
    fraction = min(1.0, max(0.0, percent / 100.0))
    eighths = int(round(fraction * width * 8))
    full, part = divmod(eighths, 8)
    text = "█" * full
    if full < width:
        text += _BLOCKS[part] if part else ""
    return text.ljust(width, " ")[:width]


def number(value: object, fmt: str = "{:.0f}", suffix: str = "") -> str:
    if missing(value):
        return "N/A"
    return fmt.format(value) + suffix


def _real(value: object) -> float | None:
    """A number, or None for N/A and anything that is not one."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def gib(value: object) -> str:
    number = _real(value)
    return "N/A" if number is None else f"{number / GIB:.0f}"


def memory_pair(used: object, total: object) -> str:
    """'12/141G' — compact enough for 80 columns."""
    u, t = _real(used), _real(total)
    if u is None or t is None:
        return "N/A"
    return f"{u / GIB:.0f}/{t / GIB:.0f}G"


def percent_of(used: object, total: object) -> float | None:
    u, t = _real(used), _real(total)
    if u is None or not t:
        return None
    return 100.0 * u / t


def duration(seconds: float | None) -> str:
    """Uptime as '42s', '12m', '2h07m', '3d04h': the precision shrinks as the value grows,
    so a table of long-running instances changes once a minute, not every second (each
    change repaints the row)."""
    if seconds is None or seconds < 0:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def gpu_list(gpus: tuple[int, ...] | list[int]) -> str:
    return ",".join(str(g) for g in gpus) if gpus else "-"


def maybe_float(value: float | None, fmt: str = "{:.0f}") -> str:
    return "N/A" if value is None else fmt.format(value)
