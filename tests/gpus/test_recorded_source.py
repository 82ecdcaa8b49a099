"""RecordedSource: replaying the real H200 recording, synthesizing a box, bad files."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pdtui.gpus.json_format import WRITTEN_FIELDS, RecordingError, inventory_to_dict
from pdtui.gpus.recorded_source import IDLE_UTILIZATION_MAX, RecordedSource
from pdtui.gpus.recording import load_recording
from pdtui.gpus.snapshot import GpuSnapshot, NotAvailable


@pytest.fixture
def h200(shared_fixtures):
    return shared_fixtures / "nvml" / "nvml_h200.json"


def test_replays_the_h200_recording_field_by_field(h200):
    source = RecordedSource(h200)
    inventory = source.poll()
    assert inventory.source == "recorded" and inventory.error is None
    assert (inventory.driver_version, inventory.nvml_version, inventory.cuda_driver_version) == (
        "580.159.04",
        "13.580.159.04",
        "13.0",
    )
    [gpu] = inventory.gpus
    assert gpu.name == "NVIDIA H200" and gpu.uuid == "GPU-8669f6a0-1f66-2a76-5d6a-7a2af1a78b3c"
    assert gpu.pci_bus_id == "00000000:00:06.0"
    assert (gpu.memory_total, gpu.memory_used, gpu.memory_free) == (150754820096, 644939776, 150109880320)
    assert (gpu.utilization_gpu, gpu.temperature_c, gpu.sm_clock_mhz) == (0, 41, 1980)
    assert gpu.power_draw_w == pytest.approx(129.766) and gpu.power_limit_w == 700.0
    assert gpu.mig_enabled is False and gpu.persistence_mode is True and gpu.compute_mode == "Default"
    for refused in (gpu.fan_speed_pct, gpu.numa_node, gpu.nvlink):
        assert isinstance(refused, NotAvailable) and refused.reason == "Not Supported"
        assert str(refused) == "N/A"
    assert gpu.processes == ()
    assert source.poll().gpus == inventory.gpus  # a replay does not move


def test_synthesized_box_is_distinct_moving_and_seeded(h200):
    polls_a = [RecordedSource(h200, synthesize_gpus=8, seed=7).poll() for _ in range(1)]
    source_a = RecordedSource(h200, synthesize_gpus=8, seed=7)
    source_b = RecordedSource(h200, synthesize_gpus=8, seed=7)
    source_c = RecordedSource(h200, synthesize_gpus=8, seed=8)
    run_a = [source_a.poll().gpus for _ in range(20)]
    run_b = [source_b.poll().gpus for _ in range(20)]
    run_c = [source_c.poll().gpus for _ in range(20)]
    assert polls_a[0].source == "simulated"
    assert run_a == run_b  # same seed, same sequence
    assert run_a != run_c
    gpus = run_a[0]
    assert [g.index for g in gpus] == list(range(8))
    assert len({g.uuid for g in gpus}) == 8 and len({g.pci_bus_id for g in gpus}) == 8
    utilization_series = [[poll[i].utilization_gpu for poll in run_a] for i in range(8)]
    assert any(len(set(series)) > 1 for series in utilization_series)  # it moves
    for poll in run_a:
        for gpu in poll:
            assert 0 <= gpu.utilization_gpu <= IDLE_UTILIZATION_MAX  # idle GPUs read ~0 %, as real ones
            assert gpu.memory_used + gpu.memory_free == gpu.memory_total
            assert gpu.power_draw_w <= gpu.power_limit_w
            assert gpu.nvlink.via_nvswitch  # an HGX board


def test_demo_works_without_shared_fixtures():
    inventory = RecordedSource.demo(4, seed=1).poll()
    assert [g.name for g in inventory.gpus] == ["NVIDIA H200"] * 4


@pytest.mark.parametrize("count", [0, -1, 65])
def test_synthesize_count_is_checked(count):
    with pytest.raises(ValueError, match="between 1 and 64"):
        RecordedSource.demo(count)


def test_pdtui_json_round_trip(h200, tmp_path):
    inventory = RecordedSource(h200, synthesize_gpus=3, seed=2).poll()
    path = tmp_path / "inv.json"
    path.write_text(json.dumps(inventory_to_dict(inventory)))
    replayed = RecordedSource(path).poll()
    assert replayed.gpus == inventory.gpus
    assert replayed.driver_version == inventory.driver_version


def test_json_writer_covers_every_snapshot_field():
    assert WRITTEN_FIELDS == {f.name for f in dataclasses.fields(GpuSnapshot)}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "not valid JSON (line 1"),
        ("[1, 2]", "must hold a JSON object, got list"),
        ('{"hello": 1}', "not a GPU recording"),
        ('{"devices": {}}', "field 'devices' must be a list"),
        ('{"devices": []}', "lists no GPU"),
        ('{"devices": [{"temp_c": "hot"}]}', "devices[0].temp_c: must be an integer or an 'ERR ...' string, got 'hot'"),
        ('{"devices": [{"mem": 5}]}', "devices[0].mem: must be an object with 'total'"),
        ('{"devices": [{"procs": [{"pid": "x"}]}]}', "devices[0].procs[0]: must be an object with an integer 'pid'"),
        ('{"format": "pdtui.gpus/1", "gpus": [{"index": -1}]}', "gpus[0].index: must be a GPU index"),
        ('{"format": "pdtui.gpus/1", "gpus": [{"index": 0, "memory_total": "big"}]}', "gpus[0].memory_total: must be int or null"),
    ],
)
def test_bad_recordings_name_file_field_and_value(tmp_path, content, expected):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(RecordingError) as caught:
        load_recording(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_missing_recording_file(tmp_path):
    with pytest.raises(RecordingError, match="no such GPU recording file"):
        RecordedSource(tmp_path / "nope.json")
