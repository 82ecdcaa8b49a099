"""A stand-in for the `pynvml` module, driven by plain data, for NvmlSource tests.

It carries the *real* pynvml error classes and constants (so `except NVMLError_...`
matches exactly what the real library raises) and answers the device functions that
NvmlSource calls from `FakeGpu` records. `fail[function_name] = ErrorClass` makes that
function raise on every call; `calls` counts the calls per function.
"""

from __future__ import annotations

import types
from collections import Counter
from dataclasses import dataclass, field

import pynvml as real

# Every device/system function NvmlSource calls while polling (not init/shutdown).
DEVICE_FUNCTIONS = (
    "nvmlDeviceGetName",
    "nvmlDeviceGetUUID",
    "nvmlDeviceGetPciInfo",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetTemperature",
    "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetClockInfo",
    "nvmlDeviceGetComputeRunningProcesses",
    "nvmlDeviceGetEnforcedPowerLimit",
    "nvmlDeviceGetFanSpeed",
    "nvmlDeviceGetNumaNodeId",
    "nvmlDeviceGetMigMode",
    "nvmlDeviceGetTotalEccErrors",
    "nvmlDeviceGetPersistenceMode",
    "nvmlDeviceGetComputeMode",
    "nvmlDeviceGetNvLinkState",
    "nvmlDeviceGetNvLinkRemoteDeviceType",
    "nvmlDeviceGetNvLinkRemotePciInfo",
)

# Which GpuSnapshot field(s) each function feeds.
FIELDS_OF = {
    "nvmlDeviceGetName": ("name",),
    "nvmlDeviceGetUUID": ("uuid",),
    "nvmlDeviceGetPciInfo": ("pci_bus_id",),
    "nvmlDeviceGetMemoryInfo": ("memory_total", "memory_used", "memory_free"),
    "nvmlDeviceGetUtilizationRates": ("utilization_gpu", "utilization_memory"),
    "nvmlDeviceGetTemperature": ("temperature_c",),
    "nvmlDeviceGetPowerUsage": ("power_draw_w",),
    "nvmlDeviceGetClockInfo": ("sm_clock_mhz",),
    "nvmlDeviceGetComputeRunningProcesses": ("processes",),
    "nvmlDeviceGetEnforcedPowerLimit": ("power_limit_w",),
    "nvmlDeviceGetFanSpeed": ("fan_speed_pct",),
    "nvmlDeviceGetNumaNodeId": ("numa_node",),
    "nvmlDeviceGetMigMode": ("mig_enabled",),
    "nvmlDeviceGetTotalEccErrors": ("ecc_errors_uncorrected",),
    "nvmlDeviceGetPersistenceMode": ("persistence_mode",),
    "nvmlDeviceGetComputeMode": ("compute_mode",),
    "nvmlDeviceGetNvLinkState": ("nvlink",),
    "nvmlDeviceGetNvLinkRemoteDeviceType": (),  # a refused remote type just means "not a switch"
    "nvmlDeviceGetNvLinkRemotePciInfo": (),  # a refused remote id drops that peer only
}

ERROR_CLASSES = tuple(
    getattr(real, name) for name in sorted(dir(real)) if name.startswith("NVMLError_")
)


@dataclass
class FakeGpu:
    name: str = "NVIDIA H200"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    bus_id: str = "00000000:19:00.0"
    total: int = 150754820096
    used: int = 644939776
    util_gpu: int = 7
    util_memory: int = 3
    temperature: int = 41
    power_mw: int = 129766
    power_limit_mw: int = 700000
    sm_clock: int = 1980
    fan: int = 30
    numa: int = 0
    mig: tuple[int, int] = (0, 0)
    ecc: int = 0
    persistence: int = 1
    compute_mode: int = 0
    processes: list[tuple[int, int | None]] = field(default_factory=list)
    # NVLink: one entry per link: (state, remote type, remote bus id)
    links: list[tuple[int, int, str]] | None = None  # None: NVLink Not Supported
    lost: bool = False


class _Struct:
    def __init__(self, **values: object) -> None:
        self.__dict__.update(values)


