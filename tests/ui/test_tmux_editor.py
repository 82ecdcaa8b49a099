"""In a real terminal (tmux): open a commented profile, move through every instance, edit
one port, save. The file on disk differs from the original in that one line only."""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from tests.conftest import REPO_ROOT
from tests.ui.test_tmux_e2e import tmux, wait_for_screen

pytestmark = [
    pytest.mark.tmux,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.timeout(150),
]

COMMENTED = REPO_ROOT / "tests" / "model" / "profiles" / "commented.yaml"


def keys(session: str, *names: str) -> None:
    for name in names:
        tmux("send-keys", "-t", session, name)
        time.sleep(0.15)  # one key at a time, as typed; correctness never depends on it


def test_edit_one_port_in_a_commented_profile_changes_only_that_line(tmp_path, ui_home):
    profile = tmp_path / "commented.yaml"
    shutil.copyfile(COMMENTED, profile)
    original = profile.read_text()
    session = f"pdtui-editor-{uuid.uuid4().hex[:8]}"
    env = {
        "PDTUI_CONFIG_DIR": os.environ["PDTUI_CONFIG_DIR"],
        "XDG_STATE_HOME": os.environ["XDG_STATE_HOME"],
        "XDG_CACHE_HOME": os.environ["XDG_CACHE_HOME"],
        "TERM": "xterm-256color",
    }
    env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", *env_args,
         sys.executable, "-m", "pdtui", "--demo", "--profile", str(profile))
    try:
        wait_for_screen(session, "SIMULATION", 30)
        keys(session, "2")
        wait_for_screen(session, "commented.yaml  saved", 20)
        # Every instance: prefiller1, prefiller2, decoder1, decoder2, then back to decoder1.
        for name in ("prefiller1", "prefiller2", "decoder1", "decoder2"):
            keys(session, "Down")
            wait_for_screen(session, f"Name              {name}", 10)
        keys(session, "Up")
        wait_for_screen(session, "Name              decoder1", 10)
        assert "modified" not in wait_for_screen(session, "saved", 5)
        # sections -> tabs -> form -> Name -> GPUs -> Port
        keys(session, *["Tab"] * 5, "End", *["BSpace"] * 4, *"7299")
        wait_for_screen(session, "modified", 10)
        keys(session, "C-s")
        dialog = wait_for_screen(session, "Save commented.yaml?", 10)
        assert "-    port: 7200" in dialog and "+    port: 7299" in dialog
        keys(session, "Enter")
        wait_for_screen(session, "commented.yaml  saved", 10)
        keys(session, "Escape", "q")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if subprocess.run(["tmux", "has-session", "-t", session], capture_output=True, check=False).returncode != 0:
                break
            time.sleep(0.3)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, timeout=20, check=False)
    changed = [line for line in difflib.unified_diff(original.splitlines(), profile.read_text().splitlines(), n=0, lineterm="")
               if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ["-    port: 7200", "+    port: 7299"]
    assert (tmp_path / "commented.yaml.bak.1").read_text() == original
