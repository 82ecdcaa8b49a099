"""NvmlSource against a fake pynvml that raises each real NVML error class at each call."""

from __future__ import annotations

import sys

import pynvml
import pytest

from pdtui.gpus.nvml_reasons import NO_GPU, NO_PYNVML, error_text
from pdtui.gpus.nvml_source import NvmlSource
from pdtui.gpus.picking import nvlink_peers
from pdtui.gpus.snapshot import GpuProcess, NotAvailable, NvLinkInfo
from tests.gpus.fake_pynvml import DEVICE_FUNCTIONS, ERROR_CLASSES, FIELDS_OF, FakeGpu, make_fake_pynvml


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def two_gpus() -> list[FakeGpu]:
    return [
        FakeGpu(uuid="GPU-aaaa", bus_id="00000000:19:00.0", processes=[(4242, 12 * 1024**3), (77, None)]),
        FakeGpu(uuid="GPU-bbbb", bus_id="0000:3b:00.0", used=2 * 1024**3, util_gpu=55, fan=40, mig=(1, 1)),
    ]


@pytest.fixture
def fake(monkeypatch):
    module = make_fake_pynvml(two_gpus())
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return module


def test_reads_every_field_with_units(fake):
    source = NvmlSource()
    inventory = source.poll()
    assert inventory.error is None and inventory.source == "nvml"
    assert (inventory.driver_version, inventory.cuda_driver_version) == ("580.159.04", "13.0")
    first, second = inventory.gpus
    assert first.name == "NVIDIA H200" and first.uuid == "GPU-aaaa"
    assert first.pci_bus_id == "00000000:19:00.0"
    assert second.pci_bus_id == "00000000:3B:00.0"  # normalised from NVML's short form
    assert (first.memory_total, first.memory_used) == (150754820096, 644939776)
    assert first.memory_free == 150754820096 - 644939776
    assert (first.utilization_gpu, first.utilization_memory) == (7, 3)
    assert first.power_draw_w == pytest.approx(129.766) and first.power_limit_w == 700.0
    assert (first.temperature_c, first.sm_clock_mhz, first.fan_speed_pct, first.numa_node) == (41, 1980, 30, 0)
    assert first.mig_enabled is False and second.mig_enabled is True
    assert first.persistence_mode is True and first.compute_mode == "Default"
    assert first.ecc_errors_uncorrected == 0
    assert first.processes[0] == GpuProcess(pid=4242, used_memory=12 * 1024**3)
    assert isinstance(first.processes[1].used_memory, NotAvailable)  # WDDM-style "unknown"
    assert isinstance(first.nvlink, NotAvailable) and first.nvlink.reason == "Not Supported"
    assert not first.lost and not second.lost
    source.close()
    assert fake.calls["nvmlShutdown"] == 1


