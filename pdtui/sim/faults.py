"""Faults a simulated engine can be told to show (PDTUI_SIM_FAULT, comma separated)."""

from __future__ import annotations

from dataclasses import dataclass

FAULT_NAMES = ("oom", "crash_after=N", "hang", "slow_start=S", "drop_notif", "ignore_sigterm")


class FaultSpecError(ValueError):
    pass


@dataclass(frozen=True)
class Faults:
    oom: bool = False
    crash_after: int | None = None
    hang: bool = False
    slow_start_s: float = 0.0
    drop_notif: bool = False
    ignore_sigterm: bool = False

    @property
    def any(self) -> bool:
        return self != Faults()


def parse_faults(spec: str) -> Faults:
    """`oom,crash_after=3` → Faults(oom=True, crash_after=3); unknown names are errors."""
    flags: set[str] = set()
    crash_after: int | None = None
    slow_start_s = 0.0
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        name, _, arg = item.partition("=")
        name = name.strip().lower()
        arg = arg.strip()
        if name in ("oom", "hang", "drop_notif", "ignore_sigterm"):
            if arg:
                raise FaultSpecError(f"PDTUI_SIM_FAULT: {name} takes no value (got {item!r})")
            flags.add(name)
        elif name == "crash_after":
            try:
                count = int(arg)
            except ValueError:
                raise FaultSpecError(
                    f"PDTUI_SIM_FAULT: crash_after needs a whole number of requests, got {item!r}"
                ) from None
            if count < 0:
                raise FaultSpecError(f"PDTUI_SIM_FAULT: crash_after must be >= 0, got {count}")
            crash_after = count
        elif name == "slow_start":
            try:
                seconds = float(arg)
            except ValueError:
                raise FaultSpecError(
                    f"PDTUI_SIM_FAULT: slow_start needs seconds, got {item!r}"
                ) from None
            if not seconds >= 0:
                raise FaultSpecError(f"PDTUI_SIM_FAULT: slow_start must be >= 0, got {item!r}")
            slow_start_s = seconds
        else:
            raise FaultSpecError(
                f"PDTUI_SIM_FAULT: unknown fault {name!r}; valid: {', '.join(FAULT_NAMES)}"
            )
    return Faults(
        oom="oom" in flags,
        crash_after=crash_after,
        hang="hang" in flags,
        slow_start_s=slow_start_s,
        drop_notif="drop_notif" in flags,
        ignore_sigterm="ignore_sigterm" in flags,
    )
