"""Issue 20: an instance's whole process tree (API server + EngineCore + TP workers) is
stopped when its main process dies, on down, restart, re-attach, and by `down --all` when
the run directory is gone; orphans on the GPU are named and stoppable."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import psutil
import pytest

from pdtui.runtime import InstanceState, Supervisor
from tests.runtime.helpers import (
    demo_profile_dict,
    load_profile,
    marked_processes,
    pdtui_cli,
    sim_gpu_files,
    stop_marked,
    wait_for,
    write_profile,
)

pytestmark = pytest.mark.timeout(240)
S = InstanceState


def engine_core(pid: int) -> psutil.Process:
    assert wait_for(lambda: psutil.Process(pid).children(), 60)
    (core,) = psutil.Process(pid).children()
    return core


def gone(proc: psutil.Process) -> bool:
    """Exited (a zombie waiting for init to reap it counts: it holds nothing)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def gpu_file_of(run_dir, pid: int):
    return run_dir / "sim-gpus" / f"{pid}.json"


def holds_memory(path) -> bool:
    try:
        return json.loads(path.read_text())["memory_bytes"] > 0
    except (OSError, ValueError):
        return False


def started(tmp_path, supervisors, **kwargs) -> Supervisor:
    data = demo_profile_dict(startup_s=0.2, count=1, **kwargs)
    sup = Supervisor.launch(load_profile(write_profile(tmp_path, data)))
    supervisors.append(sup)
    assert sup.start().result(timeout=120) is True
    return sup


def test_kill9_of_the_api_server_stops_its_engine_core_and_frees_the_gpu(tmp_path, supervisors):
    sup = started(tmp_path, supervisors)
    try:
        dec = sup.instance("decoder1")
        core = engine_core(dec.pid)
        path = gpu_file_of(sup.run_dir, core.pid)
        assert wait_for(lambda: holds_memory(path), 60)
        os.kill(dec.pid, signal.SIGKILL)
        # Failed only after the rest of its tree is gone, saying what was stopped.
        assert wait_for(lambda: sup.instance("decoder1").state == S.FAILED, 30)
        assert not marked_processes(sup.run_name, "decoder1")
        assert gone(core)
        assert not path.exists()  # the simulated GPU memory is released
        reason = sup.instance("decoder1").reason
        assert "killed by SIGKILL" in reason and f"EngineCore {core.pid} still held" in reason and "stopped" in reason
        # The other instances are untouched.
        assert sup.instance("prefiller1").state == S.READY
    finally:
        sup.close()
        stop_marked(sup.run_name)


def keeper_of(run_dir) -> psutil.Process:
    """The run's watchdog, which stays on as its keeper after a detach."""
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "pdtui.runtime.watchdog" in cmd and str(run_dir) in cmd:
            return proc
    raise AssertionError(f"no keeper for {run_dir}")


def test_detached_run_its_keeper_stops_the_tree_and_a_reattach_stops_what_others_left(tmp_path, supervisors):
    sup = started(tmp_path, supervisors)
    run_dir, run_name = sup.run_dir, sup.run_name
    try:
        sup.detach()
        keeper = keeper_of(run_dir)
        # 1. Detached, nobody attached: kill -9 of decoder1's API server. Its EngineCore (which
        #    would live on, as vLLM's does) is stopped by the run's keeper within seconds.
        dec = sup.instance("decoder1")
        core = engine_core(dec.pid)
        path = gpu_file_of(run_dir, core.pid)
        assert wait_for(lambda: holds_memory(path), 60)
        os.kill(dec.pid, signal.SIGKILL)
        assert wait_for(lambda: gone(core), 60)
        assert wait_for(lambda: not path.exists(), 5)
        assert not marked_processes(run_name, "decoder1")
        status = pdtui_cli("status", run_name).stdout
        line = next(ln for ln in status.splitlines() if "decoder1" in ln)
        assert "failed" in line and f"EngineCore {core.pid} still held" in line and "stopped by the run's keeper" in line, status

        # 2. The keeper is gone too (killed, an older pdtui): kill -9 of prefiller1's API server
        #    leaves its EngineCore on the GPU. `pdtui gpus` names it; a re-attach stops it.
        keeper.kill()
        keeper.wait(10)
        pre = sup.instance("prefiller1")
        core = engine_core(pre.pid)
        path = gpu_file_of(run_dir, core.pid)
        assert wait_for(lambda: holds_memory(path), 60)
        os.kill(pre.pid, signal.SIGKILL)
        time.sleep(2.0)
        assert not gone(core)  # nobody watches now: it lingers, as vLLM's does
        gpus = pdtui_cli("gpus", "--demo", "8", "--sim-gpu-dir", str(run_dir / "sim-gpus"), "--json")
        procs = [p for g in json.loads(gpus.stdout)["gpus"] for p in (g.get("processes") or [])]
        assert any(p["pid"] == core.pid and p.get("orphan_of") == f"{run_name}/prefiller1" for p in procs), procs
        table = pdtui_cli("gpus", "--demo", "8", "--sim-gpu-dir", str(run_dir / "sim-gpus")).stdout
        assert f"orphan of {run_name}/prefiller1" in table, table
        status = pdtui_cli("status", run_name)  # read only: says what is left, does not act
        assert f"EngineCore {core.pid}" in status.stdout, status.stdout + status.stderr
        assert not gone(core)
        again = Supervisor.attach(run_dir)
        supervisors.append(again)
        st = again.instance("prefiller1")
        assert st.state == S.FAILED and f"EngineCore {core.pid} still held" in st.reason
        assert wait_for(lambda: gone(core), 60)
        assert not marked_processes(run_name, "prefiller1") and not path.exists()
    finally:
        stop_marked(run_name)


