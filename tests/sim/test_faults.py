"""Each PDTUI_SIM_FAULT shows what an operator would see from a real vLLM in that state."""

from __future__ import annotations

import signal
import socket
import time

import pytest

from tests.sim.helpers import clean, start_sim


def test_oom_fails_startup_with_cuda_out_of_memory(tmp_path):
    sim = start_sim(tmp_path, env={"PDTUI_SIM_FAULT": "oom"})
    try:
        assert sim.proc.wait(20) == 1
        lines = [clean(line) for line in sim.lines()]
        text = "\n".join(lines)
        # The milestones before the failure, then the root cause, then the API server's verdict.
        loading = next(i for i, l in enumerate(lines) if "Loading weights took" in l)
        failed = next(i for i, l in enumerate(lines) if "EngineCore failed to start." in l)
        oom = next(i for i, l in enumerate(lines) if "torch.OutOfMemoryError: CUDA out of memory." in l)
        verdict = next(i for i, l in enumerate(lines) if "RuntimeError: Engine core initialization failed" in l)
        assert loading < failed < oom < verdict
        assert "Application startup complete" not in text
        assert "Tried to allocate" in lines[oom]
    finally:
        sim.stop(signal.SIGKILL)


def test_crash_after_n_requests(tmp_path):
    sim = start_sim(tmp_path, env={"PDTUI_SIM_FAULT": "crash_after=2"})
    try:
        sim.wait_healthy()
        for _ in range(2):
            status, _ = sim.post("/v1/completions", {"prompt": "hi", "max_tokens": 2})
            assert status == 200
        assert sim.proc.wait(20) == 1
        text = "\n".join(clean(line) for line in sim.lines())
        assert "EngineCore encountered a fatal error." in text
        assert "EngineDeadError" in text
    finally:
        sim.stop(signal.SIGKILL)


def test_hang_accepts_connections_but_never_answers(tmp_path):
    sim = start_sim(tmp_path, env={"PDTUI_SIM_FAULT": "hang"})
    try:
        sim.wait_for_log(r"Application startup complete")
        with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as conn:
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            conn.settimeout(1.0)
            with pytest.raises(socket.timeout):
                conn.recv(100)
        assert sim.proc.poll() is None  # alive, just stuck
        assert sim.stop(signal.SIGTERM) == 0
    finally:
        sim.stop(signal.SIGKILL)


def test_slow_start_delays_health(tmp_path):
    sim = start_sim(tmp_path, env={"PDTUI_SIM_FAULT": "slow_start=1.5", "PDTUI_SIM_STARTUP_S": "0.1"})
    try:
        started = time.monotonic()
        sim.wait_healthy()
        assert time.monotonic() - started >= 1.4
    finally:
        sim.stop(signal.SIGKILL)


def test_ignore_sigterm_needs_sigkill(tmp_path):
    sim = start_sim(tmp_path, env={"PDTUI_SIM_FAULT": "ignore_sigterm"})
    try:
        sim.wait_healthy()
        sim.proc.send_signal(signal.SIGTERM)
        sim.wait_for_log(r"trigger received signal=SIGTERM")
        time.sleep(0.5)
        assert sim.proc.poll() is None
        assert sim.get("/health")[0] == 200
        sim.proc.kill()
        assert sim.proc.wait(10) == -signal.SIGKILL
    finally:
        sim.stop(signal.SIGKILL)
