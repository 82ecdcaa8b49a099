"""Start real simulated engines (subprocesses on free loopback ports) and stop them reliably."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import free_port

ANSI = re.compile(r"\x1b\[[0-9;]*m")
PREFIX = re.compile(r"^\([^)]*pid=\d+\) ")


def clean(line: str) -> str:
    """A log line without ANSI codes and without vLLM's `(Process pid=N) ` prefix."""
    return PREFIX.sub("", ANSI.sub("", line))


@dataclass
class SimProcess:
    port: int
    proc: subprocess.Popen
    log_path: Path
    argv: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def lines(self) -> list[str]:
        return self.log().splitlines()

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"engine exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"engine not healthy after {timeout} s:\n{self.log()[-3000:]}")

    def wait_for_log(self, pattern: str, timeout: float = 30.0) -> re.Match:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines():
                match = regex.search(clean(line))
                if match:
                    return match
            time.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r} within {timeout} s:\n{self.log()[-3000:]}")

    def post(self, path: str, body: dict[str, Any], timeout: float = 20.0) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read().decode()
                status = response.status
        except urllib.error.HTTPError as exc:
            raw = exc.read().decode()
            status = exc.code
        try:
            return status, json.loads(raw)
        except json.JSONDecodeError:
            return status, raw

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        # Its EngineCore outlives a kill of the API server (as vLLM's does): end the group.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self.proc.returncode


# A safety net: an EngineCore orphaned by a test ends after this long (see pdtui/sim/enginecore.py).
ORPHAN_LINGER_S = "60"


def start_sim(
    tmp_path: Path,
    *extra_args: str,
    model: str = "sim/tiny-llama",
    env: dict[str, str] | None = None,
    name: str = "engine",
    port: int | None = None,
) -> SimProcess:
    port = port or free_port()
    argv = [sys.executable, "-m", "pdtui.sim", "serve", model, "--port", str(port), *extra_args]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PDTUI_SIM_", "LMCACHE_"))}
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    full_env.update(
        {
            "PDTUI_SIM_STARTUP_S": "0.3",
            "PDTUI_SIM_PREFILL_US_PER_TOKEN": "0",
            "PDTUI_SIM_DECODE_MS_PER_TOKEN": "0",
            "PYTHONUNBUFFERED": "1",
            "PDTUI_SIM_ORPHAN_LINGER_S": ORPHAN_LINGER_S,
        }
    )
    full_env.update(env or {})
    log_path = tmp_path / f"{name}-{port}.log"
    log_file = open(log_path, "w", encoding="utf-8")
    try:
        proc = subprocess.Popen(
            argv, stdout=log_file, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
        )
    finally:
        log_file.close()
    return SimProcess(port=port, proc=proc, log_path=log_path, argv=argv)
