"""`pdtui --demo --tour` in a real terminal (tmux, 80x24): the tour walks on its own until a
key takes over; the operator then quits with Stop and no process of the run is left."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from tests.ui.conftest import demo_profile_on_free_ports
from tests.ui.test_tmux_e2e import tmux, wait_for_screen

pytestmark = [
    pytest.mark.tmux,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.timeout(300),
]


def _processes_under(directory: str) -> list[str]:
    """Processes whose command line names `directory` (the run lives under it)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if directory in cmdline and proc.pid != os.getpid():
            found.append(f"{proc.pid}: {cmdline[:160]}")
    return found


def test_tour_in_tmux_walks_then_a_key_takes_over(tmp_path, ui_home):
    profile = demo_profile_on_free_ports(tmp_path)
    session = f"pdtui-tour-{uuid.uuid4().hex[:8]}"
    env = {
        "PDTUI_CONFIG_DIR": os.environ["PDTUI_CONFIG_DIR"],
        "XDG_STATE_HOME": os.environ["XDG_STATE_HOME"],
        "TERM": "xterm-256color",
        "PDTUI_TOUR_PACE": "0.5",
    }
    env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", *env_args,
         sys.executable, "-m", "pdtui", "--demo", "--tour", "--profile", str(profile))
    try:
        wait_for_screen(session, "tour 1/10", 60)
        wait_for_screen(session, "tour 4/10", 60)  # the launch
        wait_for_screen(session, "tour 6/10", 120)  # KV transfer: the deployment is up
        tmux("send-keys", "-t", session, "space")  # any key
        wait_for_screen(session, "tour stopped", 20)
        screen = tmux("capture-pane", "-p", "-t", session)
        assert "tour 7/10" not in screen and "tour 6/10" not in screen  # the caption is gone
        time.sleep(1.5)
        assert "tour 7/10" not in tmux("capture-pane", "-p", "-t", session)  # and it does not go on
        assert _processes_under(os.environ["XDG_STATE_HOME"]), "the tour's deployment should be running"
        tmux("send-keys", "-t", session, "q")  # quit works from the KV view too
        wait_for_screen(session, "Detach", 10)
        tmux("send-keys", "-t", session, "Tab")  # Detach -> Stop
        tmux("send-keys", "-t", session, "Enter")
        deadline = time.monotonic() + 60
        while subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode == 0:
            if time.monotonic() > deadline:
                raise AssertionError("pdtui did not quit:\n" + tmux("capture-pane", "-p", "-t", session, check=False))
            time.sleep(0.3)
        deadline = time.monotonic() + 30
        while _processes_under(os.environ["XDG_STATE_HOME"]) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert _processes_under(os.environ["XDG_STATE_HOME"]) == []
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, timeout=20)
