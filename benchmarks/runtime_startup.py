"""pdtui's `up` to all-ready against its floor, the baseline's `up` and the rendered
launch.sh, with simulated engines of a fixed start-up time (default: 2 s each, 2
prefillers + 2 decoders on 4 simulated GPUs: a demo-like profile, nothing shared).

    python benchmarks/runtime_startup.py [--startup 2] [--repeat 3] [--baseline-ref main]

The floor: the same proxy and engines (same argv and environment, from the same plan)
spawned all at once by this script, each timed from its spawn to its first /health
answer (200 for an engine, any status for the proxy), polled every 5 ms; the slowest of
them is what no launcher can beat. `up` is timed from the command's start until it
returns with everything ready (`--detach`), and where its time went is printed: from
its start to the first and last spawn, to the last engine's own /health (polled every
5 ms, like the floor), to the last one reported ready (the proxy routes to it), to its
return. The baseline is the tree of --baseline-ref
(git archive into a temporary directory, run with PYTHONPATH there); "" skips it.
Both trees are byte-compiled first (compileall), as an install would be, and so are the
installed packages `up` imports (pydantic, ruamel.yaml, PyYAML, psutil, ...).
launch.sh starts them one after another, waiting for each /health. Each run uses fresh
free ports and a private XDG_STATE_HOME; the variants alternate within each run (the two
`up`s in turn first).
"""

from __future__ import annotations

import argparse
import json
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


def time_pdtui_up(profile: Path, env: dict, tree: Path = REPO) -> tuple[float, dict[str, float]]:
    """(seconds from the command's start to its return, where the time went): each
    phase's end, from the command's start: `first spawn` / `last spawn` (state.json's
    started_at), `last healthy` (the last engine's own /health answered 200, polled every
    5 ms by this script like the floor), `last ready` (state.json's ready_at: the proxy
    routes to it), `return`."""
    import threading

    import yaml

    data = yaml.safe_load(profile.read_text())
    urls = [f"http://127.0.0.1:{i['port']}/health" for i in data["prefillers"] + data["decoders"]]
    healthy: list[float] = []
    done_polling = threading.Event()

    def watch(url: str) -> None:
        while not done_polling.is_set():
            if _answers(url, False):
                healthy.append(time.time())
                return
            time.sleep(0.005)

    env = dict(env, PYTHONPATH=str(tree))
    wall0, start = time.time(), time.perf_counter()
    watchers = [threading.Thread(target=watch, args=(u,), daemon=True) for u in urls]
    for t in watchers:
        t.start()
    done = subprocess.run([sys.executable, "-m", "pdtui", "up", str(profile), "--detach"], env=env, cwd=tree, capture_output=True, timeout=300)
    elapsed = time.perf_counter() - start
    done_polling.set()
    if done.returncode != 0:
        raise SystemExit(f"pdtui up failed:\n{done.stderr.decode()}")
    run = done.stdout.decode().strip().splitlines()[-1]
    state = json.loads((Path(env["XDG_STATE_HOME"]) / "pdtui" / "runs" / run / "state.json").read_text())
    subprocess.run([sys.executable, "-m", "pdtui", "down", run], env=env, cwd=tree, capture_output=True, timeout=120, check=True)
    recs = list(state["instances"].values())
    phases = {
        "first spawn": min(r["started_at"] for r in recs) - wall0,
        "last spawn": max(r["started_at"] for r in recs) - wall0,
        "last healthy": (max(healthy) - wall0) if len(healthy) == len(urls) else float("nan"),
        "last ready": max(r["ready_at"] for r in recs) - wall0,
        "return": elapsed,
    }
    return elapsed, phases


