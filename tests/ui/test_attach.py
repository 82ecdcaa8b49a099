"""`pdtui --attach RUN`: re-attach the TUI to a deployment started headless.

Real runs: the demo profile is started with `pdtui up --detach` (simulated engines,
real processes and ports), looked up by name, attached to, stopped with `pdtui down`.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pdtui.runtime import find_runs
from pdtui.ui.app import PdtuiApp
from pdtui.ui.cli import attach_target, run_is_simulated
from tests.ui.conftest import demo_profile_on_free_ports
from tests.ui.test_app import SIZE, table_text, wait_for


def pdtui(*argv: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pdtui", *argv], env=dict(os.environ), capture_output=True, text=True, timeout=timeout
    )


def test_attach_to_a_run_that_does_not_exist_exits_1():
    # stdin/stdout are not a terminal here: the run is checked before the terminal is.
    done = pdtui("--attach", "no-such-run")
    assert done.returncode == 1, done
    assert "cannot attach" in done.stderr and "no-such-run" in done.stderr, done.stderr


@pytest.mark.timeout(150)
async def test_attach_to_a_live_run_then_refuse_it_once_stopped(tmp_path):
    profile = demo_profile_on_free_ports(tmp_path)
    started = pdtui("up", str(profile), "--detach", timeout=120)
    assert started.returncode == 0, started
    run = find_runs()[0]
    try:
        # By name and by directory, the run resolves to the same directory.
        assert attach_target(run.name) == (run.path, None)
        assert attach_target(str(run.path)) == (run.path, None)

        # `up --detach` says how to come back.
        assert f"pdtui --attach {run.name}" in started.stderr, started.stderr
        # A demo run is known by its plan: `pdtui --attach` alone gets simulated GPUs.
        assert run_is_simulated(run.path)
        app = PdtuiApp(None, demo=run_is_simulated(run.path), attach_run=run.path, offer_reattach=False, keymap={})
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.control.status() is not None, 30, "the re-attach")
            await wait_for(pilot, lambda: table_text(app, "#instance-table").count("ready") == 5, 30, "5 ready rows")
            assert str(app.screen.query_one("#health").render()).endswith(f"run {run.name}")
            # The title names the run's profile, not the demo preset no one opened.
            title = str(app.screen.query_one("#title").render())
            assert f"{run.profile} (run {run.name})" in title and "demo.yaml" not in title, title
            await wait_for(pilot, lambda: "decoder1" in table_text(app, "#gpu-table"), 30, "simulated GPU holders")
            # Quit -> Detach: the run keeps going and pdtui says how to come back.
            await pilot.press("q")
            await pilot.pause()
            await pilot.press("enter")  # Detach is the first choice
            await wait_for(pilot, lambda: app.commands.exit_note is not None, 30, "the detach")
        assert f"pdtui --attach {run.name}" in app.commands.exit_note and run.name in app.commands.exit_note
        assert any(r.name == run.name and r.live for r in find_runs())
    finally:
        stopped = pdtui("down", run.name, timeout=120)
    assert stopped.returncode == 0, stopped

    path, problem = attach_target(run.name)
    assert path is None and "not running" in problem and run.name in problem, problem
    done = pdtui("--attach", run.name)
    assert done.returncode == 1, done
    assert "not running" in done.stderr, done.stderr
