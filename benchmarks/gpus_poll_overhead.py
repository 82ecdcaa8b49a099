"""How much one GPU poll costs pdtui, per GPU.

    PYTHONPATH=. python3 benchmarks/gpus_poll_overhead.py [--polls 2000]

* RecordedSource (demo, 8 synthesized H200s), with and without a simulated-engine
  overlay directory: pure pdtui cost, no NVML.
* On a GPU host: NvmlSource.poll() against the same five fields read with raw pynvml
  calls (memory, utilization, temperature, power, compute processes: the ~24 µs/GPU the
  H200 recording measured). pdtui's overhead = NvmlSource minus raw.
* attribute_processes() per process, when the GPUs have processes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def per_call_us(fn: Callable[[], object], repeats: int) -> float:
    """Median of 5 batches, in microseconds per call."""
    batches = []
    batch = max(1, repeats // 5)
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(batch):
            fn()
        batches.append((time.perf_counter() - started) / batch * 1e6)
    return statistics.median(batches)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--polls", type=int, default=2000)
    args = parser.parse_args()

    from pdtui.gpus.nvml_source import NvmlSource
    from pdtui.gpus.processes import ProcessAttributor
    from pdtui.gpus.recorded_source import RecordedSource

    demo = RecordedSource.demo(8, seed=0)
    us = per_call_us(demo.poll, args.polls)
    print(f"RecordedSource demo, 8 GPUs:               {us:8.1f} us/poll  = {us / 8:6.2f} us per GPU per poll")

    with tempfile.TemporaryDirectory() as sim_dir:
        for n in range(4):
            Path(sim_dir, f"{os.getpid()}-{n}.json").write_text(json.dumps({
                "pid": os.getpid(), "name": f"engine-{n}", "role": "decoder", "port": 7100 + n,
                "gpus": [2 * n, 2 * n + 1], "memory_bytes": 40 * 1024**3, "utilization": 60.0,
                "updated": time.time() + 3600,
            }))
        overlay = RecordedSource.demo(8, seed=0, sim_gpu_dir=sim_dir)
        us = per_call_us(overlay.poll, args.polls)
        print(f"RecordedSource demo + 4 engine files:      {us:8.1f} us/poll  = {us / 8:6.2f} us per GPU per poll")
        attributor = ProcessAttributor()
        gpus = overlay.poll().gpus
        count = sum(len(g.processes) for g in gpus)
        us = per_call_us(lambda: attributor.attribute(gpus, {}), args.polls // 4)
        print(f"attribute_processes, {count} processes (cached): {us:8.1f} us/call = {us / count:6.2f} us per process")
        us = per_call_us(lambda: ProcessAttributor().attribute(gpus, {}), max(5, args.polls // 20))
        print(f"attribute_processes, {count} processes (cold):   {us:8.1f} us/call = {us / count:6.2f} us per process")

    source = NvmlSource()
    inventory = source.poll()
    if inventory.error is not None:
        print(f"NvmlSource: skipped ({inventory.error})")
        return 0
    n = len(inventory.gpus)
    nvml_us = per_call_us(source.poll, args.polls)
    import pynvml

    handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(n)]

    def raw() -> None:
        for h in handles:
            pynvml.nvmlDeviceGetMemoryInfo(h)
            pynvml.nvmlDeviceGetUtilizationRates(h)
            pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)
            pynvml.nvmlDeviceGetPowerUsage(h)
            pynvml.nvmlDeviceGetComputeRunningProcesses(h)

    raw_us = per_call_us(raw, args.polls)
    print(f"raw pynvml, 5 fields, {n} GPU(s):            {raw_us:8.1f} us/poll  = {raw_us / n:6.2f} us per GPU per poll")
    print(f"NvmlSource.poll, all fields, {n} GPU(s):     {nvml_us:8.1f} us/poll  = {nvml_us / n:6.2f} us per GPU per poll")
    print(f"pdtui overhead over raw NVML:              {(nvml_us - raw_us) / n:8.2f} us per GPU per poll")
    attributor = ProcessAttributor()
    gpus = source.poll().gpus
    count = sum(len(g.processes) for g in gpus if isinstance(g.processes, tuple))
    if count:
        us = per_call_us(lambda: attributor.attribute(gpus, {}), args.polls // 4)
        print(f"attribute_processes on NVML pids, {count}:     {us:8.1f} us/call = {us / count:6.2f} us per process")
    source.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
