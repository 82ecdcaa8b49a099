"""What watching a deployment costs the TUI's process: a Slurm run against a local one.

Run (as root, Slurm packages installed): python benchmarks/slurm_watch.py [--rounds 2] [--window 30]

Starts a one-node Slurm (tests/cluster/slurm_local.sh), then per round and backend
(interleaved) brings the simulated 1P1D up with `pdtui up --detach`, attaches to it the way
the TUI does (`pdtui.deploy.deployment.attach`: for Slurm the status poll every 2 s and
the per-node GPU step every 15 s; for local the supervisor's monitor), and measures over
`--window` seconds the CPU time of this process (all threads) and of the commands it ran
(squeue, scontrol, srun: RUSAGE_CHILDREN). Also times one `node_gpus()` (a `pdtui gpus
--json` step per node). Reports medians, CPU as seconds per minute watched.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slurm_backend import one_node_slurm, profile_file, timed  # noqa: E402


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_round(env: dict[str, str], directory: Path, backend: str, window_s: float) -> dict[str, float]:
    from pdtui.cluster.gpus import node_gpus
    from pdtui.deploy.deployment import attach

    _, up = timed(env, "up", str(profile_file(directory)), "--detach", "--backend", backend)
    run_name = up.stdout.strip().splitlines()[-1]
    run_dir = Path(env["XDG_STATE_HOME"]) / "pdtui" / "runs" / run_name
    result: dict[str, float] = {}
    try:
        deployment = attach(run_dir)
        try:
            cpu0, child0, t0 = time.process_time(), _children_cpu(), time.monotonic()
            time.sleep(window_s)
            elapsed = time.monotonic() - t0
            result["own CPU s/min"] = (time.process_time() - cpu0) * 60 / elapsed
            result["commands CPU s/min"] = (_children_cpu() - child0) * 60 / elapsed
            assert deployment.status().phase == "ready", deployment.status()
            if backend == "slurm":
                start = time.perf_counter()
                views = node_gpus(deployment.run)
                result["node_gpus() s"] = time.perf_counter() - start
                assert views and views[0].error is None, views
        finally:
            deployment.detach()
            deployment.close()
    finally:
        timed(env, "down", run_name)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--window", type=float, default=30.0, help="seconds watched per round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pdtui-slurm-watch-") as tmp, one_node_slurm(Path(tmp)) as env:
        if env is None:
            return 1
        os.environ.update(env)  # the in-process attach reads the same runs folder and cluster
        results: dict[str, list[dict[str, float]]] = {"slurm": [], "local": []}
        for _ in range(args.rounds):
            for backend in ("slurm", "local"):  # interleaved: both see the same machine load
                results[backend].append(one_round(env, Path(tmp), backend, args.window))
    print(f"median of {args.rounds} rounds, {args.window:g} s watched each, simulated 1P1D, one-node Slurm on localhost")
    print(f"{'measure':<22}{'slurm':>10}{'local':>10}")
    summary = {}
    for key in results["slurm"][0]:
        s = statistics.median(r[key] for r in results["slurm"])
        loc = [r[key] for r in results["local"] if key in r]
        local = statistics.median(loc) if loc else None
        summary[key] = {"slurm": round(s, 3), "local": None if local is None else round(local, 3)}
        print(f"{key:<22}{s:>10.3f}{'-' if local is None else f'{local:.3f}':>10}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
