"""Immutable GPU readings: one `GpuSnapshot` per GPU, one `GpuInventory` per poll.

Every value NVML may refuse is typed `X | NotAvailable`: the reason travels with the
value (so a tooltip can say *why*), and it renders as ``N/A`` so nothing downstream
has to special-case it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeVar, Union

T = TypeVar("T")

SourceKind = Literal["nvml", "recorded", "simulated"]


@dataclass(frozen=True, slots=True)
class NotAvailable:
    """A value the GPU (or the driver, or our permissions) did not give us.

    Falsy and printed as ``N/A``; `reason` keeps NVML's own words ("Not Supported",
    "Insufficient Permissions", ...) for whoever wants to know why.
    """

    reason: str = "not reported"

    def __str__(self) -> str:
        return "N/A"

    def __bool__(self) -> bool:
        return False


NA = NotAvailable()

# `Maybe[int]` reads as "an int, or the reason there is none".
Maybe = Union[T, NotAvailable]


def is_available(value: object) -> bool:
    return not isinstance(value, NotAvailable)


def or_none(value: Maybe[T]) -> T | None:
    """The value, or None when it is not available (for arithmetic and JSON)."""
    return None if isinstance(value, NotAvailable) else value


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A compute process as NVML reports it: host pid and GPU memory it holds."""

    pid: int
    used_memory: Maybe[int]  # bytes; N/A under WDDM or without permission


@dataclass(frozen=True, slots=True)
class NvLinkInfo:
    """Active NVLink connections of one GPU, as NVML reports them.

    `peer_bus_ids` are the PCI bus ids on the far side of active GPU-to-GPU links;
    `via_nvswitch` means at least one active link ends in an NVSwitch, in which case
    every GPU that also reaches the switch is a peer.
    """

    active_links: int
    peer_bus_ids: tuple[str, ...] = ()
    via_nvswitch: bool = False


@dataclass(frozen=True, slots=True)
class GpuSnapshot:
    """One GPU at one instant. Bytes, percent, degrees C, watts, MHz."""

    index: int
    uuid: Maybe[str] = NA
    name: Maybe[str] = NA
    pci_bus_id: Maybe[str] = NA
    memory_total: Maybe[int] = NA
    memory_used: Maybe[int] = NA
    memory_free: Maybe[int] = NA
    utilization_gpu: Maybe[int] = NA
    utilization_memory: Maybe[int] = NA
    temperature_c: Maybe[int] = NA
    power_draw_w: Maybe[float] = NA
    power_limit_w: Maybe[float] = NA
    sm_clock_mhz: Maybe[int] = NA
    fan_speed_pct: Maybe[int] = NA
    numa_node: Maybe[int] = NA
    mig_enabled: Maybe[bool] = NA
    ecc_errors_uncorrected: Maybe[int] = NA  # volatile: since the last driver load
    persistence_mode: Maybe[bool] = NA
    compute_mode: Maybe[str] = NA  # "Default", "Exclusive_Process", "Prohibited"
    processes: Maybe[tuple[GpuProcess, ...]] = ()
    nvlink: Maybe[NvLinkInfo] = NA
    # A GPU that fell off the bus (Xid 79, GpuIsLost) keeps its identity, loses the rest.
    lost: bool = False
    lost_reason: str | None = None

    @property
    def label(self) -> str:
        return f"GPU {self.index}"


@dataclass(frozen=True, slots=True)
class GpuInventory:
    """The result of one poll of a `GpuSource`.

    `error` is a one-line reason when no GPU could be read at all (no driver, no
    library, no GPU); the app keeps running with an empty, unpickable list.
    """

    gpus: tuple[GpuSnapshot, ...]
    timestamp: float
    source: SourceKind
    error: str | None = None
    driver_version: Maybe[str] = NA
    nvml_version: Maybe[str] = NA
    cuda_driver_version: Maybe[str] = NA  # "13.0"
    # Poll cost measured by the source itself (seconds), for the benchmark and the status bar.
    poll_seconds: float = 0.0
    notes: tuple[str, ...] = field(default=())

    def gpu(self, index: int) -> GpuSnapshot | None:
        for snapshot in self.gpus:
            if snapshot.index == index:
                return snapshot
        return None
