"""GPUs without a GPU: replay a recording, or synthesize a whole box from it.

* Replay (`RecordedSource(recording)`, kind ``recorded``): every poll returns the
  recorded GPUs as they were, stamped with the poll time.
* Synthesis (`RecordedSource(recording, synthesize_gpus=8)` or `RecordedSource.demo()`,
  kind ``simulated``): N GPUs cloned from the recorded ones, each with its own UUID and
  bus id, connected through NVSwitch like an HGX board; an idle GPU reads ~0 %
  utilization (a seeded random walk, at most 2 %: the same seed gives the same sequence
  of polls), a GPU that runs simulated engines reads what they report.
* Either way, `sim_gpu_dir` overlays what the simulated engines report
  (see sim_overlay): their memory, utilization and pids appear on the GPUs they name.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from pdtui.gpus.builtin_recording import H200_RECORDING, H200_RECORDING_NAME
from pdtui.gpus.processes import AttributedProcess
from pdtui.gpus.recording import Recording, load_recording, recording_from_dict
from pdtui.gpus.sim_overlay import STALE_AFTER_S, SimEngineUsage, read_sim_usage
from pdtui.gpus.snapshot import GpuInventory, GpuProcess, GpuSnapshot, Maybe, NotAvailable, NvLinkInfo, SourceKind

# PCI bus ids of the eight GPUs on an HGX H100/H200 board, so the demo looks familiar.
_HGX_BUS_IDS = (0x19, 0x3B, 0x4C, 0x5D, 0x9B, 0xBB, 0xCB, 0xDB)
_HGX_NVLINKS_PER_GPU = 18
MAX_SYNTHESIZED_GPUS = 64
IDLE_UTILIZATION_MAX = 2.0  # percent: what an idle simulated GPU may read at most


class RecordedSource:
    def __init__(
        self,
        recording: Recording | str | Path,
        *,
        synthesize_gpus: int | None = None,
        seed: int | None = None,
        sim_gpu_dir: str | Path | None = None,
        wall_clock: Callable[[], float] = time.time,
        stale_after_s: float = STALE_AFTER_S,
    ) -> None:
        if not isinstance(recording, Recording):
            recording = load_recording(recording)  # RecordingError names file and field
        if synthesize_gpus is not None and not 1 <= synthesize_gpus <= MAX_SYNTHESIZED_GPUS:
            raise ValueError(
                f"synthesize_gpus must be between 1 and {MAX_SYNTHESIZED_GPUS}, got {synthesize_gpus}"
            )
        self.recording = recording
        self.kind: SourceKind = "simulated" if (synthesize_gpus is not None or sim_gpu_dir is not None) else "recorded"
        self._wall_clock = wall_clock
        self._sim_gpu_dir = Path(sim_gpu_dir) if sim_gpu_dir is not None else None
        self._stale_after_s = stale_after_s
        self._sim_files: dict = {}  # read_sim_usage's: unchanged files are not read again
        self._made: dict[tuple, GpuSnapshot] = {}  # (position, utilization %, engines) -> snapshot
        self._rng = random.Random(seed)
        template = recording.inventory
        if synthesize_gpus is None:
            self._base = template.gpus
            self._walk: list[_UtilizationWalk] | None = None
        else:
            self._base = tuple(_synthesize(template.gpus, synthesize_gpus))
            self._walk = [_UtilizationWalk(self._rng) for _ in self._base]

    @classmethod
    def demo(
        cls,
        gpu_count: int = 8,
        *,
        seed: int | None = None,
        sim_gpu_dir: str | Path | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> RecordedSource:
        """An N × H200 box from the built-in recording of a real H200."""
        recording = recording_from_dict(H200_RECORDING, H200_RECORDING_NAME)
        return cls(recording, synthesize_gpus=gpu_count, seed=seed, sim_gpu_dir=sim_gpu_dir, wall_clock=wall_clock)

    @property
    def recorded_processes(self) -> tuple[AttributedProcess, ...]:
        """Who held each GPU when the recording was made (pdtui's own format only):
        the pids are from another machine/time, so they must not be looked up here."""
        return self.recording.attributed

    def poll(self) -> GpuInventory:
        started = time.perf_counter()
        timestamp = self._wall_clock()
        template = self.recording.inventory
        notes: tuple[str, ...] = template.notes
        engines_on: dict[int, list[SimEngineUsage]] = {}
        if self._sim_gpu_dir is not None:
            usages, skipped = read_sim_usage(
                self._sim_gpu_dir, now=timestamp, stale_after_s=self._stale_after_s, cache=self._sim_files
            )
            for usage in usages:
                for index in usage.gpus:
                    engines_on.setdefault(index, []).append(usage)
            notes = notes + tuple(f"simulated GPU usage skipped: {s}" for s in skipped)
        gpus = []
        for position, base in enumerate(self._base):
            # Step every walk on every poll, so a seed gives the same sequence with or
            # without engines running.
            background = self._walk[position].step() if self._walk is not None else None
            engines = engines_on.get(base.index, [])
            if engines and not base.lost:
                util = int(round(min(100.0, sum(e.utilization for e in engines))))
                key = (position, util, tuple((e.pid, e.memory_bytes) for e in engines))
            elif background is not None:
                key = (position, int(round(background)), ())
            else:
                key = None
            gpu = base if key is None else self._made.get(key) or self._make(key, base, engines)
            gpus.append(gpu)
        return GpuInventory(
            gpus=tuple(gpus),
            timestamp=timestamp,
            source=self.kind,
            error=template.error,
            driver_version=template.driver_version,
            nvml_version=template.nvml_version,
            cuda_driver_version=template.cuda_driver_version,
            poll_seconds=time.perf_counter() - started,
            notes=notes,
        )

    def _make(self, key: tuple, base: GpuSnapshot, engines: list[SimEngineUsage]) -> GpuSnapshot:
        """A GPU at this utilization with these engines on it. Remembered: an idle box reads
        the same few snapshots over and over, and each is ~10 dataclass fields rebuilt."""
        gpu = _with_utilization(base, key[1])
        if key[2]:
            gpu = _with_engines(gpu, engines)
        if len(self._made) >= 4096:
            self._made.clear()
        self._made[key] = gpu
        return gpu

    def close(self) -> None:
        """Nothing to release: a recording holds no handle."""


class _UtilizationWalk:
    """An idle GPU's reading: mean-reverting noise around a level just under 0, clipped, so
    an idle card reads 0 % with an occasional 1–2 % blip (a driver poll, a monitoring
    kernel), as a real one does, and the GPUs that run engines are the ones that stand out."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._level = rng.uniform(-1.0, 0.3)
        self._value = max(0.0, self._level)

    def step(self) -> float:
        self._value += 0.3 * (self._level - self._value) + self._rng.gauss(0.0, 0.6)
        self._value = min(IDLE_UTILIZATION_MAX, max(0.0, self._value))
        return self._value


def _synthesize(templates: tuple[GpuSnapshot, ...], count: int) -> list[GpuSnapshot]:
    gpus = []
    for index in range(count):
        template = templates[index % len(templates)]
        bus = _HGX_BUS_IDS[index] if index < len(_HGX_BUS_IDS) else 0x10 + index
        digest = hashlib.sha1(f"{template.uuid}/{index}".encode()).hexdigest()
        uuid = f"GPU-{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
        nvlink = template.nvlink
        if count > 1:  # an HGX board: every GPU reaches every other one through NVSwitch
            nvlink = NvLinkInfo(active_links=_HGX_NVLINKS_PER_GPU, via_nvswitch=True)
        gpus.append(
            replace(
                template,
                index=index,
                uuid=uuid,
                pci_bus_id=f"00000000:{bus % 256:02X}:00.0",
                processes=() if isinstance(template.processes, NotAvailable) else template.processes,
                nvlink=nvlink,
                numa_node=index * 2 // count if count > 1 else template.numa_node,
            )
        )
    return gpus


def _with_utilization(gpu: GpuSnapshot, utilization: float) -> GpuSnapshot:
    """Set GPU utilization and let memory-bandwidth use, temperature and power follow it,
    the way they do on a real card (hotter and hungrier under load)."""
    if gpu.lost:
        return gpu
    util = int(round(utilization))
    power_draw: Maybe[float] = gpu.power_draw_w
    base_power = gpu.power_draw_w if not isinstance(gpu.power_draw_w, NotAvailable) else None
    limit = gpu.power_limit_w if not isinstance(gpu.power_limit_w, NotAvailable) else None
    if base_power is not None and limit is not None:
        power_draw = round(base_power + (limit - base_power) * 0.85 * util / 100.0, 3)
    temperature: Maybe[int] = gpu.temperature_c
    if not isinstance(gpu.temperature_c, NotAvailable):
        temperature = int(round(gpu.temperature_c + 0.35 * util))
    return replace(
        gpu,
        utilization_gpu=util,
        utilization_memory=int(round(util * 0.6)),
        power_draw_w=power_draw,
        temperature_c=temperature,
    )


def _with_engines(gpu: GpuSnapshot, engines: list[SimEngineUsage]) -> GpuSnapshot:
    """Add the engines' memory and pids to a GPU (on top of what the recording had)."""
    extra = sum(e.memory_bytes for e in engines)
    memory_used, memory_free = gpu.memory_used, gpu.memory_free
    if not isinstance(gpu.memory_total, NotAvailable):
        base_used = gpu.memory_used if not isinstance(gpu.memory_used, NotAvailable) else 0
        used = min(gpu.memory_total, base_used + extra)
        memory_used = used
        memory_free = gpu.memory_total - used
    recorded = gpu.processes if not isinstance(gpu.processes, NotAvailable) else ()
    processes = recorded + tuple(GpuProcess(pid=e.pid, used_memory=e.memory_bytes) for e in engines)
    return replace(gpu, memory_used=memory_used, memory_free=memory_free, processes=processes)
