"""The readings recorded on a real H200 (tests/fixtures/gpus, see its README)."""

from __future__ import annotations

import json
from pathlib import Path

from pdtui.gpus.picking import busy_reason
from pdtui.gpus.recorded_source import RecordedSource
from pdtui.gpus.recording import load_recording
from pdtui.gpus.snapshot import NotAvailable
from pdtui.gpus.table import render_table

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gpus"


def test_proof_attributes_torch_memory_to_the_holder_pid_and_its_command_line():
    proof = json.loads((FIXTURES / "h200_torch_holder_proof.json").read_text())
    holder = proof["holder_pid"]
    assert proof["nvml_listed"] == [{"gpu": 0, "pid": holder, "used_memory": 9229565952}]
    [other] = proof["attribution_without_mapping"]
    [own] = proof["attribution_with_parent_mapped"]
    for record in (other, own):
        assert record["pid"] == holder and record["used_memory"] >= 8 * 1024**3
        assert record["command"] == proof["holder_argv"]
        assert record["user"] == "root"
    assert (other["owner"], other["instance"]) == ("other", None)
    assert (own["owner"], own["instance"]) == ("own", "torch-holder")


def test_cli_json_recorded_while_holding_replays_with_its_attribution():
    proof = json.loads((FIXTURES / "h200_torch_holder_proof.json").read_text())
    recording = load_recording(FIXTURES / "h200_pdtui_gpus_while_holding.json")
    gpu = recording.inventory.gpus[0]
    assert gpu.name == "NVIDIA H200" and gpu.memory_total == 150754820096
    assert gpu.memory_used > 9229565952  # the holder plus the driver's own share
    assert [p.pid for p in gpu.processes] == [proof["holder_pid"]]
    assert isinstance(gpu.fan_speed_pct, NotAvailable) and gpu.fan_speed_pct.reason == "Not Supported"
    assert isinstance(gpu.nvlink, NotAvailable)
    [holder] = recording.attributed
    assert holder.command == tuple(proof["holder_argv"])
    assert busy_reason(gpu, recording.attributed) == (
        f"GPU 0 is busy (8.6 GiB used by pid {proof['holder_pid']} of user root)"
    )
    source = RecordedSource(recording)
    table = render_table(source.poll(), source.recorded_processes)
    assert f"  0  {proof['holder_pid']}  other  root" in table
    assert "/opt/torch/.venv/bin/python3 -c import sys, time, torch" in table


def test_idle_h200_matches_the_shared_recording_shape():
    gpu = load_recording(FIXTURES / "h200_pdtui_gpus_idle.json").inventory.gpus[0]
    assert gpu.processes == ()
    assert gpu.memory_used == 644939776  # same idle footprint as shared/fixtures/nvml
    assert gpu.mig_enabled is False and gpu.persistence_mode is True
    assert isinstance(gpu.numa_node, NotAvailable)
