"""`pdtui proxy` as a process: bad settings, readiness, clean stop."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from pdtui.cli import main as pdtui_main
from tests.conftest import REPO_ROOT, free_port

pytestmark = pytest.mark.timeout(60)


def test_bad_settings_exit_2_with_the_flag_named(capsys):
    rc = pdtui_main(["proxy", "--prefiller", "http://127.0.0.1:7100",
                     "--decoder", "http://127.0.0.1:7200", "--decoder-init-ports", "7300"])
    assert rc == 2
    assert "1 init ports [7300] but 0 alloc ports" in capsys.readouterr().err


def test_process_answers_health_503_without_backends_and_stops_on_sigterm():
    port, zmq_port = free_port(), free_port()
    dead = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pdtui.proxy", "--port", str(port), "--zmq-port", str(zmq_port),
         "--prefiller", dead, "--decoder", dead, "--decoder-init-ports", "7300",
         "--decoder-alloc-ports", "7400", "--health-interval", "0.2"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        status = body = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    status, body = r.status, json.load(r)
            except urllib.error.HTTPError as exc:
                status, body = exc.code, json.load(exc)
            except OSError:
                time.sleep(0.1)
                continue
            if body["prefillers"][0]["state"] == "unhealthy":
                break
            time.sleep(0.1)
        assert status == 503 and body["status"] == "unavailable"
        assert "GET /health failed" in body["decoders"][0]["last_error"]
        # the ZMQ socket is bound on 127.0.0.1, so a second proxy on it is refused clearly
        clash = subprocess.run(
            [sys.executable, "-m", "pdtui.proxy", "--port", str(free_port()), "--zmq-port",
             str(zmq_port), "--prefiller", dead, "--decoder", dead, "--decoder-init-ports",
             "7300", "--decoder-alloc-ports", "7400"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
        assert clash.returncode == 1
        assert f"tcp://127.0.0.1:{zmq_port}" in clash.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_an_open_events_stream_does_not_hold_the_stop():
    """The cockpit's monitor keeps GET /events open for as long as the deployment lives: on
    SIGTERM the proxy ends that stream and exits at once (it used to wait out aiohttp's
    60 s shutdown timeout, and the supervisor killed it with SIGKILL)."""
    import socket

    port, zmq_port = free_port(), free_port()
    dead = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pdtui.proxy", "--port", str(port), "--zmq-port", str(zmq_port),
         "--prefiller", dead, "--decoder", dead, "--decoder-init-ports", "7300",
         "--decoder-alloc-ports", "7400"],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    reader = None
    try:
        deadline = time.monotonic() + 30
        while reader is None:
            try:
                reader = socket.create_connection(("127.0.0.1", port), timeout=10)
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "proxy did not start"
                time.sleep(0.1)
        reader.sendall(b"GET /events HTTP/1.1\r\nHost: proxy\r\n\r\n")
        assert reader.recv(64).startswith(b"HTTP/1.1 200")
        proc.send_signal(signal.SIGTERM)
        # Well inside the supervisor's SIGINT grace (10 s); the old proxy needed 60 s.
        assert proc.wait(8) == 0
        reader.settimeout(10)
        rest = b""
        while chunk := reader.recv(4096):  # the stream was ended, not left hanging
            rest += chunk
    finally:
        if reader is not None:
            reader.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
