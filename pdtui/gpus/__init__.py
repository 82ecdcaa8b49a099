"""GPU inventory: NVML (`NvmlSource`) or recorded/simulated (`RecordedSource`) behind one
interface (`GpuSource.poll() -> GpuInventory`), process attribution, a poller and the
picking helpers. Names are loaded on first use so that `pdtui --help` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "NA": "snapshot",
    "NotAvailable": "snapshot",
    "GpuInventory": "snapshot",
    "GpuProcess": "snapshot",
    "GpuSnapshot": "snapshot",
    "NvLinkInfo": "snapshot",
    "is_available": "snapshot",
    "GpuSource": "source",
    "NvmlSource": "nvml_source",
    "gpu_count": "nvml_source",
    "RecordedSource": "recorded_source",
    "RecordingError": "json_format",
    "load_recording": "recording",
    "AttributedProcess": "processes",
    "ProcessAttributor": "processes",
    "attribute_processes": "processes",
    "GpuPoller": "poller",
    "busy_reason": "picking",
    "filter_gpus": "picking",
    "pickable_gpus": "picking",
    "nvlink_peers": "picking",
    "nvlink_groups": "picking",
    "topology_hint": "picking",
    "inventory_to_dict": "json_format",
    "render_table": "table",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pdtui.gpus' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pdtui.gpus.{module}"), name)
