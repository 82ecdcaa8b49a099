"""The real GPU source: NVML through nvidia-ml-py (`import pynvml`).

Every NVML call goes through `_call`, which turns an NVML error into `NotAvailable`
with NVML's reason, except `GpuIsLost`, which turns the whole GPU into a `lost`
snapshot. Nothing here raises for GPU trouble; see `GpuSource`.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

from pdtui.gpus.nvml_reasons import NO_GPU, NO_PYNVML, error_text, init_failure_reason
from pdtui.gpus.pci import normalize_bus_id
from pdtui.gpus.snapshot import (
    GpuInventory,
    GpuProcess,
    GpuSnapshot,
    Maybe,
    NotAvailable,
    NvLinkInfo,
    SourceKind,
)
from pdtui.gpus.ttl_cache import TtlCache

SLOW_FIELDS_TTL_S = 5.0  # as nvitop: these change on the scale of seconds, not polls

COMPUTE_MODE_NAMES = {0: "Default", 1: "Exclusive_Thread", 2: "Prohibited", 3: "Exclusive_Process"}


class _GpuLost(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NvmlSource:
    """Live readings from NVML. Starts NVML lazily and retries on the next poll if it
    could not (so plugging in the driver later works without restarting pdtui)."""

    kind: SourceKind = "nvml"

    def __init__(
        self,
        *,
        slow_ttl_s: float = SLOW_FIELDS_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._slow = TtlCache(slow_ttl_s, clock)
        self._wall_clock = wall_clock
        self._nvml: Any = None
        self._handles: list[Any] = []  # a handle, or the NVML error that refused it
        self._identity: dict[int, dict[str, Any]] = {}  # name/uuid/bus id, once all read
        self._partial_identity: dict[int, dict[str, Any]] = {}
        self._system: tuple[Maybe[str], Maybe[str], Maybe[str]] = (
            NotAvailable(),
            NotAvailable(),
            NotAvailable(),
        )
        self._needs_restart = False

    # -- GpuSource ---------------------------------------------------------------------

    def poll(self) -> GpuInventory:
        started = time.perf_counter()
        timestamp = self._wall_clock()
        if self._needs_restart:
            self.close()
        if self._nvml is None:
            reason = self._start()
            if reason is not None:
                return GpuInventory(
                    gpus=(),
                    timestamp=timestamp,
                    source="nvml",
                    error=reason,
                    poll_seconds=time.perf_counter() - started,
                )
        try:
            gpus = tuple(self._read_gpu(i, h) for i, h in enumerate(self._handles))
        except Exception as exc:  # a bug or a broken pynvml: one line, never a traceback
            return GpuInventory(
                gpus=(),
                timestamp=timestamp,
                source="nvml",
                error=f"reading GPUs failed: {type(exc).__name__}: {exc}",
                poll_seconds=time.perf_counter() - started,
            )
        driver, nvml_version, cuda = self._system
        return GpuInventory(
            gpus=gpus,
            timestamp=timestamp,
            source="nvml",
            driver_version=driver,
            nvml_version=nvml_version,
            cuda_driver_version=cuda,
            poll_seconds=time.perf_counter() - started,
        )

    def close(self) -> None:
        nvml, self._nvml = self._nvml, None
        self._handles = []
        self._slow.clear()
        self._identity.clear()  # after a restart index N may be another GPU
        self._partial_identity.clear()
        self._needs_restart = False
        if nvml is not None:
            try:
                nvml.nvmlShutdown()
            except Exception:  # shutting down a broken driver must not break close()
                pass

    # -- start -------------------------------------------------------------------------

    def _start(self) -> str | None:
        """Initialise NVML; the one-line reason if it cannot be done."""
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError:
            return NO_PYNVML
        nvml_error = getattr(nvml, "NVMLError", Exception)
        try:
            nvml.nvmlInit()
        except nvml_error as exc:
            return init_failure_reason(exc)
        except OSError as exc:  # a corrupt libnvidia-ml.so may fail inside ctypes
            return f"NVIDIA driver library could not be loaded: {exc}"
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml_error as exc:
            _shutdown_quietly(nvml)
            return f"NVML could not count the GPUs: {error_text(exc)}"
        if count <= 0:
            _shutdown_quietly(nvml)
            return NO_GPU
        handles: list[Any] = []
        for index in range(count):
            try:
                handles.append(nvml.nvmlDeviceGetHandleByIndex(index))
            except nvml_error as exc:  # shown as a lost GPU, the others still work
                handles.append(exc)
        self._nvml = nvml
        self._handles = handles
        self._system = (
            self._system_call("nvmlSystemGetDriverVersion"),
            self._system_call("nvmlSystemGetNVMLVersion"),
            _cuda_version(self._system_call("nvmlSystemGetCudaDriverVersion")),
        )
        return None

    def _system_call(self, function: str) -> Any:
        try:
            return self._call(function)
        except _GpuLost as lost:  # not about one GPU: just a value we do not have
            return NotAvailable(lost.reason)

    # -- one GPU -----------------------------------------------------------------------

    def _call(self, function: str, *args: Any) -> Any:
        """One NVML call; NotAvailable(reason) instead of an exception."""
        nvml = self._nvml
        fn = getattr(nvml, function, None)
        if fn is None:
            return NotAvailable(f"{function} is not in this nvidia-ml-py")
        try:
            value = fn(*args)
        except nvml.NVMLError as exc:
            if type(exc).__name__ == "NVMLError_GpuIsLost":
                raise _GpuLost(error_text(exc)) from exc
            if type(exc).__name__ == "NVMLError_Uninitialized":
                self._needs_restart = True  # the driver went away under us: start over
            return NotAvailable(error_text(exc))
        return value.decode() if isinstance(value, bytes) else value

    def _identity_of(self, index: int, handle: Any) -> dict[str, Any]:
        """Name, UUID and bus id never change: read until NVML gives all three, then kept."""
        known = self._identity.get(index)
        if known is not None:
            return known
        identity = {
            "name": _str_or_na(self._call("nvmlDeviceGetName", handle)),
            "uuid": _str_or_na(self._call("nvmlDeviceGetUUID", handle)),
            "pci_bus_id": _bus_id(self._call("nvmlDeviceGetPciInfo", handle)),
        }
        if not any(isinstance(v, NotAvailable) for v in identity.values()):
            self._identity[index] = identity
        else:  # keep what we have for a lost-GPU snapshot, ask again next poll
            self._partial_identity[index] = identity
        return identity

    def _read_gpu(self, index: int, handle: Any) -> GpuSnapshot:
        if isinstance(handle, BaseException):
            return self._lost(index, error_text(handle))
        try:
            return self._read_gpu_fields(index, handle)
        except _GpuLost as lost:
            return self._lost(index, lost.reason)

    def _read_gpu_fields(self, index: int, handle: Any) -> GpuSnapshot:
        nvml = self._nvml
        call = self._call
        identity = self._identity_of(index, handle)
        memory = call("nvmlDeviceGetMemoryInfo", handle)
        utilization = call("nvmlDeviceGetUtilizationRates", handle)
        temperature = call("nvmlDeviceGetTemperature", handle, nvml.NVML_TEMPERATURE_GPU)
        power_mw = call("nvmlDeviceGetPowerUsage", handle)
        sm_clock = call("nvmlDeviceGetClockInfo", handle, nvml.NVML_CLOCK_SM)
        processes = _processes(call("nvmlDeviceGetComputeRunningProcesses", handle))
        # One TTL check per GPU for all slow fields (cheaper than one per field).
        slow = self._slow.get(index, lambda: self._read_slow_fields(handle))
        return GpuSnapshot(
            index=index,
            **identity,
            memory_total=_attr(memory, "total"),
            memory_used=_attr(memory, "used"),
            memory_free=_attr(memory, "free"),
            utilization_gpu=_attr(utilization, "gpu"),
            utilization_memory=_attr(utilization, "memory"),
            temperature_c=_int(temperature),
            power_draw_w=_milliwatts_to_watts(power_mw),
            sm_clock_mhz=_int(sm_clock),
            processes=processes,
            **slow,
        )

    def _read_slow_fields(self, handle: Any) -> dict[str, Any]:
        nvml = self._nvml
        call = self._call
        ecc = call(
            "nvmlDeviceGetTotalEccErrors",
            handle,
            nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
            nvml.NVML_VOLATILE_ECC,
        )
        return {
            "power_limit_w": _milliwatts_to_watts(call("nvmlDeviceGetEnforcedPowerLimit", handle)),
            "fan_speed_pct": _int(call("nvmlDeviceGetFanSpeed", handle)),
            "numa_node": _int(call("nvmlDeviceGetNumaNodeId", handle)),
            "mig_enabled": _mig_enabled(call("nvmlDeviceGetMigMode", handle), nvml),
            "ecc_errors_uncorrected": _int(ecc),
            "persistence_mode": _flag(call("nvmlDeviceGetPersistenceMode", handle)),
            "compute_mode": _compute_mode(call("nvmlDeviceGetComputeMode", handle)),
            "nvlink": self._read_nvlink(handle),
        }

    def _read_nvlink(self, handle: Any) -> Maybe[NvLinkInfo]:
        nvml = self._nvml
        max_links = int(getattr(nvml, "NVML_NVLINK_MAX_LINKS", 18))
        enabled = getattr(nvml, "NVML_FEATURE_ENABLED", 1)
        switch_type = getattr(nvml, "NVML_NVLINK_DEVICE_TYPE_SWITCH", 2)
        active = 0
        peers: set[str] = set()
        via_switch = False
        first_refusal: NotAvailable | None = None
        for link in range(max_links):
            state = self._call("nvmlDeviceGetNvLinkState", handle, link)
            if isinstance(state, NotAvailable):
                if link == 0:
                    first_refusal = state
                    break  # no NVLink at all on this GPU (PCIe cards, the recorded H200)
                continue  # past this GPU's last link: NVML says InvalidArgument
            if state != enabled:
                continue
            active += 1
            remote_type = self._call("nvmlDeviceGetNvLinkRemoteDeviceType", handle, link)
            if remote_type == switch_type:
                via_switch = True
                continue
            remote = _bus_id(self._call("nvmlDeviceGetNvLinkRemotePciInfo", handle, link))
            if not isinstance(remote, NotAvailable):
                peers.add(remote)
        if first_refusal is not None:
            return first_refusal
        return NvLinkInfo(active_links=active, peer_bus_ids=tuple(sorted(peers)), via_nvswitch=via_switch)

    def _lost(self, index: int, reason: str) -> GpuSnapshot:
        gone = NotAvailable(reason)
        known = self._identity.get(index) or self._partial_identity.get(index) or {}
        return GpuSnapshot(
            index=index,
            uuid=known.get("uuid", gone),
            name=known.get("name", gone),
            pci_bus_id=known.get("pci_bus_id", gone),
            memory_total=gone,
            memory_used=gone,
            memory_free=gone,
            utilization_gpu=gone,
            utilization_memory=gone,
            temperature_c=gone,
            power_draw_w=gone,
            power_limit_w=gone,
            sm_clock_mhz=gone,
            fan_speed_pct=gone,
            numa_node=gone,
            mig_enabled=gone,
            ecc_errors_uncorrected=gone,
            persistence_mode=gone,
            compute_mode=gone,
            processes=gone,
            nvlink=gone,
            lost=True,
            lost_reason=reason,
        )


# -- conversions (each tolerates NotAvailable and odd types from odd drivers) ------------


def _shutdown_quietly(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:
        pass


def _str_or_na(value: Any) -> Any:
    if isinstance(value, NotAvailable):
        return value
    return str(value)


def _attr(struct: Any, name: str) -> Maybe[int]:
    if isinstance(struct, NotAvailable):
        return struct
    value = getattr(struct, name, None)
    return _int(value) if value is not None else NotAvailable(f"NVML gave no {name}")


def _int(value: Any) -> Maybe[int]:
    if isinstance(value, NotAvailable):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return NotAvailable(f"unexpected value {value!r}")


def _flag(value: Any) -> Maybe[bool]:
    number = _int(value)
    return number if isinstance(number, NotAvailable) else number == 1


def _milliwatts_to_watts(value: Any) -> Maybe[float]:
    number = _int(value)
    return number if isinstance(number, NotAvailable) else number / 1000.0


def _mig_enabled(value: Any, nvml: Any) -> Maybe[bool]:
    if isinstance(value, NotAvailable):
        return value
    current = value[0] if isinstance(value, (list, tuple)) else value
    return current == getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1)


def _compute_mode(value: Any) -> Maybe[str]:
    number = _int(value)
    if isinstance(number, NotAvailable):
        return number
    return COMPUTE_MODE_NAMES.get(number, f"mode {number}")


def _bus_id(pci_info: Any) -> Maybe[str]:
    if isinstance(pci_info, NotAvailable):
        return pci_info
    raw = getattr(pci_info, "busId", None)
    if isinstance(raw, bytes):
        raw = raw.decode(errors="replace")
    if not raw:
        return NotAvailable("NVML gave no PCI bus id")
    return normalize_bus_id(raw)


def _cuda_version(value: Any) -> Maybe[str]:
    number = _int(value)
    if isinstance(number, NotAvailable):
        return number
    return f"{number // 1000}.{(number % 1000) // 10}"


def _processes(value: Any) -> Maybe[tuple[GpuProcess, ...]]:
    if isinstance(value, NotAvailable):
        return value
    processes = []
    for record in value or ():
        pid = getattr(record, "pid", None)
        if pid is None:
            continue
        used = getattr(record, "usedGpuMemory", None)
        processes.append(
            GpuProcess(
                pid=int(pid),
                used_memory=int(used) if used is not None else NotAvailable("NVML did not say (WDDM)"),
            )
        )
    return tuple(processes)


def gpu_count() -> tuple[int | None, str | None]:
    """How many GPUs NVML sees: (count, None), or (None, one-line reason) when it cannot
    tell (no library, no driver, no permission). For host checks that need only the count."""
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError:
        return None, NO_PYNVML
    nvml_error = getattr(nvml, "NVMLError", Exception)
    try:
        nvml.nvmlInit()
    except nvml_error as exc:
        return None, init_failure_reason(exc)
    except OSError as exc:
        return None, f"NVIDIA driver library could not be loaded: {exc}"
    try:
        return int(nvml.nvmlDeviceGetCount()), None
    except nvml_error as exc:
        return None, f"NVML could not count the GPUs: {error_text(exc)}"
    finally:
        _shutdown_quietly(nvml)  # NVML counts inits: this leaves a poller's session open
