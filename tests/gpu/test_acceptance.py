"""The acceptance script itself: end to end on the simulated engine here, on the real one
where vLLM and a GPU exist (marked gpu + vllm, skipped otherwise)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from tests.gpu import acceptance
from tests.gpu.leftovers import listening_ports

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "configs" / "h200-tiny-1p1d.yaml"
PORTS = {7100, 7200, 7300, 7400, 7500, 9100}  # the profile's fixed ports


@pytest.mark.timeout(240)
def test_acceptance_passes_end_to_end_on_the_simulator(tmp_path, monkeypatch):
    busy = PORTS & set(listening_ports())
    if busy:
        pytest.skip(f"the profile's ports are in use here: {sorted(busy)}")
    monkeypatch.setenv("PDTUI_SIM_STARTUP_S", "1")
    rc = acceptance.main([str(PROFILE), "--out", str(tmp_path / "out"), "--sim", "--rounds", "1"])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert rc == 0, [c for c in summary["checks"] if not c["ok"]]
    assert {c["check"] for c in summary["checks"]} >= {"up", "requests", "decoder LMCache hit tokens", "pdtui logscan",
                                                       "down", "ports closed", "GPU empty"}
    assert (tmp_path / "out" / "run.tar.gz").is_file()


def test_refuses_an_output_dir_that_is_not_empty(tmp_path, capsys):
    (tmp_path / "x").write_text("")
    assert acceptance.main([str(PROFILE), "--out", str(tmp_path), "--sim"]) == 2
    assert "not empty" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.vllm
@pytest.mark.timeout(900)
@pytest.mark.parametrize("profile", ["h200-tiny-1p1d.yaml", "h200-tiny-nixl.yaml"])
def test_acceptance_on_a_real_gpu(tmp_path, profile):
    if importlib.util.find_spec("vllm") is None or shutil.which("nvidia-smi") is None:
        pytest.skip("needs vLLM and an NVIDIA GPU")
    if not Path("/root/tiny-llama/config.json").is_file():
        pytest.skip("needs the tiny model: python3 ../shared/gpu-lab/make_tiny_llama.py /root/tiny-llama")
    rc = acceptance.main([str(REPO / "configs" / profile), "--out", str(tmp_path / "out")])
    assert rc == 0, (tmp_path / "out" / "summary.json").read_text()
