"""Telemetry against the simulated engine (pdtui.sim): a real process on a loopback port,
scraped over HTTP, its log parsed like a real vLLM log."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from pdtui.telemetry.events import LookupHitEvent, MilestoneEvent
from pdtui.telemetry.logparse import LogScanner
from pdtui.telemetry.rootcause import find_root_cause
from pdtui.telemetry.scrape import ScrapeTarget, scrape_once
from tests.conftest import REPO_ROOT, free_port

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(importlib.util.find_spec("pdtui.sim.__main__") is None, reason="pdtui.sim not built yet"),
]

KV_PRODUCER = json.dumps({"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_producer"})


def _start(port: int, log: Path, **env: str) -> subprocess.Popen:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PDTUI_SIM_", "LMCACHE_"))}
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    full_env.update({"PDTUI_SIM_STARTUP_S": "0.3", **env})
    argv = [sys.executable, "-m", "pdtui.sim", "serve", "tiny", "--host", "127.0.0.1", "--port", str(port),
            "--kv-transfer-config", KV_PRODUCER]
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=REPO_ROOT,
                                start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _wait_healthy(port: int, proc: subprocess.Popen, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"sim engine exited with {proc.returncode} before it was healthy")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"sim engine on port {port} not healthy after {deadline_s} s")


async def test_scrape_and_log_of_the_simulated_engine(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "prefiller.log"
    proc = _start(port, log)
    try:
        _wait_healthy(port, proc)
        target = ScrapeTarget("sim", f"http://127.0.0.1:{port}/metrics")
        async with aiohttp.ClientSession() as session:
            before = await scrape_once(session, target, timeout_s=10)
            body = {"model": "tiny", "prompt": "hello world this is a test of the telemetry", "max_tokens": 4}
            async with session.post(f"http://127.0.0.1:{port}/v1/completions", json=body,
                                    timeout=aiohttp.ClientTimeout(total=20)) as resp:
                assert resp.status == 200
                completion = await resp.json()
            after = await scrape_once(session, target, timeout_s=10)
        assert before.ok and after.ok, (before.error, after.error)
        prompt_tokens = completion["usage"]["prompt_tokens"]
        assert after.snapshot.value("prompt_tokens") - before.snapshot.value("prompt_tokens") == prompt_tokens
        assert after.snapshot.value("request_success") - before.snapshot.value("request_success") == 1
        assert after.snapshot.resolve("kv_cache_usage") is not None
        assert after.snapshot.histogram("ttft") is not None
    finally:
        _stop(proc)
    scanner = LogScanner()
    events = [e for line in log.read_text(encoding="utf-8", errors="replace").splitlines() for e in scanner.feed(line)]
    assert scanner.role == "prefiller"
    kinds = [e.kind for e in events if isinstance(e, MilestoneEvent)]
    for kind in ("weights_loaded", "kv_cache_allocated", "api_server_starting", "app_startup_complete"):
        assert kind in kinds
    lookups = [e for e in events if isinstance(e, LookupHitEvent)]
    assert any(e.request_id.startswith(completion["id"]) for e in lookups), lookups
    assert lookups[-1].total_tokens >= prompt_tokens


def test_simulated_oom_start_reduced_to_its_root_cause(tmp_path: Path) -> None:
    log = tmp_path / "decoder.log"
    proc = _start(free_port(), log, PDTUI_SIM_FAULT="oom")
    try:
        assert proc.wait(timeout=60) != 0
    finally:
        _stop(proc)
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    assert "root cause above" in lines[-1]
    cause = find_root_cause(lines)
    assert cause is not None and cause.kind == "cuda_oom"
    assert "CUDA out of memory" in cause.summary
