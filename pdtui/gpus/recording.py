"""Reading GPU recordings from disk, in either of the two formats pdtui knows.

1. An NVML field recording, as in ``shared/fixtures/nvml/nvml_h200.json``: top-level
   ``driver``, ``nvml_version``, ``cuda_driver`` (e.g. 13000) and ``devices``, each
   device with ``name, uuid, pci_bus_id, mem{total,used,free}, util{gpu,memory},
   temp_c, power_mw, power_limit_mw, fan, mig_mode [current, pending], compute_mode,
   persistence, sm_clock, ecc_errors, numa_node, procs [{pid, used}], nvlink_states``.
   A field NVML refused holds its error text: ``"ERR NVMLError_NotSupported: Not Supported"``.
2. pdtui's own ``pdtui gpus --json`` output (``"format": "pdtui.gpus/1"``, see json_format).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pdtui.gpus.json_format import FORMAT, RecordingError, inventory_from_dict
from pdtui.gpus.nvml_source import COMPUTE_MODE_NAMES
from pdtui.gpus.pci import normalize_bus_id
from pdtui.gpus.processes import AttributedProcess
from pdtui.gpus.snapshot import GpuInventory, GpuProcess, GpuSnapshot, NotAvailable, NvLinkInfo

__all__ = ["Recording", "RecordingError", "load_recording", "recording_from_dict"]


@dataclass(frozen=True, slots=True)
class Recording:
    inventory: GpuInventory  # source="recorded"
    attributed: tuple[AttributedProcess, ...]  # only pdtui's own format records these
    where: str  # the file (or built-in name) it came from


def load_recording(path: str | Path) -> Recording:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecordingError(f"{path}: no such GPU recording file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordingError(f"{path}: cannot read GPU recording: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordingError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    return recording_from_dict(data, str(path))


def recording_from_dict(data: Any, where: str) -> Recording:
    """Parse an already-loaded recording; `where` names it in error messages."""
    if not isinstance(data, dict):
        raise RecordingError(f"{where}: must hold a JSON object, got {type(data).__name__}")
    if data.get("format") == FORMAT:
        inventory, attributed = inventory_from_dict(data, where)
    elif "devices" in data:
        inventory, attributed = _from_nvml_recording(data, where), ()
    else:
        raise RecordingError(
            f"{where}: not a GPU recording: expected 'format': '{FORMAT}' (pdtui gpus --json) "
            "or a 'devices' list (an NVML recording like nvml_h200.json)"
        )
    if not inventory.gpus and inventory.error is None:
        raise RecordingError(f"{where}: the recording lists no GPU")
    return Recording(inventory=inventory, attributed=attributed, where=where)


# -- NVML field recordings ---------------------------------------------------------------


def _from_nvml_recording(data: dict[str, Any], where: str) -> GpuInventory:
    devices = data["devices"]
    if not isinstance(devices, list):
        raise RecordingError(f"{where}: field 'devices' must be a list, got {type(devices).__name__}")
    gpus = tuple(_device(raw, index, f"{where}: devices[{index}]") for index, raw in enumerate(devices))
    cuda = data.get("cuda_driver")
    return GpuInventory(
        gpus=gpus,
        timestamp=0.0,
        source="recorded",
        driver_version=_text(data.get("driver"), f"{where}: driver"),
        nvml_version=_text(data.get("nvml_version"), f"{where}: nvml_version"),
        cuda_driver_version=(
            f"{cuda // 1000}.{(cuda % 1000) // 10}" if isinstance(cuda, int) else _refused(cuda)
        ),
    )


def _device(raw: Any, index: int, where: str) -> GpuSnapshot:
    if not isinstance(raw, dict):
        raise RecordingError(f"{where}: must be an object, got {raw!r:.60}")
    mem = raw.get("mem")
    util = raw.get("util")
    mig = raw.get("mig_mode")
    compute_mode = _int(raw.get("compute_mode"), f"{where}.compute_mode")
    persistence = _int(raw.get("persistence"), f"{where}.persistence")
    bus_id = _text(raw.get("pci_bus_id"), f"{where}.pci_bus_id")
    return GpuSnapshot(
        index=index,
        uuid=_text(raw.get("uuid"), f"{where}.uuid"),
        name=_text(raw.get("name"), f"{where}.name"),
        pci_bus_id=bus_id if isinstance(bus_id, NotAvailable) else normalize_bus_id(bus_id),
        memory_total=_member(mem, "total", f"{where}.mem"),
        memory_used=_member(mem, "used", f"{where}.mem"),
        memory_free=_member(mem, "free", f"{where}.mem"),
        utilization_gpu=_member(util, "gpu", f"{where}.util"),
        utilization_memory=_member(util, "memory", f"{where}.util"),
        temperature_c=_int(raw.get("temp_c"), f"{where}.temp_c"),
        power_draw_w=_watts(raw.get("power_mw"), f"{where}.power_mw"),
        power_limit_w=_watts(raw.get("power_limit_mw"), f"{where}.power_limit_mw"),
        sm_clock_mhz=_int(raw.get("sm_clock"), f"{where}.sm_clock"),
        fan_speed_pct=_int(raw.get("fan"), f"{where}.fan"),
        numa_node=_int(raw.get("numa_node"), f"{where}.numa_node"),
        mig_enabled=_mig(mig, f"{where}.mig_mode"),
        ecc_errors_uncorrected=_int(raw.get("ecc_errors"), f"{where}.ecc_errors"),
        persistence_mode=persistence if isinstance(persistence, NotAvailable) else persistence == 1,
        compute_mode=(
            compute_mode
            if isinstance(compute_mode, NotAvailable)
            else COMPUTE_MODE_NAMES.get(compute_mode, f"mode {compute_mode}")
        ),
        processes=_procs(raw.get("procs"), f"{where}.procs"),
        nvlink=_nvlink(raw.get("nvlink_states"), f"{where}.nvlink_states"),
    )


def _refused(value: Any) -> NotAvailable:
    """`"ERR NVMLError_NotSupported: Not Supported"` -> NotAvailable("Not Supported")."""
    if isinstance(value, str) and value.startswith("ERR"):
        _, _, reason = value.partition(": ")
        return NotAvailable(reason.strip() or value[3:].strip() or "refused by NVML")
    return NotAvailable("not recorded")


def _is_refusal(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.startswith("ERR"))


def _int(value: Any, where: str) -> int | NotAvailable:
    if _is_refusal(value):
        return _refused(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordingError(f"{where}: must be an integer or an 'ERR ...' string, got {value!r:.60}")
    return value


def _watts(value: Any, where: str) -> float | NotAvailable:
    milliwatts = _int(value, where)
    return milliwatts if isinstance(milliwatts, NotAvailable) else milliwatts / 1000.0


def _text(value: Any, where: str) -> str | NotAvailable:
    if _is_refusal(value):
        return _refused(value)
    if not isinstance(value, str):
        raise RecordingError(f"{where}: must be a string, got {value!r:.60}")
    return value


def _member(group: Any, key: str, where: str) -> int | NotAvailable:
    if _is_refusal(group):
        return _refused(group)
    if not isinstance(group, dict):
        raise RecordingError(f"{where}: must be an object with '{key}', got {group!r:.60}")
    return _int(group.get(key), f"{where}.{key}")


def _mig(value: Any, where: str) -> bool | NotAvailable:
    if _is_refusal(value):
        return _refused(value)
    if not isinstance(value, list) or not value or not isinstance(value[0], int):
        raise RecordingError(f"{where}: must be [current, pending] integers, got {value!r:.60}")
    return value[0] == 1


def _procs(value: Any, where: str) -> tuple[GpuProcess, ...] | NotAvailable:
    if _is_refusal(value):
        return _refused(value)
    if not isinstance(value, list):
        raise RecordingError(f"{where}: must be a list of {{'pid', 'used'}} objects, got {value!r:.60}")
    processes = []
    for position, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("pid"), int):
            raise RecordingError(f"{where}[{position}]: must be an object with an integer 'pid', got {item!r:.60}")
        used = item.get("used")
        if used is not None and not isinstance(used, int):
            raise RecordingError(f"{where}[{position}].used: must be bytes (integer) or null, got {used!r:.60}")
        processes.append(GpuProcess(pid=item["pid"], used_memory=used if used is not None else NotAvailable("not recorded")))
    return tuple(processes)


def _nvlink(value: Any, where: str) -> NvLinkInfo | NotAvailable:
    if _is_refusal(value):
        return _refused(value)
    if not isinstance(value, list):
        raise RecordingError(f"{where}: must be a list of link states, got {value!r:.60}")
    if not value:
        return NvLinkInfo(active_links=0)
    if _is_refusal(value[0]):
        return _refused(value[0])  # link 0 refused: this GPU has no NVLink (as on the H200 recording)
    return NvLinkInfo(active_links=sum(1 for state in value if state == 1))
