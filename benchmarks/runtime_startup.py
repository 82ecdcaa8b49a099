"""pdtui's `up` to all-ready against the rendered launch.sh, with simulated engines of a
fixed start-up time (default: 2 s each, 2 prefillers + 2 decoders on 4 simulated GPUs).

    python benchmarks/runtime_startup.py [--startup 2] [--repeat 3]

Both start the same proxy and engines from the same plan. launch.sh starts them one
after another, waiting for each /health; pdtui starts instances on different GPUs at once.
Each run uses fresh free ports and a private XDG_STATE_HOME. Prints the wall time from
the command's start to "all ready" for each, and their medians.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.runtime.helpers import demo_profile_dict, write_profile  # noqa: E402


def time_pdtui_up(profile: Path, env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pdtui", "up", str(profile), "--detach"], env=env, cwd=REPO, capture_output=True, timeout=300)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"pdtui up failed:\n{done.stderr.decode()}")
    run = done.stdout.decode().strip()
    subprocess.run([sys.executable, "-m", "pdtui", "down", run], env=env, cwd=REPO, capture_output=True, timeout=120, check=True)
    return elapsed


def time_launch_sh(profile: Path, env: dict, workdir: Path) -> float:
    out = workdir / "rendered"
    subprocess.run([sys.executable, "-m", "pdtui", "render", str(profile), "-o", str(out)], env=env, cwd=REPO, capture_output=True, check=True, timeout=120)
    script = out / "launch.sh"
    start = time.perf_counter()
    proc = subprocess.Popen(["bash", str(script)], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        for raw in proc.stderr:
            if b"deployment ready" in raw:
                return time.perf_counter() - start
        raise SystemExit("launch.sh ended without reaching 'deployment ready'")
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # its trap stops every group it started
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--startup", type=float, default=2.0, help="simulated engine start-up time, s")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pdtui_times, script_times = [], []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
            profile = write_profile(tmp_path, demo_profile_dict(startup_s=args.startup), "bench.yaml")
            pdtui_times.append(time_pdtui_up(profile, env))
            profile = write_profile(tmp_path, demo_profile_dict(startup_s=args.startup), "bench2.yaml")
            script_times.append(time_launch_sh(profile, env, tmp_path))
        print(f"run {i + 1}: pdtui up {pdtui_times[-1]:.2f} s   launch.sh {script_times[-1]:.2f} s", flush=True)
    print(f"4 sim engines ({args.startup:g} s start-up each, GPUs 0-3) + proxy, {args.repeat} runs, median:")
    print(f"  pdtui up --detach -> all ready : {statistics.median(pdtui_times):.2f} s")
    print(f"  rendered launch.sh -> ready   : {statistics.median(script_times):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
