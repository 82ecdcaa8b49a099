"""The cockpit in a real terminal: `pdtui --demo`, `u`, no other key -- and the first
screen shows a sparkline, a non-zero request or token rate, a KV-transfer figure and
a log line (the demo's gentle background load makes them move)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid

import pytest


from tests.ui.conftest import demo_profile_on_free_ports
from tests.ui.test_tmux_e2e import pytestmark as tmux_marks  # noqa: F401 - same skip rules
from tests.ui.test_tmux_e2e import tmux, wait_for_screen

pytestmark = tmux_marks

# The issue asks for 15 s on an operator's machine; this shared 2-core box gets a
# generous bound, and the time it took is in the failure message.
BOUND_S = 60.0
SPARK = re.compile(r"[▂▃▄▅▆▇█]")
ENGINE_ROW = re.compile(r"│ (?:prefiller|decoder)\d+\s+[PD]\s+ready\s+\S+\s+([\d.]+|-)\s+([\d.]+|-)\s+(.*)")
KV_ROW = re.compile(r"prefiller\d+ → decoder\d+\s+([\d.]+)\s+(\S+)\s+(\S+)")
LOG_LINE = re.compile(r"│(?:prefiller|decoder)\d+\s*│ \S")


def what_is_missing(screen: str) -> list[str]:
    missing = []
    rows = ENGINE_ROW.findall(screen)
    if not any(SPARK.search(history) for _, _, history in rows):
        missing.append("an instance sparkline")
    rates = [float(v) for req, tok, _ in rows for v in (req, tok) if v != "-"]
    if not any(rate > 0 for rate in rates):
        missing.append("a non-zero request or token rate")
    if not any(float(xfer) > 0 for xfer, _, _ in KV_ROW.findall(screen)):
        missing.append("a KV-transfer figure")
    if not LOG_LINE.search(screen):
        missing.append("a log line")
    return missing


@pytest.mark.timeout(420)
def test_launch_and_nothing_else_fills_the_cockpit(tmp_path, ui_home):
    profile = demo_profile_on_free_ports(tmp_path)
    session = f"pdtui-cockpit-{uuid.uuid4().hex[:8]}"
    env = {"PDTUI_CONFIG_DIR": os.environ["PDTUI_CONFIG_DIR"], "XDG_STATE_HOME": os.environ["XDG_STATE_HOME"],
           "XDG_CACHE_HOME": os.environ["XDG_CACHE_HOME"], "TERM": "xterm-256color", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", *env_args,
         sys.executable, "-m", "pdtui", "--demo", "--profile", str(profile))
    try:
        wait_for_screen(session, "8 GPUs (simulated)", 90)
        tmux("send-keys", "-t", session, "u")
        wait_for_screen(session, "Launch deployment", 30)
        tmux("send-keys", "-t", session, "Enter")
        pressed = time.monotonic()
        screen, missing = "", ["everything"]
        while time.monotonic() - pressed < BOUND_S:
            screen = tmux("capture-pane", "-p", "-t", session, check=False)
            missing = what_is_missing(screen)
            if not missing:
                break
            time.sleep(0.5)
        took = time.monotonic() - pressed
        assert not missing, f"after {took:.1f} s still missing {missing}; screen:\n{screen}"
        print(f"cockpit complete {took:.1f} s after the launch key")
    finally:
        try:  # stop the deployment the way an operator does, then close the terminal
            tmux("send-keys", "-t", session, "X")
            wait_for_screen(session, "Stop every process", 30)
            tmux("send-keys", "-t", session, "Enter")
            wait_for_screen(session, "0/4 engines ready", 120)
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, timeout=20)


def test_what_is_missing_reads_a_real_capture():
    """The parser above, on a capture of the cockpit (so the tmux test can fail)."""
    screen = (
        "│ decoder1    D      ready       13s  0.6    61     █▄▆▄▅▄▅▄   0%  ▁▁▁▁▁▁▁▁ │\n"
        "  prefiller1 → decoder1                    0.20     0.00     99%   0.05 ms  0.07 ms  ▂▂▃\n"
        "│decoder1   │ (APIServer pid=1) INFO: 127.0.0.1:5 - \"POST /v1/completions HTTP/1.1\" 200 OK │\n"
    )
    assert what_is_missing(screen) == []
    idle = screen.replace("0.6    61", "0.0    0 ").replace("0.20", "0.00")
    assert what_is_missing(idle) == ["a non-zero request or token rate", "a KV-transfer figure"]