def make_fake_pynvml(gpus: list[FakeGpu]) -> types.ModuleType:
    module = types.ModuleType("pynvml")
    for name in dir(real):
        if name.startswith(("NVML_", "NVMLError")):
            setattr(module, name, getattr(real, name))
    module.fail = {}  # function name -> error class raised on every call
    module.init_error = None
    module.count_error = None
    module.handle_errors = {}  # index -> error class
    module.calls = Counter()
    module.gpus = gpus
    module.initialised = False

    def guard(name: str, handle: int | None = None) -> FakeGpu | None:
        module.calls[name] += 1
        if name in module.fail:
            raise module.fail[name]()
        if handle is None:
            return None
        if not module.initialised:
            raise real.NVMLError_Uninitialized()
        gpu = module.gpus[handle]
        if gpu.lost:
            raise real.NVMLError_GpuIsLost()
        return gpu

    def nvmlInit() -> None:
        module.calls["nvmlInit"] += 1
        if module.init_error is not None:
            raise module.init_error()
        module.initialised = True

    def nvmlShutdown() -> None:
        module.calls["nvmlShutdown"] += 1
        module.initialised = False

    def nvmlDeviceGetCount() -> int:
        module.calls["nvmlDeviceGetCount"] += 1
        if module.count_error is not None:
            raise module.count_error()
        return len(module.gpus)

    def nvmlDeviceGetHandleByIndex(index: int) -> int:
        module.calls["nvmlDeviceGetHandleByIndex"] += 1
        if index in module.handle_errors:
            raise module.handle_errors[index]()
        return index

    def system(name: str, value: object):
        def fn() -> object:
            guard(name)
            return value

        return fn

    module.nvmlSystemGetDriverVersion = system("nvmlSystemGetDriverVersion", "580.159.04")
    module.nvmlSystemGetNVMLVersion = system("nvmlSystemGetNVMLVersion", "13.580.159.04")
    module.nvmlSystemGetCudaDriverVersion = system("nvmlSystemGetCudaDriverVersion", 13000)

    def nvmlDeviceGetName(h):
        return guard("nvmlDeviceGetName", h).name

    def nvmlDeviceGetUUID(h):
        return guard("nvmlDeviceGetUUID", h).uuid

    def nvmlDeviceGetPciInfo(h):
        return _Struct(busId=guard("nvmlDeviceGetPciInfo", h).bus_id.encode())

    def nvmlDeviceGetMemoryInfo(h):
        g = guard("nvmlDeviceGetMemoryInfo", h)
        return _Struct(total=g.total, used=g.used, free=g.total - g.used)

    def nvmlDeviceGetUtilizationRates(h):
        g = guard("nvmlDeviceGetUtilizationRates", h)
        return _Struct(gpu=g.util_gpu, memory=g.util_memory)

    def nvmlDeviceGetTemperature(h, sensor):
        assert sensor == real.NVML_TEMPERATURE_GPU
        return guard("nvmlDeviceGetTemperature", h).temperature

    def nvmlDeviceGetPowerUsage(h):
        return guard("nvmlDeviceGetPowerUsage", h).power_mw

    def nvmlDeviceGetClockInfo(h, clock):
        assert clock == real.NVML_CLOCK_SM
        return guard("nvmlDeviceGetClockInfo", h).sm_clock

    def nvmlDeviceGetComputeRunningProcesses(h):
        g = guard("nvmlDeviceGetComputeRunningProcesses", h)
        return [_Struct(pid=pid, usedGpuMemory=used) for pid, used in g.processes]

    def nvmlDeviceGetEnforcedPowerLimit(h):
        return guard("nvmlDeviceGetEnforcedPowerLimit", h).power_limit_mw

    def nvmlDeviceGetFanSpeed(h):
        return guard("nvmlDeviceGetFanSpeed", h).fan

    def nvmlDeviceGetNumaNodeId(h):
        return guard("nvmlDeviceGetNumaNodeId", h).numa

    def nvmlDeviceGetMigMode(h):
        return list(guard("nvmlDeviceGetMigMode", h).mig)

    def nvmlDeviceGetTotalEccErrors(h, error_type, counter_type):
        assert (error_type, counter_type) == (real.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, real.NVML_VOLATILE_ECC)
        return guard("nvmlDeviceGetTotalEccErrors", h).ecc

    def nvmlDeviceGetPersistenceMode(h):
        return guard("nvmlDeviceGetPersistenceMode", h).persistence

    def nvmlDeviceGetComputeMode(h):
        return guard("nvmlDeviceGetComputeMode", h).compute_mode

    def _link(name: str, h: int, link: int) -> tuple[int, int, str]:
        g = guard(name, h)
        if g.links is None:
            raise real.NVMLError_NotSupported()
        if link >= len(g.links):
            raise real.NVMLError_InvalidArgument()
        return g.links[link]

    def nvmlDeviceGetNvLinkState(h, link):
        return _link("nvmlDeviceGetNvLinkState", h, link)[0]

    def nvmlDeviceGetNvLinkRemoteDeviceType(h, link):
        return _link("nvmlDeviceGetNvLinkRemoteDeviceType", h, link)[1]

    def nvmlDeviceGetNvLinkRemotePciInfo(h, link):
        return _Struct(busId=_link("nvmlDeviceGetNvLinkRemotePciInfo", h, link)[2])

    for fn in list(locals().values()):
        if callable(fn) and getattr(fn, "__name__", "").startswith("nvml"):
            setattr(module, fn.__name__, fn)
    module.NVML_NVLINK_MAX_LINKS = 18  # keep link scans short
    return module