@pytest.mark.parametrize("function", DEVICE_FUNCTIONS)
@pytest.mark.parametrize("error_class", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_each_error_at_each_call_never_raises(fake, function, error_class):
    fake.gpus[0].links = [(1, 0, "00000000:3B:00.0")]  # so the NVLink calls are reached
    fake.fail[function] = error_class
    inventory = NvmlSource().poll()
    assert inventory.error is None
    gpu = inventory.gpus[0]
    if error_class is pynvml.NVMLError_GpuIsLost:
        # GPU fell off the bus: a lost snapshot for every GPU this call reached, no exception.
        assert gpu.lost and gpu.lost_reason == "GPU is lost"
        assert isinstance(gpu.memory_used, NotAvailable)
        return
    assert not gpu.lost
    expected = error_text(error_class())
    for name in FIELDS_OF[function]:
        value = getattr(gpu, name)
        assert isinstance(value, NotAvailable), (function, name, value)
        assert value.reason == expected
        assert str(value) == "N/A"
    # Fields fed by other calls are untouched.
    if function != "nvmlDeviceGetMemoryInfo":
        assert gpu.memory_total == 150754820096
    if function != "nvmlDeviceGetName":
        assert gpu.name == "NVIDIA H200"


@pytest.mark.parametrize(
    ("function", "attribute"),
    [
        ("nvmlSystemGetDriverVersion", "driver_version"),
        ("nvmlSystemGetNVMLVersion", "nvml_version"),
        ("nvmlSystemGetCudaDriverVersion", "cuda_driver_version"),
    ],
)
@pytest.mark.parametrize("error_class", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_each_error_at_system_calls_is_not_available(fake, function, attribute, error_class):
    fake.fail[function] = error_class
    inventory = NvmlSource().poll()
    assert inventory.error is None and len(inventory.gpus) == 2
    value = getattr(inventory, attribute)
    assert isinstance(value, NotAvailable) and value.reason == error_text(error_class())


@pytest.mark.parametrize("error_class", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_each_error_at_handle_lookup_is_a_lost_gpu_not_a_crash(fake, error_class):
    fake.handle_errors[0] = error_class
    first, second = NvmlSource().poll().gpus
    assert first.lost and first.lost_reason == error_text(error_class())
    assert not second.lost


@pytest.mark.parametrize("error_class", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_each_error_at_init_gives_one_line_reason(fake, error_class):
    fake.init_error = error_class
    inventory = NvmlSource().poll()
    assert inventory.gpus == () and inventory.error
    assert "\n" not in inventory.error


def test_library_not_found_message_and_retry(fake):
    fake.init_error = pynvml.NVMLError_LibraryNotFound
    source = NvmlSource()
    assert source.poll().error == "NVIDIA driver library not found: is this a GPU machine? Try --demo"
    fake.init_error = None  # driver installed later: the next poll picks it up
    assert len(source.poll().gpus) == 2


def test_driver_not_loaded_and_count_errors(fake):
    fake.init_error = pynvml.NVMLError_DriverNotLoaded
    assert "driver is not loaded" in NvmlSource().poll().error
    fake.init_error = None
    fake.count_error = pynvml.NVMLError_Unknown
    assert NvmlSource().poll().error == "NVML could not count the GPUs: Unknown Error"
    assert fake.calls["nvmlShutdown"] == 1


def test_no_gpu(fake):
    fake.gpus.clear()
    assert NvmlSource().poll().error == NO_GPU


def test_pynvml_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    assert NvmlSource().poll().error == NO_PYNVML


def test_handle_refused_at_start_is_a_lost_gpu(fake):
    fake.handle_errors[1] = pynvml.NVMLError_GpuIsLost
    first, second = NvmlSource().poll().gpus
    assert not first.lost and second.lost and second.lost_reason == "GPU is lost"


def test_gpu_lost_mid_run_keeps_identity_then_recovers(fake):
    source = NvmlSource()
    assert not source.poll().gpus[1].lost
    fake.gpus[1].lost = True
    inventory = source.poll()
    lost = inventory.gpus[1]
    assert lost.lost and lost.name == "NVIDIA H200" and lost.uuid == "GPU-bbbb"
    assert lost.pci_bus_id == "00000000:3B:00.0"
    assert not inventory.gpus[0].lost  # the other GPU still reads
    fake.gpus[1].lost = False
    assert not source.poll().gpus[1].lost


def test_uninitialized_mid_run_restarts_nvml(fake):
    source = NvmlSource()
    source.poll()
    fake.initialised = False  # e.g. someone called nvmlShutdown in our process
    degraded = source.poll()
    assert isinstance(degraded.gpus[0].memory_used, NotAvailable)
    assert source.poll().gpus[0].memory_used == 644939776
    assert fake.calls["nvmlInit"] == 2


def test_slow_fields_cached_for_ttl_fast_fields_every_poll(fake):
    clock = FakeClock()
    source = NvmlSource(slow_ttl_s=5.0, clock=clock)
    for _ in range(3):
        source.poll()
    assert fake.calls["nvmlDeviceGetMemoryInfo"] == 6  # 2 GPUs x 3 polls
    assert fake.calls["nvmlDeviceGetFanSpeed"] == 2
    assert fake.calls["nvmlDeviceGetName"] == 2  # identity: read once
    fake.gpus[0].fan = 90
    assert source.poll().gpus[0].fan_speed_pct == 30  # still cached
    clock.now += 5.1
    assert source.poll().gpus[0].fan_speed_pct == 90
    assert fake.calls["nvmlDeviceGetName"] == 2


def test_nvlink_peers_direct_and_through_nvswitch(monkeypatch):
    bus = ["00000000:19:00.0", "00000000:3B:00.0", "00000000:4C:00.0", "00000000:5D:00.0"]
    enabled, gpu_type, switch = pynvml.NVML_FEATURE_ENABLED, pynvml.NVML_NVLINK_DEVICE_TYPE_GPU, pynvml.NVML_NVLINK_DEVICE_TYPE_SWITCH
    gpus = [
        FakeGpu(bus_id=bus[0], links=[(enabled, gpu_type, bus[1]), (enabled, gpu_type, bus[1]), (0, gpu_type, bus[2])]),
        FakeGpu(bus_id=bus[1], links=[(enabled, gpu_type, bus[0]), (enabled, gpu_type, bus[0])]),
        FakeGpu(bus_id=bus[2], links=[(enabled, switch, "00000000:99:00.0")]),
        FakeGpu(bus_id=bus[3], links=[(enabled, switch, "00000000:99:00.0")]),
    ]
    monkeypatch.setitem(sys.modules, "pynvml", make_fake_pynvml(gpus))
    inventory = NvmlSource().poll()
    assert inventory.gpus[0].nvlink == NvLinkInfo(active_links=2, peer_bus_ids=(bus[1],), via_nvswitch=False)
    assert nvlink_peers(inventory, 0) == (1,)
    assert nvlink_peers(inventory, 2) == (3,)
    assert inventory.gpus[2].nvlink.via_nvswitch


def test_real_pynvml_on_this_machine():
    """Whatever this host is, the real library gives GPUs or a one-line reason."""
    source = NvmlSource()
    try:
        inventory = source.poll()
    finally:
        source.close()
    if inventory.error is not None:
        assert "\n" not in inventory.error and inventory.gpus == ()
    else:
        assert inventory.gpus and all(isinstance(g.index, int) for g in inventory.gpus)


@pytest.mark.parametrize("error_class", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_each_error_at_count_and_shutdown_is_contained(fake, error_class):
    fake.count_error = error_class
    inventory = NvmlSource().poll()
    assert inventory.gpus == () and inventory.error == f"NVML could not count the GPUs: {error_text(error_class())}"
    fake.count_error = None
    fake.nvmlShutdown = lambda: (_ for _ in ()).throw(error_class())  # raising shutdown
    source = NvmlSource()
    assert len(source.poll().gpus) == 2
    source.close()  # must not raise


def test_gpu_count_for_host_checks(fake):
    from pdtui.gpus import gpu_count

    assert gpu_count() == (2, None)
    assert fake.calls["nvmlShutdown"] == 1
    fake.init_error = pynvml.NVMLError_LibraryNotFound
    assert gpu_count() == (None, "NVIDIA driver library not found: is this a GPU machine? Try --demo")
    fake.init_error = None
    fake.count_error = pynvml.NVMLError_NoPermission
    assert gpu_count() == (None, "NVML could not count the GPUs: Insufficient Permissions")
