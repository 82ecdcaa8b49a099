"""Start-up, readiness, shutdown and the demo GPU usage file of a real simulated engine."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from tests.sim.helpers import clean, start_sim

# Milestones an operator (and pdtui's log parser) waits for, in the order vLLM prints them.
MILESTONES = [
    r"^INFO \d\d-\d\d \d\d:\d\d:\d\d \[api_utils\.py:\d+\] non-default args: ",
    r"\[core\.py:\d+\] Initializing a V1 LLM engine \(v0\.26\.0\)",
    r"\[default_loader\.py:\d+\] Loading weights took [\d.]+ seconds",
    r"\[gpu_worker\.py:\d+\] Available KV cache memory: [\d.]+ GiB",
    r"\[kv_cache_utils\.py:\d+\] GPU KV cache size: [\d,]+ tokens",
    r"LMCache INFO: Loading LMCache config file ",
    r"LMCache INFO: Creating LMCacheEngine with config: \{'chunk_size': 256",
    r"\[api_server\.py:\d+\] Starting vLLM server on http://127\.0\.0\.1:\d+",
    r"\[launcher\.py:\d+\] Route: /health, Methods: GET",
    r"^INFO:     Application startup complete\.$",
]


def _connect_refused(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_startup_milestones_refused_until_ready_then_clean_sigterm(tmp_path):
    config = tmp_path / "lmcache.yaml"
    config.write_text("chunk_size: 256\nlocal_cpu: False\n")
    sim = start_sim(tmp_path, "--kv-transfer-config",
                    '{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_both"}',
                    env={"PDTUI_SIM_STARTUP_S": "1.5", "LMCACHE_CONFIG_FILE": str(config)})
    try:
        sim.wait_for_log(r"non-default args")
        assert _connect_refused(sim.port)  # vLLM answers nothing before it is ready
        sim.wait_healthy()
        lines = [clean(line) for line in sim.lines()]
        positions = []
        for pattern in MILESTONES:
            import re

            found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
            assert found, f"missing milestone {pattern!r}"
            positions.append(found[0])
        assert positions == sorted(positions)
        assert sim.stop(signal.SIGTERM) == 0
        tail = [clean(line) for line in sim.lines()[-12:]]
        assert "[shutdown] EngineCore: trigger received signal=SIGTERM" in "\n".join(tail)
        assert tail[-1] == "INFO:     Application shutdown complete."
    finally:
        sim.stop(signal.SIGKILL)


def test_sigint_during_startup_exits_zero(tmp_path):
    sim = start_sim(tmp_path, env={"PDTUI_SIM_STARTUP_S": "30"})
    try:
        sim.wait_for_log(r"non-default args")
        assert sim.stop(signal.SIGINT) == 0
        assert "trigger received signal=SIGINT" in sim.log()
    finally:
        sim.stop(signal.SIGKILL)


def test_gpu_usage_file_follows_engine_and_is_removed(tmp_path):
    gpu_dir = tmp_path / "gpus"
    sim = start_sim(tmp_path, "--gpu-memory-utilization", "0.5", "--served-model-name", "demo-8b",
                    "-tp", "2", model="meta-llama/Llama-3.1-8B-Instruct",
                    env={"PDTUI_SIM_GPU_DIR": str(gpu_dir), "CUDA_VISIBLE_DEVICES": "2,3",
                         "PDTUI_SIM_GPU_TOTAL_BYTES": str(100 * 2**30)})
    try:
        sim.wait_healthy()
        core = engine_core_of(sim)
        path = gpu_dir / f"{core.pid}.json"
        deadline = time.monotonic() + 10
        record = None
        while time.monotonic() < deadline:
            if path.exists():
                record = json.loads(path.read_text())
                if record["memory_bytes"] == 50 * 2**30:
                    break
            time.sleep(0.1)
        assert record is not None, "no GPU usage file"
        assert record["pid"] == core.pid  # the EngineCore holds the memory, as in vLLM
        assert record["name"] == "demo-8b"
        assert record["role"] == "both"
        assert record["port"] == sim.port
        assert record["gpus"] == [2, 3]
        assert record["memory_bytes"] == 50 * 2**30  # gpu-memory-utilization of each GPU, once up
        assert 0 <= record["utilization"] <= 100
        assert abs(record["updated"] - time.time()) < 30
        assert not [p for p in gpu_dir.iterdir() if p.name.endswith(".tmp")]
        # -tp 2: one worker per rank under the EngineCore
        assert wait_until(lambda: len(core.children()) == 2)
        assert sim.stop() == 0
        assert not path.exists()
        assert not core.is_running()
    finally:
        sim.stop(signal.SIGKILL)


def test_engine_core_outlives_kill9_of_the_api_server(tmp_path):
    """As vLLM's: kill -9 of the API server leaves the EngineCore running, holding the GPU."""
    gpu_dir = tmp_path / "gpus"
    sim = start_sim(tmp_path, env={"PDTUI_SIM_GPU_DIR": str(gpu_dir)})
    try:
        sim.wait_healthy()
        core = engine_core_of(sim)
        path = gpu_dir / f"{core.pid}.json"
        assert wait_until(lambda: path.exists() and json.loads(path.read_text())["memory_bytes"] > 0)
        assert core.name().startswith("VLLM::EngineCor")
        sim.proc.kill()
        sim.proc.wait(10)
        killed_at = time.time()

        def updated_since_the_kill() -> bool:
            try:
                return json.loads(path.read_text())["updated"] > killed_at
            except (OSError, ValueError):
                return False  # caught mid-write

        # The orphan keeps its GPU record fresh after its API server is gone.
        assert wait_until(updated_since_the_kill, 30)
        assert core.is_running() and core.status() != psutil.STATUS_ZOMBIE
        assert core.ppid() != sim.proc.pid
        assert json.loads(path.read_text())["memory_bytes"] > 0
    finally:
        sim.stop(signal.SIGKILL)


