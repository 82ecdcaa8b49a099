"""Issue 19, the CLI: logscan prefixes event lines with short names, `pdtui up` prints
whole lines and says "stopped" once per process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pdtui.telemetry.cli import short_labels
from tests.ui.conftest import demo_profile_on_free_ports


def test_short_labels_tell_the_files_apart():
    assert short_labels(["/a/b/run1/decoder.log", "/a/b/run1/prefiller.log"]) == {
        "/a/b/run1/decoder.log": "decoder.log", "/a/b/run1/prefiller.log": "prefiller.log"}
    assert short_labels(["/x/run1/decoder.log", "/x/run2/decoder.log"]) == {
        "/x/run1/decoder.log": "run1/decoder.log", "/x/run2/decoder.log": "run2/decoder.log"}


def test_logscan_event_lines_are_not_prefixed_with_the_full_path(shared_fixtures: Path):
    logs = shared_fixtures / "lmcache-logs/1p1d"
    files = [str(logs / "prefiller.log"), str(logs / "decoder.log")]
    done = subprocess.run([sys.executable, "-m", "pdtui", "logscan", *files], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    events = [line for line in done.stdout.splitlines() if "] store " in line or "] lookup " in line]
    assert events and all(line.startswith(("prefiller.log: ", "decoder.log: ")) for line in events)
    assert str(logs) not in "\n".join(events)


@pytest.mark.timeout(150)
def test_up_prints_whole_lines_and_stopped_once(tmp_path):
    profile = demo_profile_on_free_ports(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "pdtui", "up", str(profile)], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, env=dict(os.environ))
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if "all ready" in line:
                break
        assert any("all ready" in line for line in lines), lines
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=90)
        lines += rest.splitlines()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # No two progress stamps on one line (two threads' lines never run together).
    assert not [line for line in lines if len(re.findall(r"\[\s*\d+\.\ds\]", line)) > 1], lines
    for name in ("proxy", "decoder1", "decoder2", "prefiller1", "prefiller2"):
        said = [line for line in lines if "stopped" in line and re.search(rf"\b{name}\b", line)]
        assert len(said) == 1, (name, said, lines)
    assert lines.count("all processes stopped") == 1, lines
