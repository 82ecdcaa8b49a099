"""The `pdtui gpus` table: what nvidia-smi shows, plus who owns each process."""

from __future__ import annotations

import time
from collections.abc import Sequence

from pdtui.gpus.picking import GIB, nvlink_groups
from pdtui.gpus.processes import AttributedProcess, describe_started
from pdtui.gpus.snapshot import GpuInventory, GpuSnapshot, NotAvailable

_GPU_COLUMNS = ("GPU", "Name", "Bus-Id", "Temp", "Power / Cap", "Memory used / total", "Util", "Mem util", "SM clock", "MIG", "ECC", "Fan")
_PROCESS_COLUMNS = ("GPU", "PID", "Owner", "User", "GPU memory", "Started", "Command")
_MAX_COMMAND = 80


def render_table(
    inventory: GpuInventory,
    processes: Sequence[AttributedProcess] = (),
    *,
    now: float | None = None,
) -> str:
    lines = [_header(inventory)]
    if inventory.error is not None:
        lines.append(f"No GPU: {inventory.error}")
        return "\n".join(lines) + "\n"
    lines.append("")
    lines.extend(_grid(_GPU_COLUMNS, [_gpu_row(g) for g in inventory.gpus], right={0, 3, 4, 5, 6, 7, 8, 10, 11}))
    groups = nvlink_groups(inventory)
    if groups is not None:
        lines.append("")
        lines.append("NVLink groups: " + " | ".join(_span(g) for g in groups))
    lines.append("")
    lines.append("Processes:")
    if processes:
        now = time.time() if now is None else now
        rows = [_process_row(p, now) for p in sorted(processes, key=lambda p: (p.gpu_index, p.pid))]
        lines.extend("  " + line for line in _grid(_PROCESS_COLUMNS, rows, right={0, 1, 4}))
    else:
        unreadable = [g.label for g in inventory.gpus if isinstance(g.processes, NotAvailable) and not g.lost]
        lines.append("  No running compute processes found" + (f" (not readable on {', '.join(unreadable)})" if unreadable else ""))
    for note in inventory.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines) + "\n"


def _header(inventory: GpuInventory) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(inventory.timestamp)) if inventory.timestamp else "N/A"
    return (
        f"pdtui gpus · source {inventory.source} · driver {inventory.driver_version} · "
        f"NVML {inventory.nvml_version} · CUDA {inventory.cuda_driver_version} · {when}"
    )


def _gpu_row(gpu: GpuSnapshot) -> list[str]:
    if gpu.lost:
        return [str(gpu.index), str(gpu.name), str(gpu.pci_bus_id), "LOST", gpu.lost_reason or "GPU is lost", "", "", "", "", "", "", ""]
    return [
        str(gpu.index),
        str(gpu.name),
        str(gpu.pci_bus_id),
        _unit(gpu.temperature_c, "C"),
        f"{_watts(gpu.power_draw_w)} / {_watts(gpu.power_limit_w)}",
        f"{_gib(gpu.memory_used)} / {_gib(gpu.memory_total)} GiB",
        _unit(gpu.utilization_gpu, "%"),
        _unit(gpu.utilization_memory, "%"),
        _unit(gpu.sm_clock_mhz, " MHz"),
        "N/A" if isinstance(gpu.mig_enabled, NotAvailable) else ("on" if gpu.mig_enabled else "off"),
        str(gpu.ecc_errors_uncorrected),
        _unit(gpu.fan_speed_pct, "%"),
    ]


def _process_row(process: AttributedProcess, now: float) -> list[str]:
    command = process.command_line
    if len(command) > _MAX_COMMAND:
        command = command[: _MAX_COMMAND - 1] + "…"
    owner = process.owner if process.instance is None else f"own:{process.instance}"
    if process.orphan_of:
        owner = f"orphan of {process.orphan_of}"
    return [
        str(process.gpu_index),
        str(process.pid),
        owner,
        str(process.user),
        _gib(process.used_memory) + " GiB" if not isinstance(process.used_memory, NotAvailable) else "N/A",
        describe_started(process.started, now),
        command,
    ]


def _unit(value: object, unit: str) -> str:
    return "N/A" if isinstance(value, NotAvailable) else f"{value}{unit}"


def _watts(value: float | NotAvailable) -> str:
    return "N/A" if isinstance(value, NotAvailable) else f"{value:.0f}W"


def _gib(value: int | NotAvailable) -> str:
    return "N/A" if isinstance(value, NotAvailable) else f"{value / GIB:.1f}"


def _span(group: Sequence[int]) -> str:
    if len(group) > 2 and list(group) == list(range(group[0], group[-1] + 1)):
        return f"GPU {group[0]}-{group[-1]}"
    return "GPU " + ",".join(map(str, group))


def _grid(headers: Sequence[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [len(h) for h in headers]
    for row in rows:
        for column, cell in enumerate(row):
            widths[column] = max(widths[column], len(cell))

    def line(cells: Sequence[str]) -> str:
        out = []
        for column, cell in enumerate(cells):
            out.append(cell.rjust(widths[column]) if column in right else cell.ljust(widths[column]))
        return "  ".join(out).rstrip()

    return [line(headers), *(line(row) for row in rows)]
