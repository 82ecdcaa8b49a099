"""UI test helpers: an isolated config/state home, a demo profile on free ports, and a
deterministic simulated GPU box."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pdtui.model.presets import resolve_profile_path
from tests.conftest import free_port

FIXED_TIME = 1_780_000_000.0


@pytest.fixture(autouse=True)
def ui_home(tmp_path, monkeypatch) -> Path:
    """Keep the user's real config, keys, themes, cache and runs out of every UI test."""
    home = tmp_path / "home"
    monkeypatch.setenv("PDTUI_CONFIG_DIR", str(home / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg-config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    return home


def demo_profile_on_free_ports(directory: Path, startup_s: float = 0.5) -> Path:
    """configs/demo.yaml with every port free right now and quick simulated start-ups."""
    data = yaml.safe_load(resolve_profile_path("demo").read_text())
    data["proxy"]["port"] = free_port()
    data["proxy"]["zmq_port"] = free_port()
    for inst in data["prefillers"] + data["decoders"]:
        inst["port"] = free_port()
        inst.setdefault("sim", {})["startup_s"] = startup_s
        if "nixl_init_ports" in inst:
            inst["nixl_init_ports"] = [free_port()]
            inst["nixl_alloc_ports"] = [free_port()]
    path = directory / "demo-free.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def free_demo_profile(tmp_path) -> Path:
    return demo_profile_on_free_ports(tmp_path)


def fixed_reading():
    """One poll of an 8-GPU simulated box, the same on every run (seeded, fixed clock)."""
    from pdtui.gpus.recorded_source import RecordedSource
    from pdtui.ui.gpu_feed import GpuReading

    source = RecordedSource.demo(8, seed=3, wall_clock=lambda: FIXED_TIME)
    return GpuReading(source.poll(), ())
