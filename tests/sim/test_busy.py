"""Simulated GPU utilization follows the request load (averaged like NVML), not a snapshot."""

from __future__ import annotations

import json
import signal
import threading
import time

from pdtui.sim.busy import BusyMeter
from tests.sim.helpers import start_sim


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_meter_averages_the_load_over_its_window() -> None:
    clock = _Clock()
    meter = BusyMeter(window_s=1.0, clock=clock)
    assert meter.average() == 0.0
    # Ten 20 ms requests at 97 % in one second: 0.2 s busy -> 19.4 %.
    for _ in range(10):
        meter.set_level(97.0)
        clock.now += 0.02
        meter.set_level(0.0)
        clock.now += 0.08
    assert meter.average() == 19.4
    # Back to back at 50 %: the average climbs to 50 and stays there.
    meter.set_level(50.0)
    clock.now += 1.0
    assert meter.average() == 50.0
    clock.now += 5.0
    assert meter.average() == 50.0
    # Idle: half a window later half the load is left, a window later none.
    meter.set_level(0.0)
    clock.now += 0.5
    assert meter.average() == 25.0
    clock.now += 0.5
    assert meter.average() == 0.0


def test_meter_forgets_what_left_the_window() -> None:
    clock = _Clock()
    meter = BusyMeter(window_s=1.0, clock=clock)
    for _ in range(1000):
        meter.set_level(80.0)
        clock.now += 0.001
        meter.set_level(0.0)
        clock.now += 0.009
    assert len(meter._past) <= 101  # bounded by the window, not by the number of requests
    assert abs(meter.average() - 8.0) < 0.2


def test_engine_utilization_follows_a_light_load_between_zero_and_a_busy_level(tmp_path) -> None:
    """One short request every ~0.6 s keeps the GPU busy a small share of the time: the file
    must read a small, non-zero figure (an instantaneous sample would read 0 or >= 45)."""
    gpu_dir = tmp_path / "gpus"
    sim = start_sim(tmp_path, env={"PDTUI_SIM_GPU_DIR": str(gpu_dir), "PDTUI_SIM_DECODE_MS_PER_TOKEN": "10"})
    stop = threading.Event()

    def light_load() -> None:
        while not stop.is_set():
            sim.post("/v1/completions", {"prompt": "hello there", "max_tokens": 8}, 30)
            stop.wait(0.6)

    try:
        sim.wait_healthy()
        worker = threading.Thread(target=light_load, daemon=True)
        worker.start()
        readings: list[float] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(0 < r < 45 for r in readings):
            for path in gpu_dir.glob("*.json"):
                try:
                    readings.append(json.loads(path.read_text())["utilization"])
                except (OSError, ValueError, KeyError):
                    pass
            time.sleep(0.1)
        stop.set()
        worker.join(60)
        assert any(0 < r < 45 for r in readings), f"no averaged reading under a light load: {readings[-20:]}"
        # Idle again: back to 0 within a few windows.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            values = [json.loads(p.read_text())["utilization"] for p in gpu_dir.glob("*.json")]
            if values and all(v == 0 for v in values):
                break
            time.sleep(0.2)
        assert values and all(v == 0 for v in values)
    finally:
        stop.set()
        sim.stop(signal.SIGKILL)
