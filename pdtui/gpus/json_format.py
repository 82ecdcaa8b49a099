"""pdtui's own JSON form of an inventory (`pdtui gpus --json`), and reading it back.

Format ``pdtui.gpus/1``::

    {"format": "pdtui.gpus/1", "source": "nvml", "timestamp": 1764400000.0,
     "error": null, "driver_version": "580.159.04", "nvml_version": "...",
     "cuda_driver_version": "13.0",
     "gpus": [{"index": 0, "uuid": "GPU-...", "name": "NVIDIA H200", ...,
               "memory_total": 150754820096, "fan_speed_pct": null,
               "nvlink": null | {"active_links": 18, "peer_bus_ids": [...], "via_nvswitch": true},
               "processes": [{"pid": 416, "used_memory": 9133096960, "owner": "other",
                              "user": "root", "command": ["python3", "..."],
                              "started": 1764400000.0, "instance": null}],
               "not_available": {"fan_speed_pct": "Not Supported", ...},
               "lost": false, "lost_reason": null}]}

A value NVML refused is ``null`` (easy for scripts) and its reason is kept under
``not_available`` so reading the file back restores the same `NotAvailable`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pdtui.gpus.processes import AttributedProcess
from pdtui.gpus.snapshot import GpuInventory, GpuProcess, GpuSnapshot, NotAvailable, NvLinkInfo

FORMAT = "pdtui.gpus/1"

_SCALAR_TYPES: dict[str, tuple[type, ...]] = {
    "uuid": (str,),
    "name": (str,),
    "pci_bus_id": (str,),
    "memory_total": (int,),
    "memory_used": (int,),
    "memory_free": (int,),
    "utilization_gpu": (int,),
    "utilization_memory": (int,),
    "temperature_c": (int,),
    "power_draw_w": (int, float),
    "power_limit_w": (int, float),
    "sm_clock_mhz": (int,),
    "fan_speed_pct": (int,),
    "numa_node": (int,),
    "mig_enabled": (bool,),
    "ecc_errors_uncorrected": (int,),
    "persistence_mode": (bool,),
    "compute_mode": (str,),
}


class RecordingError(ValueError):
    """A GPU recording that cannot be read; the message names file, field and value."""


# -- writing ----------------------------------------------------------------------------


def inventory_to_dict(
    inventory: GpuInventory, attributed: Iterable[AttributedProcess] = ()
) -> dict[str, Any]:
    by_gpu_pid = {(p.gpu_index, p.pid): p for p in attributed}
    return {
        "format": FORMAT,
        "source": inventory.source,
        "timestamp": inventory.timestamp,
        "error": inventory.error,
        "driver_version": _plain(inventory.driver_version),
        "nvml_version": _plain(inventory.nvml_version),
        "cuda_driver_version": _plain(inventory.cuda_driver_version),
        "gpus": [_gpu_to_dict(gpu, by_gpu_pid) for gpu in inventory.gpus],
    }


def _gpu_to_dict(gpu: GpuSnapshot, by_gpu_pid: dict[tuple[int, int], AttributedProcess]) -> dict[str, Any]:
    out: dict[str, Any] = {"index": gpu.index}
    missing: dict[str, str] = {}
    for name in _SCALAR_TYPES:
        value = getattr(gpu, name)
        if isinstance(value, NotAvailable):
            missing[name] = value.reason
            out[name] = None
        else:
            out[name] = value
    if isinstance(gpu.nvlink, NotAvailable):
        missing["nvlink"] = gpu.nvlink.reason
        out["nvlink"] = None
    else:
        out["nvlink"] = {
            "active_links": gpu.nvlink.active_links,
            "peer_bus_ids": list(gpu.nvlink.peer_bus_ids),
            "via_nvswitch": gpu.nvlink.via_nvswitch,
        }
    if isinstance(gpu.processes, NotAvailable):
        missing["processes"] = gpu.processes.reason
        out["processes"] = None
    else:
        out["processes"] = [_process_to_dict(gpu.index, p, by_gpu_pid) for p in gpu.processes]
    out["not_available"] = missing
    out["lost"] = gpu.lost
    out["lost_reason"] = gpu.lost_reason
    return out


def _process_to_dict(
    gpu_index: int, process: GpuProcess, by_gpu_pid: dict[tuple[int, int], AttributedProcess]
) -> dict[str, Any]:
    out: dict[str, Any] = {"pid": process.pid, "used_memory": _plain(process.used_memory)}
    info = by_gpu_pid.get((gpu_index, process.pid))
    if info is not None:
        out["owner"] = info.owner
        out["user"] = _plain(info.user)
        out["command"] = None if isinstance(info.command, NotAvailable) else list(info.command)
        out["started"] = _plain(info.started)
        out["instance"] = info.instance
        out["orphan_of"] = info.orphan_of
    return out


def _plain(value: Any) -> Any:
    return None if isinstance(value, NotAvailable) else value


# -- reading ----------------------------------------------------------------------------


def inventory_from_dict(
    data: dict[str, Any], where: str
) -> tuple[GpuInventory, tuple[AttributedProcess, ...]]:
    """Read back what `inventory_to_dict` wrote. `where` names the file in messages."""
    gpus_raw = data.get("gpus")
    if not isinstance(gpus_raw, list):
        raise RecordingError(f"{where}: field 'gpus' must be a list of GPU objects, got {gpus_raw!r:.60}")
    gpus: list[GpuSnapshot] = []
    attributed: list[AttributedProcess] = []
    for position, raw in enumerate(gpus_raw):
        gpu, procs = _gpu_from_dict(raw, f"{where}: gpus[{position}]")
        gpus.append(gpu)
        attributed.extend(procs)
    source = data.get("source", "recorded")
    inventory = GpuInventory(
        gpus=tuple(gpus),
        timestamp=_number(data.get("timestamp", 0.0), f"{where}: timestamp"),
        source="recorded",
        error=data.get("error") if isinstance(data.get("error"), str) else None,
        driver_version=_text_or_na(data.get("driver_version")),
        nvml_version=_text_or_na(data.get("nvml_version")),
        cuda_driver_version=_text_or_na(data.get("cuda_driver_version")),
        notes=(f"recorded from source {source!r}",),
    )
    return inventory, tuple(attributed)


def _gpu_from_dict(raw: Any, where: str) -> tuple[GpuSnapshot, list[AttributedProcess]]:
    if not isinstance(raw, dict):
        raise RecordingError(f"{where}: must be an object, got {raw!r:.60}")
    index = raw.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise RecordingError(f"{where}.index: must be a GPU index (integer >= 0), got {index!r}")
    reasons = raw.get("not_available") or {}
    if not isinstance(reasons, dict):
        raise RecordingError(f"{where}.not_available: must be an object of field -> reason")
    values: dict[str, Any] = {}
    for name, types in _SCALAR_TYPES.items():
        value = raw.get(name)
        if value is None:
            values[name] = NotAvailable(str(reasons.get(name, "not recorded")))
            continue
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            wanted = " or ".join(t.__name__ for t in types)
            raise RecordingError(f"{where}.{name}: must be {wanted} or null, got {value!r:.60}")
        values[name] = value
    values["nvlink"] = _nvlink_from(raw.get("nvlink"), reasons.get("nvlink"), f"{where}.nvlink")
    processes, attributed = _processes_from(index, raw.get("processes"), reasons.get("processes"), f"{where}.processes")
    lost_reason = raw.get("lost_reason")
    gpu = GpuSnapshot(
        index=index,
        processes=processes,
        lost=bool(raw.get("lost", False)),
        lost_reason=lost_reason if isinstance(lost_reason, str) else None,
        **values,
    )
    return gpu, attributed


def _nvlink_from(raw: Any, reason: Any, where: str) -> NvLinkInfo | NotAvailable:
    if raw is None:
        return NotAvailable(str(reason or "not recorded"))
    if not isinstance(raw, dict) or not isinstance(raw.get("active_links"), int):
        raise RecordingError(f"{where}: must be null or {{'active_links': int, 'peer_bus_ids': [...], 'via_nvswitch': bool}}, got {raw!r:.80}")
    peers = raw.get("peer_bus_ids") or []
    if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
        raise RecordingError(f"{where}.peer_bus_ids: must be a list of PCI bus id strings, got {peers!r:.80}")
    return NvLinkInfo(active_links=raw["active_links"], peer_bus_ids=tuple(peers), via_nvswitch=bool(raw.get("via_nvswitch", False)))


def _processes_from(
    gpu_index: int, raw: Any, reason: Any, where: str
) -> tuple[tuple[GpuProcess, ...] | NotAvailable, list[AttributedProcess]]:
    if raw is None:
        return NotAvailable(str(reason or "not recorded")), []
    if not isinstance(raw, list):
        raise RecordingError(f"{where}: must be a list of {{'pid', 'used_memory'}} objects or null, got {raw!r:.60}")
    processes: list[GpuProcess] = []
    attributed: list[AttributedProcess] = []
    for position, item in enumerate(raw):
        here = f"{where}[{position}]"
        if not isinstance(item, dict) or not isinstance(item.get("pid"), int):
            raise RecordingError(f"{here}: must be an object with an integer 'pid', got {item!r:.60}")
        used = item.get("used_memory")
        if used is not None and not isinstance(used, int):
            raise RecordingError(f"{here}.used_memory: must be bytes (integer) or null, got {used!r}")
        used_value = used if used is not None else NotAvailable("not recorded")
        processes.append(GpuProcess(pid=item["pid"], used_memory=used_value))
        owner = item.get("owner")
        if owner in ("own", "other", "gone"):
            command = item.get("command")
            attributed.append(
                AttributedProcess(
                    gpu_index=gpu_index,
                    pid=item["pid"],
                    used_memory=used_value,
                    owner=owner,
                    user=_text_or_na(item.get("user")),
                    command=tuple(str(c) for c in command) if isinstance(command, list) else NotAvailable("not recorded"),
                    started=item["started"] if isinstance(item.get("started"), (int, float)) else NotAvailable("not recorded"),
                    instance=item.get("instance") if isinstance(item.get("instance"), str) else None,
                )
            )
    return tuple(processes), attributed


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordingError(f"{where}: must be a number (unix time), got {value!r:.60}")
    return float(value)


def _text_or_na(value: Any) -> str | NotAvailable:
    return value if isinstance(value, str) else NotAvailable("not recorded")


# Every GpuSnapshot field is written (tests check this against dataclasses.fields).
WRITTEN_FIELDS = frozenset(_SCALAR_TYPES) | {"index", "nvlink", "processes", "lost", "lost_reason"}
