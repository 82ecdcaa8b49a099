"""On a real GPU box: start a torch process that holds GPU memory and show that pdtui
attributes that memory to that pid, with its command line.

    PYTHONPATH=. python3 benchmarks/gpus_device_proof.py --out DIR [--gib 8]

Writes DIR/proof.json (the holder's pid and argv, NVML's view of it, pdtui's attribution
without and with an own-pid mapping, and `python -m pdtui.gpus --json` captured while the
memory was held) and prints a short summary. Needs torch with CUDA and nvidia-ml-py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HOLDER = (
    "import sys, time, torch\n"
    "n = int(float(sys.argv[1]) * 1024**3)\n"
    "x = torch.empty(n, dtype=torch.uint8, device='cuda'); x.fill_(1); torch.cuda.synchronize()\n"
    "print('holding', n, flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--gib", type=float, default=8.0)
    parser.add_argument("--hold-s", type=float, default=120.0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from pdtui.gpus.json_format import inventory_to_dict
    from pdtui.gpus.nvml_source import NvmlSource
    from pdtui.gpus.processes import attribute_processes

    argv = [sys.executable, "-c", HOLDER, str(args.gib), str(args.hold_s)]
    holder = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    result: dict = {"holder_pid": holder.pid, "holder_argv": argv, "proof_pid": os.getpid()}
    source = NvmlSource()
    try:
        line = holder.stdout.readline()  # blocks until torch has allocated (or died)
        result["holder_said"] = line.strip()
        if not line.startswith("holding"):
            result["holder_stderr"] = holder.stderr.read()[-4000:]
            raise SystemExit(f"holder failed: {result['holder_stderr']}")
        deadline = time.monotonic() + 20
        while True:  # NVML may list the new process a moment after the allocation
            inventory = source.poll()
            listed = [
                (g.index, p) for g in inventory.gpus if isinstance(g.processes, tuple)
                for p in g.processes if p.pid == holder.pid
            ]
            if listed or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        result["nvml_listed"] = [{"gpu": i, "pid": p.pid, "used_memory": p.used_memory} for i, p in listed]
        as_other = attribute_processes(inventory.gpus)
        as_own = attribute_processes(inventory.gpus, {os.getpid(): "torch-holder"})
        result["inventory"] = inventory_to_dict(inventory, as_other)
        result["attribution_without_mapping"] = [_plain(p) for p in as_other if p.pid == holder.pid]
        result["attribution_with_parent_mapped"] = [_plain(p) for p in as_own if p.pid == holder.pid]
        cli = subprocess.run(
            [sys.executable, "-m", "pdtui.gpus", "--json"], capture_output=True, text=True, timeout=60
        )
        result["cli_rc"] = cli.returncode
        result["cli_stderr"] = cli.stderr[-2000:]
        (args.out / "pdtui_gpus_while_holding.json").write_text(cli.stdout)
        try:
            result["cli_json"] = json.loads(cli.stdout)
        except json.JSONDecodeError:
            result["cli_json"] = None
    finally:
        holder.kill()
        holder.wait(timeout=30)
        source.close()
    (args.out / "proof.json").write_text(json.dumps(result, indent=1, default=str))
    for record in result.get("attribution_with_parent_mapped", []):
        print(
            f"GPU {record['gpu_index']}: pid {record['pid']} holds {record['used_memory'] / 1024**3:.2f} GiB; "
            f"owner={record['owner']} instance={record['instance']} user={record['user']} "
            f"command={' '.join(record['command'] or [])[:100]!r}"
        )
    print("without mapping:", [(r["pid"], r["owner"]) for r in result.get("attribution_without_mapping", [])])
    return 0 if result.get("attribution_with_parent_mapped") else 1


def _plain(process) -> dict:
    from pdtui.gpus.snapshot import or_none

    return {
        "gpu_index": process.gpu_index,
        "pid": process.pid,
        "used_memory": or_none(process.used_memory),
        "owner": process.owner,
        "instance": process.instance,
        "user": or_none(process.user),
        "command": list(process.command) if isinstance(process.command, tuple) else None,
        "started": or_none(process.started),
    }


if __name__ == "__main__":
    raise SystemExit(main())
