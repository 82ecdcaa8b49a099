"""The rendered launch.sh really starts a deployment without pdtui, and Ctrl-C stops all of it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml

from pdtui.model import render_plan, validate_text, write_rendered
from tests.conftest import REPO_ROOT, free_port
from tests.model.launch_helpers import launch_argv, stop_launch_script


def demo_with_free_ports() -> dict:
    doc = yaml.safe_load((REPO_ROOT / "configs" / "demo.yaml").read_text())
    doc["proxy"].update(port=free_port(), zmq_port=free_port())
    for inst in doc["prefillers"] + doc["decoders"]:
        inst["port"] = free_port()
        inst["sim"] = {"startup_s": 0.3, "decode_ms_per_token": 0, "prefill_us_per_token": 0}
    for dec in doc["decoders"]:
        dec["nixl_init_ports"] = [free_port()]
        dec["nixl_alloc_ports"] = [free_port()]
    doc["prefillers"] = doc["prefillers"][:1]
    doc["decoders"] = doc["decoders"][:1]
    return doc


def _rendered_demo(tmp_path: Path):
    """A 1P1D demo profile on free ports, rendered to tmp_path/rendered: (plan, folder)."""
    validation = validate_text(yaml.safe_dump(demo_with_free_ports()))
    assert validation.ok, [p.format() for p in validation.problems]
    out = tmp_path / "rendered"
    plan = render_plan(validation.profile, out)
    write_rendered(plan, out)
    return plan, out


def _listening(ports: set[int]) -> set[int]:
    return {c.laddr.port for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port in ports}


@pytest.mark.timeout(120)
def test_launch_script_starts_serves_and_stops(tmp_path: Path):
    plan, out = _rendered_demo(tmp_path)
    stderr_path = tmp_path / "launch.err"
    with open(stderr_path, "w") as err:
        proc = subprocess.Popen(launch_argv(out / "launch.sh"), stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    ports = {plan.proxy.port, *(i.port for i in plan.instances)}
    try:
        deadline = time.monotonic() + 60
        while "deployment ready" not in stderr_path.read_text():
            assert proc.poll() is None, stderr_path.read_text()
            assert time.monotonic() < deadline, stderr_path.read_text()
            time.sleep(0.2)
        text = stderr_path.read_text()
        assert text.index("started proxy") < text.index("started decoder1") < text.index("started prefiller1")
        body = json.dumps({"model": plan.model, "prompt": "hello there, how are you", "max_tokens": 4}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{plan.proxy.port}/v1/completions", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=20) as response:
            answer = json.load(response)
        assert answer["choices"][0]["text"]
        assert _listening(ports) == ports
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3
    finally:
        stop_launch_script(proc, stderr_path)
    assert "All processes stopped." in stderr_path.read_text()
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, alive
    assert not _listening(ports)
    assert (out / "logs" / "decoder1.log").read_text()


@pytest.mark.timeout(120)
def test_launch_script_started_with_sigint_ignored_says_how_to_stop_it_and_stops_on_term(tmp_path: Path):
    plan, out = _rendered_demo(tmp_path)
    stderr_path = tmp_path / "launch.err"
    with open(stderr_path, "w") as err:  # as `nohup ./launch.sh &` from a script starts it
        proc = subprocess.Popen(["env", "--ignore-signal=INT", "bash", str(out / "launch.sh")],
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "started proxy" not in stderr_path.read_text():
            assert proc.poll() is None, stderr_path.read_text()
            assert time.monotonic() < deadline, stderr_path.read_text()
            time.sleep(0.1)
        assert f"Ctrl-C cannot reach this script (SIGINT was ignored when it started); stop it with: kill {proc.pid}" \
            in stderr_path.read_text()
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.terminate()  # what the note says
        assert proc.wait(timeout=90) == 130, stderr_path.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert "All processes stopped." in stderr_path.read_text()
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, alive
