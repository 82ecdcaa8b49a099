"""What watching a ready, idle deployment costs the supervisor, with and without the
health checks added for issue 16 (own /health + the proxy's report every 2 s), and what
one run-marker scan of /proc costs (done on stop, down --all, status, never per tick).

    python benchmarks/runtime_watch_cost.py [--seconds 20]

Side by side in one run: the same demo deployment (2P2D, simulated engines) is started
twice in this process; for each, the supervisor's process CPU time is measured over the
same idle window (the simulated engines are other processes and do not count).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.runtime.helpers import demo_profile_dict, load_profile, write_profile  # noqa: E402


def idle_cpu(seconds: float, health: bool, tmp: Path) -> float:
    import pdtui.runtime.health as health_mod
    from pdtui.runtime import Supervisor

    health_mod.HEALTH_CHECK_S = 2.0 if health else 1e9
    sup = Supervisor.launch(load_profile(write_profile(tmp, demo_profile_dict(startup_s=0.3), f"p{health}.yaml")))
    try:
        assert sup.start().result(timeout=180) is True
        time.sleep(3.0)  # past the fast ticks of the start
        before = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process, in µs
        time.sleep(seconds)
        after = resource.getrusage(resource.RUSAGE_SELF)
        return (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / seconds * 100
    finally:
        sup.close()


def keeper_cost(seconds: float, tmp: Path) -> tuple[float, float]:
    """(CPU % of one core, RSS MiB) of a detached run's keeper over an idle window."""
    import psutil

    from pdtui.runtime import Supervisor

    sup = Supervisor.launch(load_profile(write_profile(tmp, demo_profile_dict(startup_s=0.3), "keeper.yaml")))
    assert sup.start().result(timeout=180) is True
    run_dir = sup.run_dir
    sup.detach()
    keeper = next(p for p in psutil.process_iter(["cmdline"])
                  if "pdtui.runtime.watchdog" in (p.info["cmdline"] or []) and str(run_dir) in p.info["cmdline"])
    try:
        time.sleep(2.0)
        before = keeper.cpu_times()
        time.sleep(seconds)
        after = keeper.cpu_times()
        rss = keeper.memory_info().rss / 2**20
        return (after.user - before.user + after.system - before.system) / seconds * 100, rss
    finally:
        Supervisor.attach(run_dir, take_ownership=False).stop().result(timeout=120)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_STATE_HOME"] = tmp
        base = idle_cpu(args.seconds, False, Path(tmp))
        with_health = idle_cpu(args.seconds, True, Path(tmp))
        keeper_cpu, keeper_rss = keeper_cost(args.seconds, Path(tmp))
    from pdtui.gpus.markers import find_marked

    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        find_marked()
        times.append(time.perf_counter() - t0)
    nprocs = len(os.listdir("/proc"))
    print(f"supervisor CPU, idle 2P2D deployment, {args.seconds:g} s window:")
    print(f"  without health checks (baseline): {base:5.2f} % of one core")
    print(f"  with health checks (every 2 s):   {with_health:5.2f} % of one core")
    print(f"a detached run's keeper (1 scan every 2 s): {keeper_cpu:5.2f} % of one core, {keeper_rss:.0f} MiB RSS")
    print(f"run-marker scan of /proc ({nprocs} entries): median {statistics.median(times) * 1000:.1f} ms over 20")


if __name__ == "__main__":
    main()
