"""Picker helpers: filters, busy warnings, NVLink topology hints."""

from __future__ import annotations

import pytest

from pdtui.gpus.picking import busy_reason, filter_gpus, nvlink_groups, nvlink_peers, pickable_gpus, topology_hint
from pdtui.gpus.processes import AttributedProcess
from pdtui.gpus.recorded_source import RecordedSource
from pdtui.gpus.snapshot import GpuInventory, GpuProcess, GpuSnapshot, NotAvailable, NvLinkInfo

GIB = 1024**3
TOTAL = 140 * GIB


def gpu(index: int, used_gib: float = 0.5, util: int | NotAvailable = 0, **kw) -> GpuSnapshot:
    used = int(used_gib * GIB)
    return GpuSnapshot(index=index, memory_total=TOTAL, memory_used=used, memory_free=TOTAL - used, utilization_gpu=util, **kw)


def proc(index: int, pid: int, gib: float, owner: str = "other", user: str | NotAvailable = "alice") -> AttributedProcess:
    return AttributedProcess(gpu_index=index, pid=pid, used_memory=int(gib * GIB), owner=owner, user=user)


def test_filter_by_free_memory_and_utilization():
    gpus = [gpu(0), gpu(1, used_gib=100), gpu(2, util=90), gpu(3, util=NotAvailable("Not Supported")), gpu(4, lost=True, lost_reason="GPU is lost")]
    assert [g.index for g in filter_gpus(gpus)] == [0, 1, 2, 3]
    assert [g.index for g in filter_gpus(gpus, min_free_bytes=80 * GIB)] == [0, 2, 3]
    assert [g.index for g in filter_gpus(gpus, max_utilization=50)] == [0, 1]
    error = GpuInventory(gpus=tuple(gpus), timestamp=0, source="nvml", error="no driver")
    assert pickable_gpus(error) == ()


def test_busy_reason_names_the_biggest_foreign_process():
    g = gpu(3, used_gib=13)
    assert busy_reason(g, [proc(3, 4242, 12.4)]) == "GPU 3 is busy (12.4 GiB used by pid 4242 of user alice)"
    two = [proc(3, 4242, 12.4), proc(3, 17, 20.0, user="bob")]
    assert busy_reason(g, two) == "GPU 3 is busy (32.4 GiB used by pid 17 of user bob and 1 more)"
    unknown_user = [proc(3, 99, 1.0, user=NotAvailable("access denied"))]
    assert busy_reason(g, unknown_user) == "GPU 3 is busy (1.0 GiB used by pid 99)"
    # Processes on other GPUs, our own and exited ones do not count.
    assert busy_reason(gpu(3), [proc(2, 1, 5.0), proc(3, 2, 5.0, owner="own"), proc(3, 3, 5.0, owner="gone")]) is None


def test_busy_reason_without_a_process_list_uses_memory():
    hidden = gpu(1, used_gib=30, processes=NotAvailable("Insufficient Permissions"))
    assert busy_reason(hidden) == "GPU 1 is busy (30.0 GiB used by processes NVML does not list)"
    assert busy_reason(gpu(1, used_gib=0.6)) is None  # the idle H200 footprint
    lost = gpu(2, lost=True, lost_reason="GPU is lost")
    assert busy_reason(lost) == "GPU 2 is lost (GPU is lost)"


def test_topology_none_when_nvml_does_not_say(shared_fixtures):
    inventory = RecordedSource(shared_fixtures / "nvml" / "nvml_h200.json").poll()
    assert nvlink_peers(inventory, 0) is None
    assert nvlink_groups(inventory) is None
    assert topology_hint(inventory, [0]) is None


def test_topology_on_an_hgx_box_and_on_bridged_pairs():
    box = RecordedSource.demo(8, seed=0).poll()
    assert nvlink_peers(box, 0) == (1, 2, 3, 4, 5, 6, 7)
    assert nvlink_groups(box) == ((0, 1, 2, 3, 4, 5, 6, 7),)
    assert topology_hint(box, [0, 5]) == "GPUs 0, 5 share NVLink"
    bus = [f"00000000:{b:02X}:00.0" for b in (0x19, 0x3B, 0x4C, 0x5D)]
    pairs = GpuInventory(
        gpus=(
            gpu(0, pci_bus_id=bus[0], nvlink=NvLinkInfo(4, (bus[1],))),
            gpu(1, pci_bus_id=bus[1], nvlink=NvLinkInfo(4, (bus[0],))),
            gpu(2, pci_bus_id=bus[2], nvlink=NvLinkInfo(4, (bus[3],))),
            gpu(3, pci_bus_id=bus[3], nvlink=NvLinkInfo(4, (bus[2],))),
        ),
        timestamp=0,
        source="nvml",
    )
    assert nvlink_groups(pairs) == ((0, 1), (2, 3))
    hint = topology_hint(pairs, [1, 2])
    assert hint is not None and "not all NVLink-connected" in hint and "0,1 | 2,3" in hint


@pytest.mark.parametrize("value", [NotAvailable("Not Supported"), NotAvailable()])
def test_not_available_is_falsy_and_prints_na(value):
    assert not value and str(value) == "N/A" and f"{value}" == "N/A"
    assert GpuProcess(pid=1, used_memory=value).used_memory is value
