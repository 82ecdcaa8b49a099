"""End to end with simulated engines and the real proxy on free loopback ports."""

from __future__ import annotations

import json
import threading
import urllib.request

import psutil
import pytest

from pdtui.runtime import DeploymentEvent, InstanceState, LogLines, PreflightError, ReadinessProgress, StateChanged, Supervisor
from tests.runtime.helpers import wait_for, demo_profile_dict, listening_ports, load_profile, processes_in_run, profile_ports, write_profile

pytestmark = pytest.mark.timeout(120)



def assert_nothing_left(run_dir, ports):
    assert wait_for(lambda: not processes_in_run(run_dir), 15), processes_in_run(run_dir)
    assert wait_for(lambda: not (set(ports) & listening_ports()), 15), set(ports) & listening_ports()


def post_json(url, body, timeout=30):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, json.loads(response.read())


def test_up_ready_completion_restart_down(tmp_path, supervisors):
    data = demo_profile_dict(startup_s=0.3)
    sup = Supervisor.launch(load_profile(write_profile(tmp_path, data)))
    supervisors.append(sup)
    events = []
    lock = threading.Lock()

    def collect(event):
        with lock:
            events.append(event)

    sup.subscribe(collect)
    assert sup.start().result(timeout=90) is True
    status = sup.status()
    assert status.phase == "ready", [(i.name, i.health, i.health_detail) for i in status.instances]
    assert [i.name for i in status.instances][0] == "proxy"
    assert all(i.state == InstanceState.READY and i.pid for i in status.instances)
    assert all(i.uptime_s is not None for i in status.instances)
    # The run directory holds what was rendered, the logs, argv files and the state file.
    run = sup.run_dir
    assert run.parent == tmp_path / "state" / "pdtui" / "runs"
    for name in ("launch.sh", "plan.json", "state.json", "proxy.log", "decoder1.log", "prefiller1.argv.json", "lmcache-decoder1.yaml"):
        assert (run / name).exists(), name
    state = json.loads((run / "state.json").read_text())
    assert state["instances"]["decoder1"]["pid"] == status.instance("decoder1").pid
    # Demo coherence: every engine reports its simulated GPU use into the run directory.
    assert wait_for(lambda: len(list((run / "sim-gpus").glob("*.json"))) == 4, 10)

    # A completion through the proxy.
    proxy_port = data["proxy"]["port"]
    code, body = post_json(f"http://127.0.0.1:{proxy_port}/v1/completions", {"model": data["model"], "prompt": "hello there", "max_tokens": 4})
    assert code == 200 and body["choices"][0]["text"]

    # Restart one instance: a new process, ready again.
    old_pid = status.instance("prefiller1").pid
    assert sup.restart("prefiller1").result(timeout=60) is True
    new = sup.instance("prefiller1")
    assert new.state == InstanceState.READY and new.pid != old_pid and new.restarts == 1
    assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == psutil.STATUS_ZOMBIE
    # And a prefiller/decoder pair together.
    d_old = sup.instance("decoder1").pid
    assert sup.restart_pair("prefiller1", "decoder1").result(timeout=60) is True
    assert sup.instance("decoder1").pid != d_old and sup.instance("decoder1").state == InstanceState.READY

    sup.close()
    assert all(i.state == InstanceState.STOPPED for i in sup.status().instances)
    assert_nothing_left(run, profile_ports(data))

    with lock:
        kinds = {type(e) for e in events}
        log_events = [e for e in events if isinstance(e, LogLines)]
        progress = [e for e in events if isinstance(e, ReadinessProgress)]
        deployment = [e.kind for e in events if isinstance(e, DeploymentEvent)]
    assert {StateChanged, LogLines, ReadinessProgress, DeploymentEvent} <= kinds
    # Log lines come in batches, not one event per line.
    assert sum(len(e.lines) for e in log_events) > len(log_events)
    assert any(p.milestone == "app_startup_complete" for p in progress)
    assert "ready" in deployment and "stopped" in deployment


