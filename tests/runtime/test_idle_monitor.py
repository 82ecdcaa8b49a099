"""The monitor of a ready, idle deployment costs little (few ticks, no log reads) and
still notices new log lines, a subscriber's request for fast ticks and a crash."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from pdtui.runtime import InstanceState, LogLines, Supervisor
from pdtui.runtime.monitor import IDLE_TICK_S, MONITOR_TICK_S
from tests.runtime.helpers import wait_for, demo_profile_dict, load_profile, write_profile

pytestmark = pytest.mark.timeout(120)



def log_sizes(sup: Supervisor) -> dict[str, int]:
    return {i.name: os.path.getsize(i.log_path) for i in sup.status().instances}


def wait_idle_pace(sup: Supervisor) -> None:
    """Past any fast period asked for (subscribe asks for one), quiet for a while (QUIET_AFTER_S),
    then the tick doubles up to IDLE_TICK_S: waited for as the pace the monitor chose."""
    assert wait_for(lambda: sup.monitor_tick_s == IDLE_TICK_S, 60), sup.monitor_tick_s


def test_idle_ready_run_is_cheap_and_still_watched(tmp_path, supervisors):
    data = demo_profile_dict(startup_s=0.2, count=1)
    sup = Supervisor.launch(load_profile(write_profile(tmp_path, data)))
    supervisors.append(sup)
    events: list[LogLines] = []
    marker_seen = threading.Event()

    def collect(event) -> None:
        if isinstance(event, LogLines):
            events.append(event)
            if any("idle-marker" in line for line in event.lines):
                marker_seen.set()

    sup.subscribe(collect)
    assert sup.start().result(timeout=180) is True, [(i.name, i.state, i.reason) for i in sup.status().instances]
    wait_idle_pace(sup)

    tailers = {m.spec.name: m.tailer for m in sup._members.values()}
    sizes = log_sizes(sup)
    reads = {n: t.reads for n, t in tailers.items()}
    ticks, seen_events = sup.monitor_ticks, len(events)
    started = time.monotonic()
    time.sleep(3.0)
    grown = {n for n, size in log_sizes(sup).items() if size != sizes[n]}
    idle_ticks = sup.monitor_ticks - ticks
    window = time.monotonic() - started  # a loaded machine oversleeps: bound by what passed
    window_events = events[seen_events:]
    # At the fast tick this would be ~30 ticks, each opening all 3 logs.
    assert 1 <= idle_ticks <= window / IDLE_TICK_S + 2, (idle_ticks, window)
    for name, tailer in tailers.items():
        delta = tailer.reads - reads[name]
        if name not in grown:
            assert delta == 0, f"{name}.log did not grow but was read {delta} times"
        else:
            # An idle engine still logs an access line for each /health GET of the proxy
            # (every 2 s): such a log is read when it grew, at most once a tick.
            batches = sum(1 for e in window_events if e.name == name)
            assert delta <= batches + 1, (name, delta, batches)
    # The proxy logs only about health (a change, or on a loaded machine a check that timed
    # out): never a line per request or per check.
    proxy_log = Path(sup.instance("proxy").log_path).read_bytes()[sizes["proxy"]:].decode(errors="replace")
    assert all("health check" in line or " is now " in line for line in proxy_log.splitlines()), proxy_log

    # Still at the idle pace: a line appended to a log arrives (one line is no burst:
    # the pace stays idle) ...
    with open(Path(sup.instance("proxy").log_path), "a") as log:
        log.write("idle-marker: written by the test\n")
    assert marker_seen.wait(10)
    # ... and a crash of an idle engine is noticed.
    pid = sup.instance("decoder1").pid
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    assert wait_for(lambda: sup.instance("decoder1").state == InstanceState.FAILED, 15)
    noticed_after = time.monotonic() - killed_at
    # Checked every idle tick (IDLE_TICK_S); the bound is loose for a loaded 2-core machine.
    assert noticed_after < 5.0, noticed_after
    assert "killed by SIGKILL while running" in sup.instance("decoder1").reason

    # A subscriber asking for live logs gets the fast tick again at once.
    wait_idle_pace(sup)  # the crash's own lines may have sped it up for a moment
    ticks = sup.monitor_ticks
    time.sleep(1.0)
    assert sup.monitor_ticks - ticks <= 1.0 / IDLE_TICK_S + 1  # still the idle pace
    sup.watch_closely(30.0)
    # At once: the next tick (IDLE_TICK_S at most) chooses the fast pace and keeps it.
    assert wait_for(lambda: sup.monitor_tick_s == MONITOR_TICK_S, 10), sup.monitor_tick_s
    ticks = sup.monitor_ticks
    assert wait_for(lambda: sup.monitor_ticks - ticks >= 8, 30)
    assert sup.monitor_tick_s == MONITOR_TICK_S
    sup.close()


def test_attached_process_check_is_cheap_and_sees_death_as_zombie(tmp_path):
    """A re-attached process (not handed a Popen) is verified by psutil once, then by its
    /proc start time: a process that died (here a zombie nobody reaped yet) is gone."""
    import subprocess
    import sys

    import psutil

    from pdtui.runtime.processes import HAVE_PROC, ProcessHandle, proc_stat

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        proc = psutil.Process(child.pid)
        handle = ProcessHandle(child.pid, child.pid, proc.create_time(), proc.cmdline(), str(tmp_path / "x.log"))
        assert handle.poll() is None
        assert handle.poll() is None
        if HAVE_PROC:
            assert handle._proc_start == proc_stat(child.pid)[1]
        child.kill()
        # Not reaped: the pid stays, as a zombie, until wait() below.
        assert wait_for(lambda: handle.poll() == -999, 10)
    finally:
        child.kill()
        child.wait(timeout=10)
    # Recorded with another start time: the pid was recycled, not ours.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        proc = psutil.Process(other.pid)
        stale = ProcessHandle(other.pid, other.pid, proc.create_time() - 100.0, proc.cmdline(), str(tmp_path / "y.log"))
        assert stale.poll() == -999
        fresh = ProcessHandle(other.pid, other.pid, proc.create_time(), proc.cmdline(), str(tmp_path / "y.log"))
        assert fresh.poll() is None
        if HAVE_PROC:
            fresh._proc_start = b"1"  # as if the pid had been recycled since it was verified
            assert fresh.poll() == -999
    finally:
        other.kill()
        other.wait(timeout=10)


def test_ready_logs_stay_unread_until_a_subscriber_takes_their_lines(tmp_path, supervisors, monkeypatch):
    """The UI tails every log in its deployment monitor and subscribes without LogLines:
    the supervisor then reads no ready instance's log (one stat a tick), yet still follows a
    restart's start-up there and hands new lines to a later subscriber that takes them."""
    from pdtui.runtime import ReadinessProgress, monitor

    monkeypatch.setattr(monitor, "LINES_AFTER_READY_S", 1.0)
    data = demo_profile_dict(startup_s=0.2, count=1)
    sup = Supervisor.launch(load_profile(write_profile(tmp_path, data)))
    supervisors.append(sup)
    events: list = []
    sup.subscribe(events.append, log_lines=False)
    assert sup.start().result(timeout=180) is True, [(i.name, i.state, i.reason) for i in sup.status().instances]

    tailers = {m.spec.name: m.tailer for m in sup._members.values()}
    engines = ("prefiller1", "decoder1")
    last_ready = max(i.ready_at for i in sup.status().instances)
    assert wait_for(lambda: time.time() - last_ready > 1.5, 10)  # past the lines that follow readiness
    ticks, sizes, reads = sup.monitor_ticks, log_sizes(sup), {n: t.reads for n, t in tailers.items()}
    # The proxy GETs each engine's /health every 2 s, and each GET is a line in its log.
    assert wait_for(lambda: all(log_sizes(sup)[n] > sizes[n] for n in engines) and sup.monitor_ticks > ticks + 1, 30)
    assert {n: t.reads for n, t in tailers.items()} == reads
    assert not any(isinstance(e, LogLines) for e in events)

    seen = len(events)
    assert sup.restart("decoder1").result(timeout=180) is True
    milestones = [e.milestone for e in events[seen:] if isinstance(e, ReadinessProgress) and e.name == "decoder1"]
    assert "app_startup_complete" in milestones, milestones

    marker_seen = threading.Event()
    sup.subscribe(lambda e: marker_seen.set() if isinstance(e, LogLines) and any("late-marker" in x for x in e.lines) else None)
    with open(Path(sup.instance("decoder1").log_path), "a") as log:
        log.write("late-marker: written by the test\n")
    assert marker_seen.wait(10)
    assert not any(isinstance(e, LogLines) for e in events)  # still none for the first one
    sup.close()