def engine_core_of(sim):
    assert wait_until(lambda: psutil.Process(sim.proc.pid).children())
    (core,) = psutil.Process(sim.proc.pid).children()
    return core


def wait_until(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def test_port_in_use_fails_fast_like_vllm(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        sim = start_sim(tmp_path, port=port)
        try:
            assert sim.proc.wait(20) == 1
            assert "Address already in use" in sim.log()
        finally:
            sim.stop(signal.SIGKILL)


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--port", "notaport"], {}, "--port: 'notaport' is not an integer"),
        (["--kv-transfer-config", "{bad json"], {}, "--kv-transfer-config: not valid JSON"),
        ([], {"PDTUI_SIM_FAULT": "explode"}, "unknown fault 'explode'"),
        ([], {"LMCACHE_CONFIG_FILE": "/nonexistent/lmcache.yaml"}, "LMCACHE_CONFIG_FILE=/nonexistent/lmcache.yaml"),
    ],
)
def test_bad_configuration_is_named(tmp_path, args, env, needle):
    import os

    full_env = dict(os.environ)
    full_env.update(env)
    result = subprocess.run(
        [sys.executable, "-m", "pdtui.sim", "serve", "m", *args], env=full_env,
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    assert needle in result.stderr


def test_reachable_as_pdtui_sim_engine(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pdtui", "sim-engine", "--help"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert "serve" in result.stdout


def test_busy_engine_shows_running_kv_usage_and_gpu_utilization(tmp_path):
    """While a request decodes: running=1, KV usage > 0, GPU busy; afterwards all back to idle."""
    import threading

    from prometheus_client.parser import text_string_to_metric_families

    gpu_dir = tmp_path / "gpus"
    sim = start_sim(tmp_path, "--max-model-len", "1024",
                    env={"PDTUI_SIM_GPU_DIR": str(gpu_dir), "PDTUI_SIM_DECODE_MS_PER_TOKEN": "15",
                         "PDTUI_SIM_KV_TOKENS": "4096"})

    def gauges() -> dict[str, float]:
        text = sim.get("/metrics")[1]
        return {f.name: f.samples[0].value for f in text_string_to_metric_families(text)
                if f.name in ("vllm:num_requests_running", "vllm:kv_cache_usage_perc")}

    try:
        sim.wait_healthy()
        path = gpu_dir / f"{engine_core_of(sim).pid}.json"
        worker = threading.Thread(
            target=sim.post, args=("/v1/completions", {"prompt": "busy " * 100, "max_tokens": 200}, 60))
        worker.start()
        busy_seen = util_seen = False
        deadline = time.monotonic() + 20
        while worker.is_alive() and time.monotonic() < deadline and not (busy_seen and util_seen):
            g = gauges()
            if g["vllm:num_requests_running"] == 1 and g["vllm:kv_cache_usage_perc"] > 0.05:
                busy_seen = True
            if path.exists() and json.loads(path.read_text())["utilization"] > 0:
                util_seen = True
            time.sleep(0.1)
        worker.join(60)
        assert busy_seen and util_seen
        assert gauges() == {"vllm:num_requests_running": 0.0, "vllm:kv_cache_usage_perc": 0.0}
        deadline = time.monotonic() + 10
        while json.loads(path.read_text())["utilization"] != 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert json.loads(path.read_text())["utilization"] == 0
    finally:
        sim.stop(signal.SIGKILL)


def test_engine_core_lines_carry_the_engine_core_pid(tmp_path):
    """As in vLLM, `(EngineCore pid=N)` is the EngineCore process, `(APIServer pid=M)` the server."""
    sim = start_sim(tmp_path)
    try:
        sim.wait_healthy()
        core = engine_core_of(sim)
        log = sim.log()
        assert f"(EngineCore pid={core.pid}) " in log, log[-2000:]
        assert f"(EngineCore pid={sim.proc.pid}) " not in log
        assert f"(APIServer pid={sim.proc.pid}) " in log
    finally:
        sim.stop(signal.SIGKILL)