def test_port_taken_refuses_before_starting_anything(tmp_path, supervisors):
    import socket

    data = demo_profile_dict()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", data["decoders"][0]["port"]))
    blocker.listen()
    try:
        sup = Supervisor.launch(load_profile(write_profile(tmp_path, data)))
        supervisors.append(sup)
        with pytest.raises(PreflightError) as info:
            sup.start().result(timeout=60)
        assert f"port {data['decoders'][0]['port']}" in str(info.value)
        assert "decoder1" in str(info.value)
        assert all(i.state == InstanceState.STOPPED and i.pid is None for i in sup.status().instances)
        assert not list(sup.run_dir.glob("*.log"))
    finally:
        blocker.close()


def test_engine_oom_at_start_fails_with_reason_and_stops_all(tmp_path, supervisors):
    data = demo_profile_dict(startup_s=0.3, faults={"decoder1": ["oom"]})
    sup = Supervisor.launch(load_profile(write_profile(tmp_path, data)))
    supervisors.append(sup)
    assert sup.start().result(timeout=90) is False
    failed = sup.instance("decoder1")
    assert failed.state == InstanceState.FAILED
    assert "CUDA out of memory" in failed.reason and "during start-up" in failed.reason
    others = [i for i in sup.status().instances if i.name != "decoder1"]
    assert all(i.state in (InstanceState.STOPPED, InstanceState.FAILED) for i in others)
    sup.close()  # ends the watchdog too
    assert_nothing_left(sup.run_dir, profile_ports(data))


def test_crash_later_is_marked_failed(tmp_path, supervisors):
    data = demo_profile_dict(startup_s=0.2, faults={"decoder1": ["crash_after=1"]}, count=1)
    sup = Supervisor.launch(load_profile(write_profile(tmp_path, data)))
    supervisors.append(sup)
    crashes = []
    sup.subscribe(lambda e: crashes.append(e) if isinstance(e, DeploymentEvent) and e.kind == "instance_crashed" else None)
    assert sup.start().result(timeout=90) is True
    try:
        post_json(f"http://127.0.0.1:{data['proxy']['port']}/v1/completions", {"model": data["model"], "prompt": "hi", "max_tokens": 2})
    except OSError:
        pass  # the decoder may die before answering
    assert wait_for(lambda: sup.instance("decoder1").state == InstanceState.FAILED, 30)
    st = sup.instance("decoder1")
    assert "while running" in st.reason and st.pid is None
    assert wait_for(lambda: crashes, 10) and "decoder1" in crashes[0].message
    assert sup.instance("prefiller1").state == InstanceState.READY  # the others keep running
    sup.close()
    assert_nothing_left(sup.run_dir, profile_ports(data))


def test_engine_ignoring_sigterm_is_killed(tmp_path, supervisors):
    data = demo_profile_dict(startup_s=0.2, faults={"prefiller1": ["ignore_sigterm"]}, count=1)
    profile = load_profile(write_profile(tmp_path, data))
    # SIGTERM first so the fault matters (the sim honours SIGINT); SIGKILL must follow.
    # 15 s: generous, so that the decoder (API server + EngineCore) stops on SIGTERM even on a
    # loaded 2-core machine; the prefiller that ignores SIGTERM still needs the SIGKILL.
    sup = Supervisor.launch(profile, stop_sequence=(("SIGTERM", 15.0), ("SIGKILL", 5.0)))
    supervisors.append(sup)
    assert sup.start().result(timeout=90) is True
    pid = sup.instance("prefiller1").pid
    sup.stop().result(timeout=60)
    st = sup.instance("prefiller1")
    assert st.state == InstanceState.STOPPED and "SIGKILL" in (st.reason or "")
    assert st.exit_code == -9
    assert sup.instance("decoder1").reason is None  # stopped politely by SIGTERM
    # what `up`/`down` print once per instance says how it was stopped
    said = [line for line in sup.last_stopped if line.startswith("prefiller1:")]
    assert len(said) == 1 and "killed with SIGKILL" in said[0], sup.last_stopped
    assert not [line for line in sup.last_stopped if line.startswith("decoder1:") and "SIGKILL" in line]
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    sup.close()
    assert_nothing_left(sup.run_dir, profile_ports(data))
