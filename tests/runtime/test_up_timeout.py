"""`pdtui up --timeout S`: one readiness deadline for the whole deployment, as a user runs it."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from pdtui.runtime import find_runs
from pdtui.runtime.statefile import read_state
from tests.conftest import REPO_ROOT
from tests.runtime.helpers import (
    demo_profile_dict,
    listening_ports,
    processes_in_run,
    profile_ports,
    write_profile,
)

pytestmark = pytest.mark.timeout(150)


def _pdtui(*args: str, timeout: float = 100) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pdtui", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout)


def _wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def test_deadline_smaller_than_the_instances_own_stops_everything(tmp_path, private_state_home):
    data = demo_profile_dict(startup_s=120, count=1)  # the engines take 120 s to come up ...
    for inst in data["prefillers"] + data["decoders"]:
        inst["startup_timeout_s"] = 600  # ... and would each be given 600 s
    profile = write_profile(tmp_path, data)
    t0 = time.monotonic()
    done = _pdtui("up", str(profile), "--timeout", "4")
    took = time.monotonic() - t0
    assert done.returncode == 1, done.stderr
    assert took < 90, took  # far below 120 s of start-up: the deadline, not the engines, ended it
    assert "not everything was ready within --timeout 4 s; stopping everything:" in done.stderr
    # both engines were caught starting, each named with how far it got and its log
    for name in ("prefiller1", "decoder1"):
        assert f"  - {name}: starting, last start-up step: " in done.stderr
        assert f"{name}.log)" in done.stderr
    assert "all processes stopped" in done.stderr
    (run,) = find_runs(private_state_home / "pdtui" / "runs")
    states = {name: rec.state for name, rec in read_state(run.path).instances.items()}
    assert set(states.values()) <= {"stopped", "failed"}, states
    assert _wait_for(lambda: not processes_in_run(run.path)), processes_in_run(run.path)
    assert _wait_for(lambda: not (set(profile_ports(data)) & listening_ports()))


def test_a_deadline_that_is_met_changes_nothing(tmp_path, private_state_home):
    data = demo_profile_dict(startup_s=0.2, count=1)
    profile = write_profile(tmp_path, data)
    up = _pdtui("up", str(profile), "--detach", "--timeout", "90")
    run_name = up.stdout.strip()
    try:
        assert up.returncode == 0, up.stderr
        assert "all ready" in up.stderr and "--timeout" not in up.stderr
    finally:
        down = _pdtui("down", *([run_name] if run_name else []))
    assert down.returncode == 0, down.stderr


@pytest.mark.parametrize("value", ["0", "-5", "soon", "inf", "nan"])
def test_a_bad_timeout_is_refused_before_anything_starts(tmp_path, private_state_home, value):
    profile = write_profile(tmp_path, demo_profile_dict(count=1))
    done = _pdtui("up", str(profile), f"--timeout={value}", timeout=60)
    assert done.returncode == 2
    assert f"argument --timeout: must be a number of seconds > 0, got {value!r}" in done.stderr
    assert not find_runs(private_state_home / "pdtui" / "runs")
