"""Issue 20 on a real GPU: kill -9 an instance's API server and check that pdtui leaves nothing
of its process tree on the GPU (before, pdtui's `down` left vLLM's EngineCore holding 36 GiB).

    python tests/gpu/orphan_check.py configs/h200-tiny-1p1d.yaml --out OUT_DIR [--sim] [--victim decoder1]

Steps, each a check in OUT_DIR/summary.json: `pdtui up --detach` -> the victim's process tree and
its GPU processes (NVML) recorded -> `kill -9` of the victim's main process -> `pdtui status`
reports it failed and says what it stopped -> no process of the old tree alive and none on the
GPU -> `pdtui restart VICTIM` -> one request through the proxy -> `pdtui down` -> nothing of the
run on the GPU (NVML) and no process of the run alive. `--sim` swaps in the simulated engine,
whose engine-core child holds simulated GPU memory, so the same steps run on any machine.
Exit 0 when every check passed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # first: vLLM's site folder ships its own top-level `tests` package

from tests.gpu import client, leftovers  # noqa: E402
from tests.gpu.acceptance import load_prompts, prepare_profile  # noqa: E402
from tests.gpu.checks import Report  # noqa: E402


def pdtui(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pdtui", *args], capture_output=True, text=True, timeout=timeout)


def tree_of(pid: int) -> dict[int, str]:
    """pid -> name of a process and all its descendants, alive now."""
    found: dict[int, str] = {}
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            try:
                found[proc.pid] = proc.name()
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return found


def wait_gone(pids: set[int], timeout_s: float) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        left = leftovers.alive(pids)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def status_text() -> str:
    done = pdtui("status", timeout=60)
    return (done.stdout + done.stderr).strip()


def run(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    profile_path, data = prepare_profile(Path(args.profile), out, args.sim)
    os.environ["XDG_STATE_HOME"] = str(out / "state")
    report = Report(profile=str(args.profile), mode=data.get("mode", "lmcache-pd"), engine="sim" if args.sim else "vllm")
    gpus = {g for side in ("prefillers", "decoders") for inst in data.get(side) or [] for g in inst.get("gpus") or []}
    gpu_args = ["--demo", str(max(gpus, default=0) + 1)] if args.sim else []
    baseline = {p["pid"] for p in leftovers.gpu_processes(leftovers.gpu_inventory(gpu_args), gpus)}

    t0 = time.monotonic()
    up = pdtui("up", str(profile_path), "--detach", timeout=args.up_timeout)
    (out / "up.log").write_text(up.stdout + up.stderr)
    run_name = (up.stdout.strip().splitlines() or [""])[-1]
    report.info["up_seconds"] = round(time.monotonic() - t0, 1)
    if not report.check("up", up.returncode == 0, f"exit {up.returncode}, run {run_name!r}"):
        pdtui("down", "--all", timeout=300)
        report.write(out / "summary.json")
        print(report.text())
        return 1
    run_dir = sorted((out / "state" / "pdtui" / "runs").glob("*"))[-1]
    every_pid: set[int] = set()
    try:
        state = json.loads((run_dir / "state.json").read_text())
        victim = state["instances"][args.victim]
        main_pid = int(victim["pid"])
        tree = tree_of(main_pid)
        every_pid |= leftovers.process_tree(state)
        on_gpu = [p for p in leftovers.gpu_processes(leftovers.gpu_inventory(gpu_args), gpus) if p.get("pid") in tree]
        report.info["victim_tree"] = tree
        report.info["victim_gpu_processes_before"] = on_gpu
        report.check("victim tree recorded", len(tree) >= 2,
                     f"{args.victim}: main {main_pid} and {len(tree) - 1} descendants {sorted(tree.values())}; on the GPU: {on_gpu}")

        os.kill(main_pid, signal.SIGKILL)
        t_kill = time.monotonic()
        left = wait_gone(set(tree), args.gone_timeout)
        report.info["tree_gone_seconds"] = round(time.monotonic() - t_kill, 1)
        report.check("old tree stopped", not left, f"after kill -9 of {main_pid}: alive {left or 'none'} "
                     f"({report.info['tree_gone_seconds']} s)")
        gpu_left, _ = leftovers.wait_gpu_empty(gpus, baseline | (set(every_pid) - set(tree)) | _other_pids(state, args.victim, gpus, gpu_args),
                                               30, gpu_args)
        gpu_left = [p for p in gpu_left if p.get("pid") in tree]
        report.check("victim's GPU memory released", not gpu_left, f"GPU processes of the old tree: {gpu_left or 'none'}")
        status = status_text()
        (out / "status-after-kill.txt").write_text(status)
        report.info["status_after_kill"] = status[-1500:]
        line = next((ln.strip() for ln in status.splitlines() if ln.strip().startswith(args.victim)), "")
        report.check("status reports the failure", "failed" in line and "stopped" in line, line or status[-400:])

        t1 = time.monotonic()
        restart = pdtui("restart", args.victim, timeout=args.up_timeout)
        (out / "restart.log").write_text(restart.stdout + restart.stderr)
        report.info["restart_seconds"] = round(time.monotonic() - t1, 1)
        report.check("restart", restart.returncode == 0, f"exit {restart.returncode} after {report.info['restart_seconds']} s")
        state = json.loads((run_dir / "state.json").read_text())
        every_pid |= leftovers.process_tree(state)
        plan = json.loads((run_dir / "plan.json").read_text())
        proxy_url = f"http://{plan['proxy']['host']}:{plan['proxy']['port']}"
        served = client.get_json(proxy_url, "/v1/models")["data"][0]["id"]
        prompt = load_prompts(data.get("model", ""), args.sim, 1)[0]
        res = client.send(proxy_url, 0, "completions", False, served, f"after restart: {prompt}", 8)
        report.check("request after restart", res.ok, f"HTTP {res.status} in {res.seconds:.2f} s {res.error or ''}")
    finally:
        down = pdtui("down", *([run_name] if run_name else []), timeout=300)
        (out / "down.log").write_text(down.stdout + down.stderr)
        report.check("down", down.returncode == 0, (down.stdout + down.stderr).strip()[-300:])
        left = wait_gone(every_pid, 30)
        report.check("no process of the run alive", not left, f"{len(every_pid)} pids seen; alive: {left or 'none'}")
        gpu_left, inventory = leftovers.wait_gpu_empty(gpus, baseline, 60, gpu_args)
        (out / "gpus_after.json").write_text(json.dumps(inventory, indent=1))
        report.check("GPU empty", not gpu_left, f"processes left on GPU {sorted(gpus)}: {gpu_left or 'none'}")
        with tarfile.open(out / "run.tar.gz", "w:gz") as tar:
            tar.add(run_dir, arcname=run_dir.name)
    report.write(out / "summary.json")
    print(report.text(), flush=True)
    return 0 if report.passed else 1


def _other_pids(state: dict, victim: str, gpus: set[int], gpu_args: list[str]) -> set[int]:
    """GPU pids of the instances that were not killed (they stay on the GPU meanwhile)."""
    others: set[int] = set()
    for name, inst in (state.get("instances") or {}).items():
        if name != victim and inst.get("pid"):
            others |= set(tree_of(int(inst["pid"])))
    return others


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profile")
    ap.add_argument("--out", required=True)
    ap.add_argument("--sim", action="store_true")
    ap.add_argument("--victim", default="decoder1")
    ap.add_argument("--up-timeout", type=float, default=900)
    ap.add_argument("--gone-timeout", type=float, default=30)
    args = ap.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
