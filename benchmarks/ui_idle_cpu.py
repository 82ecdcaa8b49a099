"""CPU of the idle cockpit: 8 simulated GPUs, 4 ready instances + proxy, nothing typed.

The cockpit includes the deployment monitor (one scrape per second of every engine and
the proxy, one tail loop over every log, the proxy's /events reader, the 1 s sampler)
and the interleaved log pane; the demo's background load is off (idle means no traffic).

The deployment is started headless first (`pdtui up PROFILE --detach`), so its engines
are not children of the UI; then the UI is started in a 120x40 pty, re-attached to that
run, and measured from outside by /work/shared/bench-tools/idle_cpu.py (CPU time of the
UI's process tree over a window after a warm-up, output drained). Target: < 2 % of one core.

The machine is shared and noisy, so the baseline -- a minimal Textual GPU table that
changes its 8 rows every second (`ui_bare_textual.py --refresh 1`) -- is measured in the
same run, right before pdtui, by the same tool; the report gives both and their ratio.

The window starts once the deployment has been up for --min-uptime seconds (default 60):
the instances table shows uptime in seconds only during an instance's first minute (then
"12m", "3h05m"), so a deployment measured seconds after its start repaints every row every
second, which an operator's long-running deployment does not. `--min-uptime 0` measures
right after the start, as this benchmark did before. The baseline runs while waiting.

    python benchmarks/ui_idle_cpu.py [--window 30] [--warm 5] [--min-uptime 60] [--no-baseline]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BARE_APP = Path(__file__).resolve().with_name("ui_bare_textual.py")
IDLE_CPU = Path(os.environ.get("PDTUI_SHARED_DIR", REPO.parent / "shared")) / "bench-tools" / "idle_cpu.py"


def child(run_dir: str) -> None:
    """The measured process: the TUI re-attached to the running demo deployment."""
    from pdtui.ui.app import PdtuiApp

    sys.path.insert(0, str(REPO))
    PdtuiApp(None, demo=True, attach_run=Path(run_dir), offer_reattach=False, background_load=False).run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--warm", type=float, default=5.0)
    parser.add_argument("--no-baseline", action="store_true", help="measure pdtui only")
    parser.add_argument("--min-uptime", type=float, default=60.0, help="how long the deployment has been up when the window starts")
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
    ready_at = time.monotonic()
    runs = sorted((home / "state" / "pdtui" / "runs").iterdir())
    run_dir = runs[-1]
    try:
        spec = importlib.util.spec_from_file_location("idle_cpu", IDLE_CPU)
        idle_cpu = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(idle_cpu)
        baseline = None
        if not args.no_baseline:
            baseline = idle_cpu.measure([sys.executable, str(BARE_APP), "--refresh", "1"], warm=args.warm, window=args.window)
        time.sleep(max(0.0, args.min_uptime - args.warm - (time.monotonic() - ready_at)))
        uptime_at_window = time.monotonic() - ready_at + args.warm
        result = idle_cpu.measure([sys.executable, __file__, "--child", str(run_dir)], warm=args.warm, window=args.window)
    finally:
        subprocess.run([sys.executable, "-m", "pdtui", "down", run_dir.name], env=env, timeout=120)
    print(json.dumps(result))
    if "cpu_pct_of_one_core" in result:
        print(f"idle cockpit CPU: {result['cpu_pct_of_one_core']:.2f} % of one core over {args.window:g} s "
              f"(8 GPUs, 4 instances + proxy up {uptime_at_window:.0f} s at its start; target < 2 %), RSS {result['rss_mb']} MiB, "
              f"{result['bytes_out'] / args.window / 1024:.1f} KiB/s to the terminal")
    if baseline is not None:
        print(json.dumps(baseline))
    if baseline is not None and "cpu_pct_of_one_core" in baseline and "cpu_pct_of_one_core" in result:
        ratio = result["cpu_pct_of_one_core"] / max(baseline["cpu_pct_of_one_core"], 0.01)
        print(f"bare Textual GPU table at 1 s (baseline): {baseline['cpu_pct_of_one_core']:.2f} % of one core, "
              f"RSS {baseline['rss_mb']} MiB, {baseline['bytes_out'] / args.window / 1024:.1f} KiB/s; "
              f"pdtui / baseline = {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
