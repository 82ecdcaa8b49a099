"""The one interface every GPU source implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pdtui.gpus.snapshot import GpuInventory, SourceKind


@runtime_checkable
class GpuSource(Protocol):
    """Something that can be asked "what GPUs are there, and how busy are they?".

    `poll()` never raises for GPU trouble: a missing driver becomes
    `GpuInventory.error`, a refused field becomes `NotAvailable`, a GPU that fell off
    the bus becomes a snapshot with `lost=True`. Not thread-safe: one poller calls it.
    """

    kind: SourceKind

    def poll(self) -> GpuInventory: ...

    def close(self) -> None: ...
