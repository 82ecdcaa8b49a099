"""`pdtui up` as a real subprocess: kill -9 with and without --detach, re-attach, down,
and a state file whose pid now belongs to someone else."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from pdtui.runtime import InstanceState, Supervisor, find_runs
from pdtui.runtime.statefile import read_state, write_state
from tests.conftest import REPO_ROOT
from tests.runtime.helpers import demo_profile_dict, listening_ports, processes_in_run, profile_ports, write_profile

pytestmark = pytest.mark.timeout(120)


def pdtui(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "pdtui", *args], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def wait_for(predicate, timeout=60.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def all_ready_in_state(root):
    runs = find_runs(root)
    if not runs:
        return None
    try:
        state = read_state(runs[0].path)
    except Exception:
        return None
    if all(rec.state == "ready" for rec in state.instances.values()):
        return runs[0].path
    return None


def kill_tree_of_run(run_dir):
    for proc in processes_in_run(run_dir):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def test_kill9_without_detach_leaves_nothing(tmp_path, private_state_home):
    data = demo_profile_dict(startup_s=0.2, count=1)
    profile = write_profile(tmp_path, data)
    root = private_state_home / "pdtui" / "runs"
    up = pdtui("up", str(profile))
    run_dir = None
    try:
        assert wait_for(lambda: all_ready_in_state(root) is not None), up.stderr.read1().decode() if up.poll() is not None else "not ready"
        run_dir = all_ready_in_state(root)
        pids = [rec.pid for rec in read_state(run_dir).instances.values()]
        assert all(psutil.pid_exists(p) for p in pids)
        up.send_signal(signal.SIGKILL)
        up.wait(10)
        # The watchdog stops every process group the dead pdtui started.
        assert wait_for(lambda: not processes_in_run(run_dir), 40), processes_in_run(run_dir)
        assert wait_for(lambda: not (set(profile_ports(data)) & listening_ports()), 15)
        state = read_state(run_dir)
        assert all(rec.state == "stopped" and "watchdog" in rec.reason for rec in state.instances.values())
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        if run_dir:
            kill_tree_of_run(run_dir)


def test_kill9_with_detach_then_reattach_and_down(tmp_path, private_state_home):
    data = demo_profile_dict(startup_s=0.2, count=1)
    profile = write_profile(tmp_path, data)
    root = private_state_home / "pdtui" / "runs"
    up = pdtui("up", str(profile), "--detach")
    run_dir = None
    try:
        assert wait_for(lambda: all_ready_in_state(root) is not None)
        run_dir = all_ready_in_state(root)
        if up.poll() is None:
            up.send_signal(signal.SIGKILL)  # killed before it could return: must not matter
        up.wait(30)
        time.sleep(1.0)  # a watchdog, if there were one, would act now
        state = read_state(run_dir)
        assert state.detached is True
        pids = {n: rec.pid for n, rec in state.instances.items()}
        assert all(psutil.pid_exists(p) for p in pids.values())

        # Re-attach: the same processes, verified, ready.
        sup = Supervisor.attach(run_dir)
        try:
            st = sup.status()
            assert st.detached and all(i.state == InstanceState.READY for i in st.instances)
            assert {i.name: i.pid for i in st.instances} == pids
        finally:
            sup.close()  # detached run: closing the viewer leaves it running
        assert all(psutil.pid_exists(p) for p in pids.values())

        status = subprocess.run([sys.executable, "-m", "pdtui", "status", "--json"], cwd=REPO_ROOT, capture_output=True, timeout=60)
        assert status.returncode == 0
        report = json.loads(status.stdout)
        assert report[0]["run_name"] == run_dir.name and report[0]["phase"] == "ready"

        down = subprocess.run([sys.executable, "-m", "pdtui", "down", run_dir.name], cwd=REPO_ROOT, capture_output=True, timeout=90)
        assert down.returncode == 0, down.stderr.decode()
        assert wait_for(lambda: not processes_in_run(run_dir), 20), processes_in_run(run_dir)
        assert wait_for(lambda: not (set(profile_ports(data)) & listening_ports()), 15)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        if run_dir:
            kill_tree_of_run(run_dir)


def test_recycled_pid_is_not_ours(tmp_path, private_state_home):
    """A state file whose pid now belongs to an unrelated process: shown failed, never signalled."""
    from pdtui.runtime.rundir import new_run_dir

    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run_dir = new_run_dir("demo")
        proc = psutil.Process(stranger.pid)
        write_state(
            run_dir,
            {
                "version": 1,
                "run_name": run_dir.name,
                "profile": "demo",
                "created": time.time(),
                "detached": True,
                "owner": None,
                "order": ["decoder1"],
                "instances": {
                    "decoder1": {
                        "kind": "decoder",
                        "state": "ready",
                        "pid": stranger.pid,
                        "pgid": stranger.pid,
                        # the process we started had this pid an hour earlier
                        "create_time": proc.create_time() - 3600,
                        "cmdline": [sys.executable, "-m", "pdtui.sim", "serve", "m"],
                        "argv": [sys.executable, "-m", "pdtui.sim", "serve", "m"],
                        "env": {},
                        "log": str(run_dir / "decoder1.log"),
                    }
                },
            },
        )
        sup = Supervisor.attach(run_dir, take_ownership=False)
        st = sup.instance("decoder1")
        assert st.state == InstanceState.FAILED and "recycled" in st.reason and st.pid is None
        assert not find_runs()[0].live
        sup.stop().result(timeout=30)
        assert stranger.poll() is None  # the stranger was left alone
        subprocess.run([sys.executable, "-m", "pdtui", "down", run_dir.name], cwd=REPO_ROOT, capture_output=True, timeout=60)
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()
