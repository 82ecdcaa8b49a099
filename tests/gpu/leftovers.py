"""What a stopped deployment may leave behind: processes on the GPU (NVML through pdtui.gpus)
and listening TCP ports (psutil)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psutil


def listening_ports() -> dict[int, int | None]:
    """port -> pid (None when psutil cannot tell) of every TCP socket in LISTEN."""
    out: dict[int, int | None] = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr:
            out[conn.laddr.port] = conn.pid
    return out


def gpu_inventory(extra_args: list[str] | None = None) -> dict:
    """`python -m pdtui.gpus --json` in a fresh process, so NVML's view is current."""
    argv = [sys.executable, "-m", "pdtui.gpus", "--json", *(extra_args or [])]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    try:
        return json.loads(done.stdout)
    except ValueError:
        return {"error": f"pdtui.gpus printed no JSON (exit {done.returncode}): {done.stderr[-300:]}", "gpus": []}


def gpu_processes(inventory: dict, gpus: set[int]) -> list[dict]:
    found = []
    for gpu in inventory.get("gpus") or []:
        if gpu.get("index") in gpus:
            for proc in gpu.get("processes") or []:
                found.append({"gpu": gpu["index"], **{k: proc.get(k) for k in ("pid", "name", "used_memory", "cmdline") if k in proc}})
    return found


def wait_gpu_empty(gpus: set[int], baseline_pids: set[int], timeout_s: float, extra_args: list[str] | None = None) -> tuple[list[dict], dict]:
    """Poll until no process other than the baseline is on `gpus` (the driver frees a dead
    process's context a moment after it exits). Returns (what is left, last inventory)."""
    deadline = time.monotonic() + timeout_s
    while True:
        inventory = gpu_inventory(extra_args)
        left = [p for p in gpu_processes(inventory, gpus) if p.get("pid") not in baseline_pids]
        if not left or time.monotonic() > deadline:
            return left, inventory
        time.sleep(1.0)


def wait_ports_closed(ports: set[int], timeout_s: float) -> dict[int, int | None]:
    deadline = time.monotonic() + timeout_s
    while True:
        still = {p: pid for p, pid in listening_ports().items() if p in ports}
        if not still or time.monotonic() > deadline:
            return still
        time.sleep(0.5)


def process_tree(state: dict) -> set[int]:
    """The pids in a run's state.json and every descendant alive now (vLLM's EngineCore etc.)."""
    pids: set[int] = set()
    for inst in (state.get("instances") or {}).values():
        pid = inst.get("pid")
        if not pid:
            continue
        pids.add(pid)
        try:
            pids |= {c.pid for c in psutil.Process(pid).children(recursive=True)}
        except psutil.Error:
            pass
    return pids


def alive(pids: set[int]) -> list[dict]:
    found = []
    for pid in sorted(pids):
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append({"pid": pid, "cmdline": " ".join(proc.cmdline())[:120]})
        except psutil.Error:
            pass
    return found
