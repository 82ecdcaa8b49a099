"""Profiles for the runtime tests: configs/demo.yaml with free ports and tiny start-up times."""

from __future__ import annotations

import time

import copy
from pathlib import Path

import psutil
import yaml

from tests.conftest import REPO_ROOT, free_port

DEMO = REPO_ROOT / "configs" / "demo.yaml"


def demo_profile_dict(startup_s: float = 0.3, faults: dict[str, list[str]] | None = None, count: int | None = None) -> dict:
    """demo.yaml with every port replaced by a free one; faults: instance name -> faults."""
    data = copy.deepcopy(yaml.safe_load(DEMO.read_text()))
    used: set[int] = set()

    def port() -> int:
        while True:
            p = free_port()
            if p not in used:
                used.add(p)
                return p

    data["proxy"]["port"] = port()
    data["proxy"]["zmq_port"] = port()
    if count is not None:
        data["prefillers"] = data["prefillers"][:count]
        data["decoders"] = data["decoders"][:count]
    for inst in data["prefillers"] + data["decoders"]:
        inst["port"] = port()
        if "nixl_init_ports" in inst:
            inst["nixl_init_ports"] = [port()]
            inst["nixl_alloc_ports"] = [port()]
        inst["sim"] = {"startup_s": startup_s}
        if faults and inst["name"] in faults:
            inst["sim"]["faults"] = faults[inst["name"]]
        inst["startup_timeout_s"] = 60
    data["proxy"]["startup_timeout_s"] = 60
    return data


def write_profile(tmp_path: Path, data: dict, name: str = "profile.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def load_profile(path: Path):
    from pdtui.model import validate_file

    validation = validate_file(path)
    assert validation.ok, [p.format(str(path)) for p in validation.errors]
    return validation.profile


def profile_ports(data: dict) -> list[int]:
    ports = [data["proxy"]["port"], data["proxy"]["zmq_port"]]
    for inst in data["prefillers"] + data["decoders"]:
        ports.append(inst["port"])
        ports += inst.get("nixl_init_ports", []) + inst.get("nixl_alloc_ports", [])
    return ports


def listening_ports() -> set[int]:
    ports = set()
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr:
            ports.add(conn.laddr.port)
    return ports


def processes_in_run(run_dir: Path) -> list[psutil.Process]:
    """Live processes whose command line or environment points into run_dir."""
    found = []
    needle = str(run_dir)
    for proc in psutil.process_iter(["cmdline", "pid"]):
        try:
            if proc.pid == psutil.Process().pid:
                continue
            cmd = " ".join(proc.info["cmdline"] or [])
            if needle in cmd:
                found.append(proc)
                continue
            env = proc.environ()
            if any(needle in v for v in env.values()):
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def wait_for(predicate, timeout=30.0, interval=0.05):
    """Poll until predicate() is true or the timeout passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def marked_processes(run_name: str, instance: str | None = None, root: str | None = None) -> list:
    """Live processes carrying the run marker of run_name (optionally one instance) of this
    test's runs folder (root; default: the current XDG_STATE_HOME's): a run of the same
    name in another folder (another test session on the machine) is not this test's."""
    import os

    from pdtui.gpus.markers import find_marked
    from pdtui.runtime.rundir import runs_root

    return find_marked(run_name, instance, root=root or os.path.realpath(runs_root()))


def pdtui_cli(*args: str, timeout: float = 120, env: dict | None = None):
    """`python -m pdtui ARGS` as an operator runs it; CompletedProcess with text output."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "pdtui", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, env=full_env)


def sim_gpu_files(run_dir: Path) -> list[Path]:
    return sorted((Path(run_dir) / "sim-gpus").glob("*.json"))


def stop_marked(run_name: str) -> None:
    """Test clean-up: SIGKILL whatever still carries the run's marker."""
    import os
    import signal

    for proc in marked_processes(run_name):
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
