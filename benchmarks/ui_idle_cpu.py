"""CPU of the idle dashboard: 8 simulated GPUs, 4 ready instances + proxy, nothing typed.

The deployment is started headless first (`pdtui up PROFILE --detach`), so its engines
are not children of the UI; then the UI is started in a 120x40 pty, re-attached to that
run, and measured from outside by /work/shared/bench-tools/idle_cpu.py (CPU time of the
UI's process tree over a window after a warm-up, output drained). Target: < 2 % of one core.

    python benchmarks/ui_idle_cpu.py [--window 30] [--warm 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IDLE_CPU = Path(os.environ.get("PDTUI_SHARED_DIR", REPO.parent / "shared")) / "bench-tools" / "idle_cpu.py"


def child(run_dir: str) -> None:
    """The measured process: the TUI re-attached to the running demo deployment."""
    from pdtui.ui.app import PdtuiApp

    sys.path.insert(0, str(REPO))
    PdtuiApp(None, demo=True, attach_run=Path(run_dir), offer_reattach=False).run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--warm", type=float, default=5.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    sys.path.insert(0, str(REPO))
    from tests.ui.conftest import demo_profile_on_free_ports

    home = Path(tempfile.mkdtemp(prefix="pdtui-idle-"))
    env = dict(os.environ, PDTUI_CONFIG_DIR=str(home / "config"), XDG_STATE_HOME=str(home / "state"))
    os.environ.update(env)
    profile = demo_profile_on_free_ports(home)
    subprocess.run([sys.executable, "-m", "pdtui", "up", str(profile), "--detach"], env=env, check=True, timeout=120)
    runs = sorted((home / "state" / "pdtui" / "runs").iterdir())
    run_dir = runs[-1]
    try:
        spec = importlib.util.spec_from_file_location("idle_cpu", IDLE_CPU)
        idle_cpu = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(idle_cpu)
        result = idle_cpu.measure([sys.executable, __file__, "--child", str(run_dir)], warm=args.warm, window=args.window)
    finally:
        subprocess.run([sys.executable, "-m", "pdtui", "down", run_dir.name], env=env, timeout=120)
    print(json.dumps(result))
    if "cpu_pct_of_one_core" in result:
        print(f"idle dashboard CPU: {result['cpu_pct_of_one_core']:.2f} % of one core over {args.window:g} s "
              f"(8 GPUs, 4 instances + proxy; target < 2 %), RSS {result['rss_mb']} MiB, "
              f"{result['bytes_out'] / args.window / 1024:.1f} KiB/s to the terminal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
