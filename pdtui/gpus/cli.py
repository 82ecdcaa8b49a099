"""`pdtui gpus`: print the GPU inventory once, like nvidia-smi, from any source.

Imports only the standard library at import time (see docs/interfaces.md); the GPU
modules are imported inside the command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

DEFAULT_DEMO_GPUS = 8


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "gpus",
        help="print the GPU inventory (NVML, a recording, or the demo box)",
        description=(
            "Print each GPU (memory, utilization, temperature, power, clocks, MIG, ECC, NVLink) "
            "and the compute processes on it with their user, command line and owner."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print JSON (format pdtui.gpus/1) instead of a table")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--demo",
        dest="gpus_demo",
        nargs="?",
        type=_gpu_count,
        const=DEFAULT_DEMO_GPUS,
        default=None,
        metavar="N",
        help=f"simulated box of N H200s synthesized from a real recording (default {DEFAULT_DEMO_GPUS})",
    )
    source.add_argument(
        "--replay",
        dest="gpus_replay",
        metavar="FILE",
        help="replay a recording: `pdtui gpus --json` output or an NVML recording like nvml_h200.json",
    )
    parser.add_argument("--seed", dest="gpus_seed", type=int, default=None, metavar="SEED", help="seed for --demo (repeatable output)")
    parser.add_argument(
        "--sim-gpu-dir",
        dest="gpus_sim_dir",
        default=os.environ.get("PDTUI_SIM_GPU_DIR"),
        metavar="DIR",
        help="overlay simulated engines' GPU usage from DIR (default: $PDTUI_SIM_GPU_DIR)",
    )
    parser.set_defaults(func=run_gpus)


def _gpu_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--demo takes a number of GPUs, got {text!r}") from None
    if not 1 <= count <= 64:
        raise argparse.ArgumentTypeError(f"--demo takes 1 to 64 GPUs, got {count}")
    return count


def run_gpus(args: argparse.Namespace) -> int:
    from pdtui.gpus.json_format import RecordingError, inventory_to_dict
    from pdtui.gpus.nvml_source import NvmlSource
    from pdtui.gpus.processes import attribute_processes
    from pdtui.gpus.recorded_source import RecordedSource
    from pdtui.gpus.source import GpuSource
    from pdtui.gpus.table import render_table

    demo = getattr(args, "gpus_demo", None)
    replay = getattr(args, "gpus_replay", None)
    sim_dir = getattr(args, "gpus_sim_dir", None)
    source: GpuSource
    try:
        if demo is not None:
            source = RecordedSource.demo(demo, seed=getattr(args, "gpus_seed", None), sim_gpu_dir=sim_dir)
        elif replay is not None:
            source = RecordedSource(replay)
        else:
            source = NvmlSource()
    except RecordingError as exc:
        print(f"pdtui gpus: {exc}", file=sys.stderr)
        return 2
    try:
        inventory = source.poll()
        if isinstance(source, RecordedSource) and source.kind == "recorded":
            # The recording's pids belong to another machine: show what was recorded.
            processes = source.recorded_processes
        else:
            processes = attribute_processes(inventory.gpus)
    finally:
        source.close()
    if args.json:  # scripts get the JSON even when there is no GPU: "error" says why
        json.dump(inventory_to_dict(inventory, processes), sys.stdout, indent=1)
        sys.stdout.write("\n")
    elif inventory.error is None:
        sys.stdout.write(render_table(inventory, processes))
    if inventory.error is not None:
        print(f"pdtui gpus: {inventory.error}", file=sys.stderr)
        return 1
    return 0
