"""Live GPU readings for the UI: a GpuPoller thread that posts each inventory as a message.

NVML (or the simulated box) and psutil are only ever called on the poller's thread, one
poll at a time (the poller never overlaps itself), so a slow driver stretches the refresh
interval instead of freezing input. The UI thread only receives immutable snapshots.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

from textual.message import Message

from pdtui.gpus.poller import GpuPoller
from pdtui.gpus.processes import AttributedProcess, ProcessAttributor
from pdtui.gpus.snapshot import GpuInventory, SourceKind
from pdtui.gpus.source import GpuSource

DEMO_GPU_COUNT = 8


@dataclass(frozen=True)
class GpuReading:
    inventory: GpuInventory
    processes: tuple[AttributedProcess, ...]


class GpuUpdate(Message):
    """A new GPU reading (posted from the poller thread; `post_message` is thread-safe)."""

    def __init__(self, reading: GpuReading) -> None:
        super().__init__()
        self.reading = reading


class SwitchableSource:
    """A GpuSource whose simulated-usage directory can change at runtime (each run has its
    own run directory, known only once a deployment starts)."""

    def __init__(self, factory: Callable[[Path | None], GpuSource], sim_gpu_dir: Path | None = None,
                 kind: SourceKind = "simulated") -> None:
        self._factory = factory
        self._sim_gpu_dir = sim_gpu_dir
        # Built by the poller thread on its first poll: loading the recording (~17 ms) is
        # not the first paint's work.
        self._source: GpuSource | None = None
        self._pending: tuple[Path | None] | None = None  # (directory,) when a change was asked
        self.kind: SourceKind = kind  # what the built source will say (the demo synthesizes GPUs: "simulated")

    def set_sim_gpu_dir(self, directory: Path | None) -> None:
        if directory != self._sim_gpu_dir:
            self._pending = (directory,)  # applied by the poller thread on its next poll

    def poll(self) -> GpuInventory:
        if self._pending is not None:
            (directory,) = self._pending
            self._pending = None
            if self._source is not None:
                self._source.close()
            self._sim_gpu_dir = directory
            self._source = None
        if self._source is None:
            self._source = self._factory(self._sim_gpu_dir)
        return self._source.poll()

    def close(self) -> None:
        if self._source is not None:
            self._source.close()


def demo_source(seed: int | None = 7) -> SwitchableSource:
    from pdtui.gpus.recorded_source import RecordedSource

    count = int(os.environ.get("PDTUI_DEMO_GPUS", DEMO_GPU_COUNT))
    return SwitchableSource(lambda d: RecordedSource.demo(count, seed=seed, sim_gpu_dir=d), kind="simulated")


def nvml_source() -> GpuSource:
    from pdtui.gpus.nvml_source import NvmlSource

    return NvmlSource()


def replay_source(path: str) -> GpuSource:
    from pdtui.gpus.recorded_source import RecordedSource

    return RecordedSource(path)


class GpuFeed:
    """Owns the poller; `post` receives a GpuUpdate per poll (from the poller thread).

    `own_pids` (pid -> instance name) is replaced whole by the UI when the deployment's
    processes change, so the poller thread always reads a consistent mapping.
    """

    def __init__(self, source: GpuSource, post: Callable[[Message], object], interval_s: float = 1.0) -> None:
        self.source = source
        self._post = post
        self._attributor = ProcessAttributor()
        self.own_pids: dict[int, str] = {}
        self._posted = False  # a reading went out (the poller thread's flag)
        self._poller = GpuPoller(source, self._on_inventory, interval_s)

    def start(self) -> None:
        self._poller.start()

    def poll_now(self) -> None:
        self._poller.poll_now()

    def stop(self) -> None:
        self._poller.stop(timeout_s=5.0)
        try:
            self.source.close()
        except Exception:  # closing NVML on the way out must not turn quit into a crash
            pass

    @property
    def polls(self) -> int:
        return self._poller.polls

    def _on_inventory(self, inventory: GpuInventory) -> None:
        recorded = getattr(self.source, "kind", "") == "recorded"
        if recorded:
            # A replay's pids belong to another machine: show what was recorded.
            processes = tuple(getattr(self.source, "recorded_processes", ()))
        else:
            if not self._posted:
                # The first rows now; who holds each GPU (psutil's import and /proc, ~10 ms
                # of the GIL) on the next poll, which the app asks for once the rows are
                # painted (`poll_now`): done here, it would slow that very paint down.
                self._post(GpuUpdate(GpuReading(inventory, ())))
                self._posted = True
                return
            processes = self._attributor.attribute(inventory.gpus, self.own_pids)
        self._post(GpuUpdate(GpuReading(inventory, processes)))
