"""`pdtui up` before its first spawn: the refusal of a second run of a profile stays exact
while its usual case (no run of that profile recorded) reads no typed state, checks no
process and scans no /proc."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil

from pdtui.runtime.launching import already_running
from pdtui.runtime.rundir import new_run_dir
from pdtui.runtime.statefile import write_state
from tests.conftest import REPO_ROOT


def _record(run, profile: str, pid: int | None) -> None:
    inst = {"kind": "proxy", "state": "ready"}
    if pid is not None:
        proc = psutil.Process(pid)
        inst.update(pid=pid, pgid=os.getpgid(pid), create_time=proc.create_time(), cmdline=proc.cmdline())
    write_state(run, {"version": 1, "profile": profile, "created": time.time(), "detached": True,
                      "owner": None, "instances": {"proxy": inst}})


def test_a_live_run_of_the_profile_is_found_and_others_are_not(private_state_home):
    assert already_running("p") is None  # no runs folder at all
    live = new_run_dir("p")
    _record(live, "p", os.getpid())  # this very process stands in for the run's proxy
    gone = new_run_dir("q")
    _record(gone, "q", None)
    other = new_run_dir("r")
    _record(other, "r", os.getpid())
    (new_run_dir("p") / "state.json").write_text("{not json")  # unreadable: names no profile
    assert already_running("p") == live.name
    assert already_running("q") is None  # recorded, but nothing of it runs
    assert already_running("s") is None
    # A state file that names the profile in its JSON but is not a valid state: no match,
    # as before (the typed read refuses it).
    bad = new_run_dir("t")
    (bad / "state.json").write_text(json.dumps({"version": 1, "profile": "t", "instances": "x"}))
    assert already_running("t") is None


def test_a_run_whose_recorded_pids_are_gone_counts_by_its_marker(private_state_home):
    """A run of the profile whose recorded processes are gone is live while a process
    still carries its run marker (an orphaned EngineCore), as find_runs counts it."""
    run = new_run_dir("p")
    _record(run, "p", None)
    assert already_running("p") is None
    env = dict(os.environ, PDTUI_RUN=f"{run.name}/decoder1", PDTUI_RUN_ROOT=os.path.realpath(run.parent))
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env=env)
    try:
        assert already_running("p") == run.name
    finally:
        orphan.kill()
        orphan.wait()
    assert already_running("p") is None


def test_no_live_run_of_the_profile_costs_no_typed_read_and_no_process_check(private_state_home):
    _record(new_run_dir("other"), "other", os.getpid())
    _record(new_run_dir("mine"), "mine", None)  # an earlier run of it, stopped
    code = (
        "import sys; from pdtui.runtime.launching import already_running; "
        "assert already_running('mine') is None; "
        "print(sorted(m for m in ('psutil', 'pydantic', 'pdtui.runtime.runs', 'pdtui.runtime.runstate') if m in sys.modules))"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
