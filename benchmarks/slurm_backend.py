"""What the Slurm backend costs over local processes, side by side in one run.

Run (as root, Slurm packages installed): python benchmarks/slurm_backend.py [--rounds 3]

Starts a one-node Slurm (tests/cluster/slurm_local.sh) in a temporary directory, then for
each round brings the same simulated 1P1D profile up (`pdtui up --detach`) and down
(`pdtui down`) on Slurm and with the local supervisor (`--backend local`), and times one
`pdtui status --json` of each. Reports the median wall time of each step.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "cluster" / "slurm_local.sh"
PROFILE = REPO / "examples" / "cluster" / "slurm-sim.yaml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def profile_file(directory: Path) -> Path:
    data = yaml.safe_load(PROFILE.read_text())
    ports: set[int] = set()
    while len(ports) < 6:  # a port just closed can come back: six different ones
        ports.add(free_port())
    proxy, zmq, prefill, decode, init, alloc = sorted(ports)
    data["proxy"].update(port=proxy, zmq_port=zmq)
    data["prefillers"][0]["port"] = prefill
    data["decoders"][0].update(port=decode, nixl_init_ports=[init], nixl_alloc_ports=[alloc])
    path = directory / f"bench-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def timed(env: dict[str, str], *args: str) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pdtui", *args], env=env, capture_output=True, text=True, timeout=600, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"pdtui {' '.join(args)} failed:\n{done.stderr}")
    return elapsed, done


@contextlib.contextmanager
def one_node_slurm(directory: Path):
    """The test Slurm under directory/slurm for the block: yields the environment of pdtui
    commands that use it, or None (after saying why) when it could not start."""
    started = subprocess.run(["bash", str(SCRIPT), "start", str(directory / "slurm")], capture_output=True, text=True,
                             timeout=300, check=False)
    if started.returncode != 0:
        print(f"Slurm could not start: {started.stderr.strip()}", file=sys.stderr)
        yield None
        return
    try:
        yield dict(os.environ, SLURM_CONF=str(directory / "slurm" / "slurm.conf"), PYTHONPATH=str(REPO),
                   XDG_STATE_HOME=str(directory / "state"))
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(directory / "slurm")], capture_output=True, timeout=120, check=False)


def one_round(env: dict[str, str], directory: Path, backend: str) -> dict[str, float]:
    up_s, up = timed(env, "up", str(profile_file(directory)), "--detach", "--backend", backend)
    run = up.stdout.strip().splitlines()[-1]
    status_s, _ = timed(env, "status", "--json", run)
    down_s, _ = timed(env, "down", run)
    return {"up (to all ready)": up_s, "status --json": status_s, "down (nothing left)": down_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pdtui-slurm-bench-") as tmp, one_node_slurm(Path(tmp)) as env:
        if env is None:
            return 1
        results: dict[str, list[dict[str, float]]] = {"slurm": [], "local": []}
        for _ in range(args.rounds):
            for backend in ("slurm", "local"):  # interleaved: both see the same machine load
                results[backend].append(one_round(env, Path(tmp), backend))
    print(f"median of {args.rounds} rounds, simulated 1P1D (startup_s 1), one-node Slurm on localhost")
    print(f"{'step':<22}{'slurm':>10}{'local':>10}")
    summary = {}
    for step in results["slurm"][0]:
        s = statistics.median(r[step] for r in results["slurm"])
        loc = statistics.median(r[step] for r in results["local"])
        summary[step] = {"slurm_s": round(s, 3), "local_s": round(loc, 3)}
        print(f"{step:<22}{s:>9.2f}s{loc:>9.2f}s")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