def _answers(url: str, any_status: bool) -> bool:
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=1.0)
    try:
        conn.request("GET", parts.path)
        response = conn.getresponse()
        response.read()
        return any_status or response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def time_floor(profile: Path, env: dict, workdir: Path) -> tuple[float, float]:
    """(slowest engine, proxy): each one's spawn to its /health, all spawned at once."""
    import threading

    from pdtui.model import render_plan, validate_file, write_rendered

    plan = render_plan(validate_file(profile).profile, workdir / "floor")
    write_rendered(plan, workdir / "floor")  # the LMCache YAML files the engines read
    (workdir / "floor" / "sim-gpus").mkdir(parents=True, exist_ok=True)
    for inst in plan.instances:
        Path(inst.prometheus_dir).mkdir(parents=True, exist_ok=True)
    jobs = [(plan.proxy.argv, plan.proxy.env, plan.proxy.health_url, True)]
    jobs += [(i.argv, {**i.env, "PDTUI_SIM_GPU_DIR": str(workdir / "floor" / "sim-gpus")}, i.health_url, False) for i in plan.instances]
    took: list[float] = [0.0] * len(jobs)
    procs = []

    def watch(k: int, start: float, url: str, any_status: bool) -> None:
        while not _answers(url, any_status):
            if time.perf_counter() - start > 120:
                took[k] = float("nan")  # reported as nan: it never answered
                return
            time.sleep(0.005)
        took[k] = time.perf_counter() - start

    threads = []
    try:
        for k, (argv, extra, url, any_status) in enumerate(jobs):
            start = time.perf_counter()
            with open(workdir / f"floor-{k}.log", "wb") as log:
                procs.append(subprocess.Popen(list(argv), env={**env, **extra, "PYTHONPATH": str(REPO)}, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            t = threading.Thread(target=watch, args=(k, start, url, any_status), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    return max(took[1:]), took[0]


def baseline_tree(ref: str, into: Path) -> Path:
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def compile_tree(tree: Path) -> None:
    """Byte-compile pdtui in `tree`, as an install does: with PYTHONDONTWRITEBYTECODE set
    (as on the development box) a fresh tree, or an edited module, would otherwise be
    compiled from source on every start, and the two sides would not start alike."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "pdtui")], check=True, capture_output=True)


# What `up` imports from outside the tree before its first spawn.
_DEPENDENCIES = ("pydantic", "pydantic_core", "annotated_types", "typing_inspection", "typing_extensions",
                 "yaml", "ruamel.yaml", "psutil")


def compile_dependencies() -> None:
    """Byte-compile the installed packages `up` imports, as pip does by default: the
    GPU box's benchmark suite installs them with --no-compile, and where
    PYTHONDONTWRITEBYTECODE is set each `up` (both sides alike) would otherwise compile
    them from source. Where a package's folder is read-only this does nothing."""
    import importlib.util

    for name in _DEPENDENCIES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.origin:
            continue
        where = Path(spec.origin).parent if spec.submodule_search_locations else Path(spec.origin)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(where)], capture_output=True)


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
    parser.add_argument("--baseline-ref", default="main", help="git ref of the baseline `up` (\"\" to skip)")
    parser.add_argument("--no-launch-sh", action="store_true", help="skip the rendered launch.sh")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"floor": [], "floor_proxy": [], "up": [], "baseline": [], "launch.sh": []}
    phases: dict[str, list[dict[str, float]]] = {"up": [], "baseline": []}
    with tempfile.TemporaryDirectory() as keep:
        base = baseline_tree(args.baseline_ref, Path(keep) / "baseline") if args.baseline_ref else None
        for tree in (REPO, base):
            if tree is not None:
                compile_tree(tree)
        compile_dependencies()
        for i in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                tmp_path = Path(tmp)
                env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))

                def fresh(name: str, tmp_path: Path = tmp_path) -> Path:
                    data = demo_profile_dict(startup_s=args.startup)
                    # Run names are profile name + time to the second, and stops find a
                    # run's processes by that name: a name of our own keeps another
                    # session's "demo" run on this machine from being taken for ours.
                    data["name"] = f"startup-bench-{os.getpid()}"
                    return write_profile(tmp_path, data, name)

                engine, proxy = time_floor(fresh("floor.yaml"), env, tmp_path)
                times["floor"].append(engine)
                times["floor_proxy"].append(proxy)
                # Which `up` goes first alternates: the second one starts while the first
                # one's run is still winding down (its keeper, the stopped processes).
                variants = [("up", REPO, "bench.yaml")] + ([("baseline", base, "bench-base.yaml")] if base is not None else [])
                for name, tree, profile_name in variants if i % 2 == 0 else variants[::-1]:
                    took, where = time_pdtui_up(fresh(profile_name), env, tree)
                    times[name].append(took)
                    phases[name].append(where)
                line = f"run {i + 1}: floor {engine:.2f} s (proxy {proxy:.2f} s)   pdtui up {times['up'][-1]:.2f} s"
                if base is not None:
                    line += f"   baseline up {times['baseline'][-1]:.2f} s"
                if not args.no_launch_sh:
                    times["launch.sh"].append(time_launch_sh(fresh("bench2.yaml"), env, tmp_path))
                    line += f"   launch.sh {times['launch.sh'][-1]:.2f} s"
            print(line, flush=True)
    med = {k: statistics.median(v) for k, v in times.items() if v}
    print(f"4 sim engines ({args.startup:g} s start-up each, GPUs 0-3) + proxy, {args.repeat} runs, median:")
    print(f"  floor: slowest engine spawn -> /health : {med['floor']:.2f} s   (proxy {med['floor_proxy']:.2f} s)")
    print(f"  pdtui up --detach -> all ready         : {med['up']:.2f} s   (floor + {med['up'] - med['floor']:.2f} s)")
    if "baseline" in med:
        print(f"  baseline ({args.baseline_ref}) up -> all ready : {med['baseline']:.2f} s   (floor + {med['baseline'] - med['floor']:.2f} s)")
        paired = statistics.median(u - b for u, b in zip(times["up"], times["baseline"]))
        print(f"  pdtui up - baseline, same run (median of the differences): {paired:+.2f} s")
    for name, runs in phases.items():
        if runs:
            label = "pdtui up" if name == "up" else f"baseline ({args.baseline_ref})"
            cells = "  ".join(f"{k} {statistics.median(r[k] for r in runs):.2f}" for k in runs[0])
            print(f"  where {label}'s time went (s from its start, median): {cells}")
    if "launch.sh" in med:
        print(f"  rendered launch.sh -> ready            : {med['launch.sh']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
