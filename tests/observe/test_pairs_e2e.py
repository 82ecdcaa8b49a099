"""Per-pair numbers from the real proxy's /events in front of 2 prefillers + 2 decoders
(simulated engines), read by the background `ProxyEventsReader`, and shown by the KV view.

The proxy's round-robin advances its prefiller and decoder pickers together, so with all
four healthy only P0→D0 and P1→D1 are used; pausing one backend (SIGSTOP until the proxy's
health check marks it down) routes the other pairs: D1 paused gives P1→D0, P1 paused
gives P0→D1.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import time

import aiohttp
import pytest
from rich.console import Console
from textual.app import App

from pdtui.loadgen.client import stream_completion
from pdtui.telemetry.events_reader import ProxyEventsReader
from pdtui.telemetry.pairs import PairStats
from pdtui.telemetry.monitor import DeploymentMonitor
from pdtui.ui.observe import ObservedInstance, ObserveScreen
from pdtui.ui.observe.kvview import KvTransferView
from tests.observe.test_logpane import wait_for
from tests.proxy.test_e2e_sim import _start, _stop, _wait_ready

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def deployment(tmp_path):
    dep = _start(tmp_path, 2, 2)
    try:
        yield dep
    finally:
        for proc in dep.procs.values():  # a paused process cannot handle SIGTERM
            try:
                os.killpg(proc.popen.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        _stop(dep)


async def _until_state(s, dep, url: str, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with s.get(dep.proxy_url + "/health") as resp:
            body = await resp.json()
        if {b["url"]: b["state"] for b in body["prefillers"] + body["decoders"]}.get(url) == state:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{url} never became {state}: {body}")


async def _requests(s, dep, n: int) -> None:
    for _ in range(n):
        result = await stream_completion(s, dep.proxy_url, prompt="hello " * 30, max_tokens=3)
        assert result.ok, result.error


async def _paused(s, dep, name: str, url: str, n: int) -> None:
    pid = dep.procs[name].popen.pid
    os.killpg(pid, signal.SIGSTOP)
    try:
        await _until_state(s, dep, url, "unhealthy")
        await _requests(s, dep, n)
    finally:
        os.killpg(pid, signal.SIGCONT)
    await _until_state(s, dep, url, "healthy")


async def test_four_pairs_through_the_real_proxy(deployment):
    dep = deployment
    stats = PairStats()
    # Started before the proxy answers: the reader retries with backoff until it connects.
    reader = ProxyEventsReader(dep.proxy_url, on_line=stats.feed_line, backoff_s=0.2, max_backoff_s=1.0)
    reader.start()
    try:
        async with aiohttp.ClientSession() as s:
            await _wait_ready(s, dep)
            await _requests(s, dep, 4)
            await _paused(s, dep, "decoder1", dep.decoders[1], 2)
            await _paused(s, dep, "prefiller1", dep.prefillers[1], 2)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sum(r.requests for r in stats.pairs()) < 8:
            await asyncio.sleep(0.1)
        rows = {(r.prefiller, r.decoder): r for r in stats.pairs()}
        p0, p1 = dep.prefillers
        d0, d1 = dep.decoders
        assert set(rows) == {(p0, d0), (p1, d1), (p1, d0), (p0, d1)}, rows
        assert sum(r.requests for r in rows.values()) == 8
        assert all(r.errors == 0 and r.kv_wait_p50_ms is not None and r.prefill_p50_ms is not None
                   for r in rows.values())
        assert reader.connected and reader.connects >= 1 and stats.bad_lines == 0
    finally:
        reader.stop()
    assert not reader.connected


async def test_kv_view_in_the_observe_screen_names_the_pairs(deployment, tmp_path):
    dep = deployment
    async with aiohttp.ClientSession() as s:
        await _wait_ready(s, dep)
        await _requests(s, dep, 2)
    instances = [ObservedInstance("proxy", "proxy", str(dep.procs["proxy"].log), dep.proxy_url + "/metrics")]
    for role, urls in (("prefiller", dep.prefillers), ("decoder", dep.decoders)):
        for k, url in enumerate(urls):
            instances.append(ObservedInstance(f"{role}{k}", role, str(dep.procs[f"{role}{k}"].log), url + "/metrics"))
    monitor = DeploymentMonitor(instances, dep.proxy_url, run_dir=str(tmp_path), scrape=False).start()
    screen = ObserveScreen(monitor)
    app = App()
    async with app.run_test(size=(160, 60)) as pilot:
        await app.push_screen(screen)
        screen.query_one("TabbedContent").active = "kv"
        await wait_for(pilot, lambda: len(screen.pair_stats.pairs()) == 2, timeout=20)
        view = screen.query_one(KvTransferView)
        view.refresh_view()
        await pilot.pause()
        console = Console(width=160, record=True, file=io.StringIO())
        console.print(view.shown)
        text = console.export_text()
        assert "prefiller0 → decoder0" in text and "prefiller1 → decoder1" in text
        assert "est. GB/s" in text
    # Leaving the screen stops nothing of the deployment's: the reader goes on.
    assert monitor.running
    await asyncio.to_thread(monitor.stop)
    assert not monitor.running
