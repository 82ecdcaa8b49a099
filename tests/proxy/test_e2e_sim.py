"""End to end: the real proxy process in front of real simulated engines (pdtui.sim).

Each deployment is N prefiller + M decoder `python -m pdtui.sim serve` processes with
LMCache YAMLs written here, and `python -m pdtui.proxy` started with the argv the
deployment renderer emits. Everything talks over 127.0.0.1 HTTP and ZMQ.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import REPO_ROOT, free_port
from tests.proxy.harness import sse_payloads

pytestmark = pytest.mark.timeout(90)

MODEL = "sim-model"


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)


@dataclass
class Deployment:
    proxy_url: str
    prefillers: list[str]
    decoders: list[str]
    procs: dict[str, Proc] = field(default_factory=dict)


def _spawn(name: str, argv: list[str], tmp: Path, env: dict[str, str]) -> Proc:
    log = tmp / f"{name}.log"
    with open(log, "wb") as fh:
        popen = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                 env={**os.environ, **env}, start_new_session=True)
    return Proc(name, popen, log)


def _start(tmp: Path, n_p: int, n_d: int, *, p_fault: str = "", kv_timeout: float = 20,
           health_interval: float = 0.3, fault_only: int | None = None,
           proxy_extra: tuple[str, ...] = ()) -> Deployment:
    zmq_port = free_port()
    base_env = {"PDTUI_SIM_STARTUP_S": "0.2", "PDTUI_SIM_PREFILL_US_PER_TOKEN": "0",
                "PDTUI_SIM_DECODE_MS_PER_TOKEN": "1", "PYTHONHASHSEED": "0"}
    procs: dict[str, Proc] = {}
    dep = Deployment("", [], [], procs)
    proxy_argv = [sys.executable, "-m", "pdtui.proxy", "--mode", "lmcache-pd"]
    try:
        for j in range(n_d):
            port, init, alloc = free_port(), free_port(), free_port()
            cfg = tmp / f"decoder{j}.yaml"
            cfg.write_text(
                "chunk_size: 256\nlocal_cpu: False\nmax_local_cpu_size: 0\nenable_pd: True\n"
                'transfer_channel: "nixl"\npd_role: "receiver"\npd_peer_host: "127.0.0.1"\n'
                f"pd_peer_init_port: [{init}]\npd_peer_alloc_port: [{alloc}]\n"
                "pd_buffer_size: 268435456\npd_buffer_device: \"cuda\"\n")
            kv = {"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_consumer",
                  "kv_connector_extra_config": {"discard_partial_chunks": False,
                                                "lmcache_rpc_port": f"consumer{j}",
                                                "skip_last_n_tokens": 1}}
            procs[f"decoder{j}"] = _spawn(f"decoder{j}", [
                sys.executable, "-m", "pdtui.sim", "serve", MODEL, "--port", str(port),
                "--kv-transfer-config", json.dumps(kv)], tmp,
                {**base_env, "LMCACHE_CONFIG_FILE": str(cfg)})
            url = f"http://127.0.0.1:{port}"
            dep.decoders.append(url)
            proxy_argv += ["--decoder", url, "--decoder-init-ports", str(init),
                           "--decoder-alloc-ports", str(alloc)]
        for i in range(n_p):
            port = free_port()
            cfg = tmp / f"prefiller{i}.yaml"
            cfg.write_text(
                "chunk_size: 256\nlocal_cpu: False\nsave_unfull_chunk: true\nenable_pd: True\n"
                'transfer_channel: "nixl"\npd_role: "sender"\npd_proxy_host: "127.0.0.1"\n'
                f"pd_proxy_port: {zmq_port}\npd_buffer_size: 268435456\n"
                'pd_buffer_device: "cuda"\n')
            kv = {"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_producer",
                  "kv_connector_extra_config": {"discard_partial_chunks": False,
                                                "lmcache_rpc_port": f"producer{i}"}}
            env = {**base_env, "LMCACHE_CONFIG_FILE": str(cfg)}
            if p_fault and fault_only in (None, i):
                env["PDTUI_SIM_FAULT"] = p_fault
            procs[f"prefiller{i}"] = _spawn(f"prefiller{i}", [
                sys.executable, "-m", "pdtui.sim", "serve", MODEL, "--port", str(port),
                "--kv-transfer-config", json.dumps(kv)], tmp, env)
            url = f"http://127.0.0.1:{port}"
            dep.prefillers.append(url)
            proxy_argv += ["--prefiller", url]
        proxy_port = free_port()
        proxy_argv += ["--host", "127.0.0.1", "--port", str(proxy_port), "--zmq-host",
                       "127.0.0.1", "--zmq-port", str(zmq_port), "--timeout-kv", str(kv_timeout),
                       "--health-interval", str(health_interval), *proxy_extra]
        procs["proxy"] = _spawn("proxy", proxy_argv, tmp, {})
        dep.proxy_url = f"http://127.0.0.1:{proxy_port}"
        return dep
    except BaseException:
        _stop(dep)
        raise


def _stop(dep: Deployment) -> None:
    for proc in dep.procs.values():
        proc.stop()


def _logs(dep: Deployment) -> str:
    return "\n".join(f"--- {p.name}\n{p.log.read_text(errors='replace')[-2000:]}"
                     for p in dep.procs.values())


async def _wait_ready(s: aiohttp.ClientSession, dep: Deployment, timeout: float = 40) -> dict:
    deadline = time.monotonic() + timeout
    body: object = None
    while time.monotonic() < deadline:
        for proc in dep.procs.values():
            if proc.popen.poll() is not None:
                raise AssertionError(f"{proc.name} exited early\n{_logs(dep)}")
        try:
            async with s.get(dep.proxy_url + "/health") as resp:
                body = await resp.json()
                healthy = [b["state"] for b in body["prefillers"] + body["decoders"]]
                if resp.status == 200 and all(h == "healthy" for h in healthy):
                    return body
        except aiohttp.ClientError as exc:
            body = str(exc)
        await asyncio.sleep(0.2)
    raise AssertionError(f"deployment not ready: {body}\n{_logs(dep)}")


def _metric(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if (line.startswith(name + "{") or line.startswith(name + " ")) and all(
                f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
def deployment_factory(tmp_path):
    started: list[Deployment] = []

    def make(n_p: int, n_d: int, **kw) -> Deployment:
        dep = _start(tmp_path, n_p, n_d, **kw)
        started.append(dep)
        return dep

    yield make
    for dep in started:
        _stop(dep)


async def test_1p1d_stream_and_non_stream_through_real_sims(deployment_factory):
    dep = deployment_factory(1, 1)
    async with aiohttp.ClientSession() as s:
        await _wait_ready(s, dep)
        prompt = "the proxy sends the prompt to the prefiller and then the decoder " * 5
        async with s.post(dep.proxy_url + "/v1/completions", json={
                "model": MODEL, "prompt": prompt, "max_tokens": 6}) as resp:
            assert resp.status == 200, f"{await resp.text()}\n{_logs(dep)}"
            whole = await resp.json()
        async with s.post(dep.proxy_url + "/v1/completions", json={
                "model": MODEL, "prompt": prompt, "max_tokens": 6, "stream": True,
                "stream_options": {"include_usage": True}}) as resp:
            assert resp.status == 200, await resp.text()
            events = sse_payloads(await resp.read())
        async with s.post(dep.proxy_url + "/v1/chat/completions", json={
                "model": MODEL, "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 5, "stream": True}) as resp:
            assert resp.status == 200, await resp.text()
            chat = sse_payloads(await resp.read())
        async with s.get(dep.proxy_url + "/metrics") as resp:
            metrics = await resp.text()
        async with s.get(dep.proxy_url + "/v1/models") as resp:
            assert resp.status == 200
            assert MODEL in json.dumps(await resp.json())
        async with s.get(dep.decoders[0] + "/metrics") as resp:
            decoder_metrics = await resp.text()
    assert whole["usage"]["completion_tokens"] == 6
    assert len(whole["choices"][0]["text"].split()) >= 1
    assert events[-1] == "[DONE]"
    text_events = [e for e in events[:-1] if e.get("choices")]
    assert len(text_events) == 6  # 1 token from P + 5 from D
    # the same prompt, greedy: stream and non-stream say the same thing
    assert "".join(e["choices"][0]["text"] for e in text_events) == whole["choices"][0]["text"]
    assert [e["usage"] for e in events[:-1] if e.get("usage")][0]["completion_tokens"] == 6
    assert chat[-1] == "[DONE]" and chat[0]["object"] == "chat.completion.chunk"
    for stage in ("tokenize", "prefill", "kv_wait", "decode_ttft", "ttft", "total"):
        assert _metric(metrics, "pdtui_proxy_stage_seconds_count", stage=stage) == 3, stage
    assert _metric(metrics, "pdtui_proxy_requests_total", outcome="ok") == 3
    assert _metric(metrics, "pdtui_proxy_kv_notifications_total", kind="matched") == 3
    # the decoder really found the KV the prefiller sent (external prefix-cache hits)
    assert _metric(decoder_metrics, "vllm:external_prefix_cache_hits_total") > 0, decoder_metrics[:2000]


async def test_2p2d_routes_round_robin_and_skips_a_dead_decoder(deployment_factory):
    dep = deployment_factory(2, 2)
    async with aiohttp.ClientSession() as s:
        await _wait_ready(s, dep)

        async def ask(i: int) -> int:
            async with s.post(dep.proxy_url + "/v1/completions", json={
                    "model": MODEL, "prompt": f"request number {i} " * 20, "max_tokens": 4,
                    "stream": i % 2 == 0}) as resp:
                await resp.read()
                return resp.status

        assert [await ask(i) for i in range(8)] == [200] * 8
        async with s.get(dep.proxy_url + "/metrics") as resp:
            metrics = await resp.text()
        for role, urls in (("prefiller", dep.prefillers), ("decoder", dep.decoders)):
            for url in urls:
                assert _metric(metrics, "pdtui_proxy_backend_requests_total", role=role,
                               backend=url, outcome="ok") == 4, (role, url)

        dep.procs["decoder1"].stop(signal.SIGKILL)  # dead, not drained
        statuses = await asyncio.gather(*(ask(100 + i) for i in range(8)))
        assert statuses == [200] * 8, _logs(dep)
        async with s.get(dep.proxy_url + "/health") as resp:
            assert resp.status == 200  # one P and one D are enough
            health = await resp.json()
        async with s.get(dep.proxy_url + "/metrics") as resp:
            metrics = await resp.text()
    states = {d["url"]: d["state"] for d in health["decoders"]}
    assert states == {dep.decoders[0]: "healthy", dep.decoders[1]: "unhealthy"}
    assert _metric(metrics, "pdtui_proxy_backend_requests_total", role="decoder",
                   backend=dep.decoders[0], outcome="ok") == 12


async def test_dropped_notification_times_out_with_504(deployment_factory):
    dep = deployment_factory(1, 1, p_fault="drop_notif", kv_timeout=1.0)
    async with aiohttp.ClientSession() as s:
        await _wait_ready(s, dep)
        started = time.monotonic()
        async with s.post(dep.proxy_url + "/v1/completions", json={
                "model": MODEL, "prompt": "a short prompt", "max_tokens": 4,
                "stream": True}) as resp:
            assert resp.status == 504
            err = (await resp.json())["error"]
        elapsed = time.monotonic() - started
        async with s.get(dep.proxy_url + "/metrics") as resp:
            metrics = await resp.text()
    assert err["stage"] == "kv_wait" and err["backend"] == dep.prefillers[0]
    assert elapsed < 20
    assert _metric(metrics, "pdtui_proxy_requests_total", outcome="timeout") == 1


async def test_after_check_now_the_first_requests_spread_over_both_prefillers(deployment_factory):
    """Ready means routable: once each engine answers its own /health, POST /backends/check
    makes the proxy route to it at once; its own next round is 30 s away here."""
    dep = deployment_factory(2, 1, health_interval=30)
    async with aiohttp.ClientSession() as s:
        deadline = time.monotonic() + 60
        pending = dep.prefillers + dep.decoders
        while pending:  # what a supervisor's readiness probe does, engine by engine
            assert time.monotonic() < deadline, f"engines not up: {pending}\n{_logs(dep)}"
            for url in list(pending):
                try:
                    async with s.get(url + "/health") as resp:
                        if resp.status == 200:
                            pending.remove(url)
                except aiohttp.ClientError:
                    pass
            await asyncio.sleep(0.1)
        while True:
            assert time.monotonic() < deadline, _logs(dep)
            try:
                async with s.post(dep.proxy_url + "/backends/check") as resp:
                    status, body = resp.status, await resp.json()
                    break
            except aiohttp.ClientError:  # the proxy is still starting
                await asyncio.sleep(0.1)
        assert status == 200, body
        for i in range(8):
            async with s.post(dep.proxy_url + "/v1/completions", json={
                    "model": MODEL, "prompt": f"first requests {i} " * 10,
                    "max_tokens": 3}) as resp:
                assert resp.status == 200, f"{await resp.text()}\n{_logs(dep)}"
        async with s.get(dep.proxy_url + "/metrics") as resp:
            metrics = await resp.text()
    for url in dep.prefillers:
        assert _metric(metrics, "pdtui_proxy_backend_requests_total", role="prefiller",
                       backend=url, outcome="ok") == 4, (url, metrics)


async def test_a_prefiller_dropping_notifications_is_degraded_and_skipped(deployment_factory):
    """Issue 16: a prefiller whose KV-ready notifications never come stops getting traffic."""
    dep = deployment_factory(2, 1, p_fault="drop_notif", fault_only=1, kv_timeout=1.0,
                             proxy_extra=("--kv-timeouts-to-degrade", "2",
                                          "--degraded-probe-interval", "0.5"))
    async with aiohttp.ClientSession() as s:
        await _wait_ready(s, dep)

        async def ask(i: int) -> int:
            async with s.post(dep.proxy_url + "/v1/completions", json={
                    "model": MODEL, "prompt": f"notify me {i} " * 8, "max_tokens": 3}) as resp:
                await resp.read()
                return resp.status

        first = [await ask(i) for i in range(4)]  # round robin: 2 through the faulty one
        async with s.get(dep.proxy_url + "/health") as resp:
            health = await resp.json()
        after = [await ask(10 + i) for i in range(6)]
        async with s.get(dep.proxy_url + "/metrics") as resp:
            metrics = await resp.text()
    states = {p["url"]: p for p in health["prefillers"]}
    assert first == [200, 504, 200, 504], _logs(dep)
    assert states[dep.prefillers[1]]["state"] == "degraded", health
    assert "KV-ready notification" in states[dep.prefillers[1]]["last_error"]
    assert after == [200] * 6, _logs(dep)
    assert _metric(metrics, "pdtui_proxy_backend_requests_total", role="prefiller",
                   backend=dep.prefillers[0], outcome="ok") == 2 + 6
    log = dep.procs["proxy"].log.read_text()
    assert f"prefiller {dep.prefillers[1]} degraded" in log
    assert "access " in log and " status=504 outcome=timeout " in log
