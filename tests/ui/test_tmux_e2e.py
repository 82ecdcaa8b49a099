"""End to end in a real terminal: `pdtui --demo` under tmux, driven with send-keys and
read with capture-pane, from launch to ready to stop to quit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from tests.ui.conftest import demo_profile_on_free_ports

pytestmark = [
    pytest.mark.tmux,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.timeout(150),
]


def tmux(*args: str, check: bool = True) -> str:
    done = subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=20)
    if check and done.returncode != 0:
        raise AssertionError(f"tmux {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def wait_for_screen(session: str, text: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    screen = ""
    while time.monotonic() < deadline:
        screen = tmux("capture-pane", "-p", "-t", session, check=False)
        if text in screen:
            return screen
        time.sleep(0.3)
    raise AssertionError(f"{text!r} not on screen after {timeout_s}s; screen was:\n{screen}")


def test_demo_launch_ready_stop_quit_in_tmux(tmp_path, ui_home):
    profile = demo_profile_on_free_ports(tmp_path)
    session = f"pdtui-e2e-{uuid.uuid4().hex[:8]}"
    env = {
        "PDTUI_CONFIG_DIR": os.environ["PDTUI_CONFIG_DIR"],
        "XDG_STATE_HOME": os.environ["XDG_STATE_HOME"],
        "XDG_CACHE_HOME": os.environ["XDG_CACHE_HOME"],
        "TERM": "xterm-256color",
    }
    env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    # Several arguments after the options: tmux runs them directly, no shell string.
    tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", *env_args,
         sys.executable, "-m", "pdtui", "--demo", "--profile", str(profile))
    try:
        wait_for_screen(session, "SIMULATION", 30)
        wait_for_screen(session, "8 GPUs (simulated)", 30)
        tmux("send-keys", "-t", session, "u")
        wait_for_screen(session, "Launch deployment", 10)
        tmux("send-keys", "-t", session, "Enter")
        wait_for_screen(session, "ready · proxy ready · 4/4 engines ready", 60)
        tmux("send-keys", "-t", session, "X")
        wait_for_screen(session, "Stop every process", 10)
        tmux("send-keys", "-t", session, "Enter")
        wait_for_screen(session, "stopped · proxy stopped · 0/4 engines ready", 60)
        tmux("send-keys", "-t", session, "q")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode != 0:
                break  # the app quit, so tmux closed its only window
            time.sleep(0.3)
        else:
            screen = tmux("capture-pane", "-p", "-t", session, check=False)
            raise AssertionError(f"pdtui did not quit on q; screen:\n{screen}")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, timeout=20)
