"""Helpers for the GPU picker: which GPUs fit, why one is busy, which share NVLink."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pdtui.gpus.processes import AttributedProcess
from pdtui.gpus.snapshot import GpuInventory, GpuSnapshot, NotAvailable

GIB = 1024**3
# An idle GPU still shows some memory used (the H200 recording: 0.6 GiB with no process).
IDLE_MEMORY_BYTES = 1 * GIB


def format_gib(value: int | NotAvailable) -> str:
    if isinstance(value, NotAvailable):
        return "N/A"
    return f"{value / GIB:.1f} GiB"


def filter_gpus(
    gpus: Iterable[GpuSnapshot],
    *,
    min_free_bytes: int = 0,
    max_utilization: float = 100.0,
) -> tuple[GpuSnapshot, ...]:
    """GPUs that can be picked: not lost, with at least `min_free_bytes` free and at
    most `max_utilization` % busy. A GPU whose free memory or utilization NVML does
    not report is kept only when that criterion is not asked for (0 / 100)."""
    picked = []
    for gpu in gpus:
        if gpu.lost:
            continue
        if min_free_bytes > 0:
            if isinstance(gpu.memory_free, NotAvailable) or gpu.memory_free < min_free_bytes:
                continue
        if max_utilization < 100.0:
            if isinstance(gpu.utilization_gpu, NotAvailable) or gpu.utilization_gpu > max_utilization:
                continue
        picked.append(gpu)
    return tuple(picked)


def pickable_gpus(
    inventory: GpuInventory, *, min_free_bytes: int = 0, max_utilization: float = 100.0
) -> tuple[GpuSnapshot, ...]:
    """`filter_gpus` over an inventory; empty when the inventory carries an error."""
    if inventory.error is not None:
        return ()
    return filter_gpus(inventory.gpus, min_free_bytes=min_free_bytes, max_utilization=max_utilization)


def busy_reason(
    gpu: GpuSnapshot,
    processes: Iterable[AttributedProcess] = (),
    *,
    idle_memory_bytes: int = IDLE_MEMORY_BYTES,
) -> str | None:
    """Why picking `gpu` would collide with something, or None if it looks free.

    Processes of pdtui's own instances (`owner == "own"`) and exited ones do not make a
    GPU busy. Without a process list (no permission, another container's pids), memory
    used beyond `idle_memory_bytes` still counts: NVML's numbers do not lie about that.
    """
    if gpu.lost:
        return f"{gpu.label} is lost ({gpu.lost_reason or 'GPU is lost'})"
    foreign = [
        p for p in processes if p.gpu_index == gpu.index and p.owner == "other"
    ]
    if foreign:
        foreign.sort(key=lambda p: p.used_memory if not isinstance(p.used_memory, NotAvailable) else -1, reverse=True)
        top = foreign[0]
        who = f"pid {top.pid}"
        if not isinstance(top.user, NotAvailable):
            who += f" of user {top.user}"
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        known = [p.used_memory for p in foreign if not isinstance(p.used_memory, NotAvailable)]
        if known:
            return f"{gpu.label} is busy ({format_gib(sum(known))} used by {who}{more})"
        return f"{gpu.label} is busy (used by {who}{more})"
    if not isinstance(gpu.memory_used, NotAvailable) and gpu.memory_used > idle_memory_bytes:
        listed = [p for p in processes if p.gpu_index == gpu.index and p.owner != "gone"]
        if not listed:
            return f"{gpu.label} is busy ({format_gib(gpu.memory_used)} used by processes NVML does not list)"
    return None


def nvlink_peers(inventory: GpuInventory, index: int) -> tuple[int, ...] | None:
    """Indices of the GPUs that `index` reaches over NVLink, or None when NVML does not
    say (no NVLink, or not supported): the UI then shows no topology hint at all."""
    gpu = inventory.gpu(index)
    if gpu is None or isinstance(gpu.nvlink, NotAvailable):
        return None
    if gpu.nvlink.active_links == 0:
        return ()
    peers: set[int] = set()
    by_bus = {
        other.pci_bus_id: other.index
        for other in inventory.gpus
        if not isinstance(other.pci_bus_id, NotAvailable)
    }
    for bus_id in gpu.nvlink.peer_bus_ids:
        if bus_id in by_bus and by_bus[bus_id] != index:
            peers.add(by_bus[bus_id])
    if gpu.nvlink.via_nvswitch:
        for other in inventory.gpus:
            if (
                other.index != index
                and not isinstance(other.nvlink, NotAvailable)
                and other.nvlink.via_nvswitch
            ):
                peers.add(other.index)
    return tuple(sorted(peers))


def nvlink_groups(inventory: GpuInventory) -> tuple[tuple[int, ...], ...] | None:
    """GPUs partitioned into NVLink-connected groups (e.g. ((0..7),) on an HGX board,
    ((0, 1), (2, 3)) on NVLink-bridged pairs); None when no GPU reports NVLink."""
    adjacency: dict[int, tuple[int, ...]] = {}
    for gpu in inventory.gpus:
        peers = nvlink_peers(inventory, gpu.index)
        if peers is not None:
            adjacency[gpu.index] = peers
    if not adjacency:
        return None
    groups: list[tuple[int, ...]] = []
    seen: set[int] = set()
    for start in sorted(adjacency):
        if start in seen:
            continue
        group, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node in group:
                continue
            group.add(node)
            todo.extend(adjacency.get(node, ()))
        seen |= group
        groups.append(tuple(sorted(group)))
    return tuple(groups)


def topology_hint(inventory: GpuInventory, chosen: Sequence[int]) -> str | None:
    """A one-line remark on a chosen GPU set (for tensor parallelism), or None when
    NVML gave no NVLink information."""
    if len(chosen) < 2:
        return None
    groups = nvlink_groups(inventory)
    if groups is None:
        return None
    for group in groups:
        if set(chosen) <= set(group):
            return f"GPUs {', '.join(map(str, sorted(chosen)))} share NVLink"
    return (
        f"GPUs {', '.join(map(str, sorted(chosen)))} are not all NVLink-connected "
        f"(NVLink groups: {' | '.join(','.join(map(str, g)) for g in groups)}); "
        "tensor parallelism across them goes over PCIe"
    )