def test_down_all_stops_a_tree_whose_run_directory_was_deleted(tmp_path):
    data = demo_profile_dict(startup_s=0.2, count=1)
    profile = write_profile(tmp_path, data)
    up = pdtui_cli("up", str(profile), "--detach")
    assert up.returncode == 0, up.stderr
    run_name = up.stdout.strip().splitlines()[-1]
    try:
        procs = marked_processes(run_name)
        assert len(procs) >= 5  # proxy, 2 API servers, 2 EngineCores
        run_dir = tmp_path / "state" / "pdtui" / "runs" / run_name
        shutil.rmtree(run_dir)
        status = pdtui_cli("status")
        assert run_name in status.stdout and "run directory is gone" in status.stdout, status.stdout
        down = pdtui_cli("down", "--all")
        assert down.returncode == 0, down.stderr
        assert wait_for(lambda: not marked_processes(run_name), 60), marked_processes(run_name)
        assert "by its run marker" in down.stderr
        # The run's keeper (its watchdog after `up --detach`) ends once nothing is left.
        assert wait_for(lambda: not [p for p in psutil.process_iter(["cmdline"])
                                     if "pdtui.runtime.watchdog" in (p.info["cmdline"] or []) and any(run_name in a for a in p.info["cmdline"])], 10)
    finally:
        stop_marked(run_name)


def test_restart_stops_the_old_tree_before_starting(tmp_path, supervisors):
    sup = started(tmp_path, supervisors, faults={"decoder1": ["ignore_sigterm"]})
    try:
        old = sup.instance("decoder1").pid
        old_core = engine_core(old)
        assert sup.restart("decoder1").result(timeout=120) is True
        assert gone(old_core)
        new = sup.instance("decoder1").pid
        assert new != old
        cores = [p for p in marked_processes(sup.run_name, "decoder1") if p.pid != new]
        assert len(cores) == 1 and cores[0].pid != old_core.pid
        assert wait_for(lambda: len(sim_gpu_files(sup.run_dir)) == 2, 60)  # one EngineCore per engine, no stale one
    finally:
        sup.close()
        stop_marked(sup.run_name)


def test_tp2_workers_are_part_of_the_tree(tmp_path, supervisors):
    from tests.conftest import free_port

    data = demo_profile_dict(startup_s=0.2, count=1)
    # TP 2 on both sides (lmcache-pd wants the same TP), each on two simulated GPUs.
    for inst, gpus in ((data["prefillers"][0], [0, 1]), (data["decoders"][0], [2, 3])):
        inst["tensor_parallel_size"] = 2
        inst["gpus"] = gpus
    data["decoders"][0]["nixl_init_ports"] = [free_port(), free_port()]
    data["decoders"][0]["nixl_alloc_ports"] = [free_port(), free_port()]
    profile = load_profile(write_profile(tmp_path, data))
    sup = Supervisor.launch(profile)
    supervisors.append(sup)
    try:
        assert sup.start().result(timeout=120) is True
        dec = sup.instance("decoder1")
        core = engine_core(dec.pid)
        assert wait_for(lambda: len(core.children()) == 2, 60)
        tree = marked_processes(sup.run_name, "decoder1")
        assert len(tree) == 4  # API server, EngineCore, 2 workers
        os.kill(dec.pid, signal.SIGKILL)
        assert wait_for(lambda: sup.instance("decoder1").state == S.FAILED, 30)
        assert not marked_processes(sup.run_name, "decoder1")
    finally:
        sup.close()
        stop_marked(sup.run_name)


def test_find_and_stop_orphans(tmp_path, supervisors):
    """The GPU view's stop key calls these: the EngineCore of a detached run whose API server
    was killed is an orphan with its GPU memory; stopping it releases the memory."""
    from pdtui.runtime.orphans import find_orphans, stop_orphans

    sup = started(tmp_path, supervisors)
    run_dir, run_name = sup.run_dir, sup.run_name
    try:
        sup.detach()
        keeper = keeper_of(run_dir)
        keeper.kill()  # a run nobody keeps (its keeper was killed, or an older pdtui left it)
        keeper.wait(10)
        dec = sup.instance("decoder1")
        core = engine_core(dec.pid)
        path = gpu_file_of(run_dir, core.pid)
        assert wait_for(lambda: holds_memory(path), 60)
        assert not [o for o in find_orphans() if o.owner.startswith(run_name)]  # all alive: none
        os.kill(dec.pid, signal.SIGKILL)
        assert wait_for(lambda: any(o.process.pid == core.pid for o in find_orphans()), 60)
        (orphan,) = [o for o in find_orphans((str(run_dir / "sim-gpus"),)) if o.owner.startswith(run_name)]
        assert orphan.owner == f"{run_name}/decoder1" and orphan.process.gpu_bytes > 0
        lines = stop_orphans([orphan])
        assert lines == [f"EngineCore {core.pid} still held {orphan.process.gpu_bytes / 1024**3:.1f} GiB on GPU "
                         f"{','.join(map(str, orphan.process.gpus))} (orphan of {run_name}/decoder1): stopped"]
        assert gone(core) and not path.exists()
        assert sup.instance("prefiller1").pid in [p.pid for p in marked_processes(run_name)]  # others untouched
    finally:
        stop_marked(run_name)
