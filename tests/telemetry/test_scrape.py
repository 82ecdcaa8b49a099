"""The scraper against real HTTP servers on 127.0.0.1: the recorded vLLM body, a dead port,
a slow endpoint, an error status and a junk body."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from pdtui.telemetry.scrape import ScrapeResult, Scraper, ScrapeTarget, scrape_once, targets_for_instance
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(60)


class _Server:
    """A real aiohttp server with a few /metrics flavours; counts overlapping requests."""

    def __init__(self, body: str) -> None:
        self.body = body
        self.slow_in_flight = 0
        self.slow_max_in_flight = 0
        self.slow_requests = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.body, content_type="text/plain")

    async def slow(self, request: web.Request) -> web.Response:
        self.slow_requests += 1
        self.slow_in_flight += 1
        self.slow_max_in_flight = max(self.slow_max_in_flight, self.slow_in_flight)
        try:
            await asyncio.sleep(30)
            return web.Response(text=self.body)
        finally:
            self.slow_in_flight -= 1

    async def broken(self, request: web.Request) -> web.Response:
        return web.Response(status=500, text="Internal Server Error")

    async def junk(self, request: web.Request) -> web.Response:
        return web.Response(text="<html><body>not metrics</body></html>\n")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/slow/metrics", self.slow)
        app.router.add_get("/broken/metrics", self.broken)
        app.router.add_get("/junk/metrics", self.junk)
        # handler_cancellation: a scrape cut by its timeout ends its handler here too, so
        # slow_in_flight counts the scraper's overlapping requests, not handlers still
        # sleeping for clients long gone (a loaded machine takes > 1 s to see 5 good scrapes).
        self.runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def url(self, path: str = "/metrics") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def server(shared_fixtures: Path):
    srv = _Server((shared_fixtures / "real-vllm/lmcache-pd/metrics_decoder.txt").read_text(encoding="utf-8"))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def test_scrape_once_of_the_real_body(server: _Server) -> None:
    async with aiohttp.ClientSession() as session:
        result = await scrape_once(session, ScrapeTarget("d0", server.url()), timeout_s=10)
    assert result.ok and result.error is None and result.status == 200
    assert result.snapshot.value("external_prefix_cache_hits") == 4076
    assert "vllm:kv_cache_usage_perc" in result.snapshot.names("vllm:")


async def test_errors_are_reported_not_raised(server: _Server) -> None:
    dead = f"http://127.0.0.1:{free_port()}/metrics"
    async with aiohttp.ClientSession() as session:
        refused = await scrape_once(session, ScrapeTarget("dead", dead), timeout_s=5)
        broken = await scrape_once(session, ScrapeTarget("b", server.url("/broken/metrics")), timeout_s=5)
        junk = await scrape_once(session, ScrapeTarget("j", server.url("/junk/metrics")), timeout_s=5)
        slow = await scrape_once(session, ScrapeTarget("s", server.url("/slow/metrics")), timeout_s=0.3)
    assert not refused.ok and refused.error.startswith("cannot connect")
    assert not broken.ok and broken.error == "HTTP 500" and broken.status == 500
    assert not junk.ok and junk.error.startswith("unparsable body")
    assert not slow.ok and slow.error == "timed out after 0.3 s"


async def test_slow_and_dead_endpoints_do_not_stall_the_others(server: _Server) -> None:
    results: list[ScrapeResult] = []
    targets = [
        ScrapeTarget("good", server.url()),
        ScrapeTarget("slow", server.url("/slow/metrics")),
        ScrapeTarget("dead", f"http://127.0.0.1:{free_port()}/metrics"),
    ]
    scraper = Scraper(targets, interval_s=0.2, timeout_s=1.0, on_result=results.append)
    await scraper.start()
    try:
        # Wait until the good endpoint has been scraped several times; the slow one
        # hangs for 30 s per request and is cut at 1 s each time.
        for _ in range(200):
            if sum(1 for r in results if r.target.name == "good") >= 5:
                break
            await asyncio.sleep(0.05)
    finally:
        await scraper.stop()
    good = [r for r in results if r.target.name == "good"]
    assert len(good) >= 5 and all(r.ok for r in good)
    dead = [r for r in results if r.target.name == "dead"]
    assert dead and all(r.error.startswith("cannot connect") for r in dead)
    # Never overlapping itself: at most one request to the slow endpoint at any time.
    assert server.slow_max_in_flight == 1
    assert scraper.latest("good").ok and not scraper.running


async def test_async_callback_and_dynamic_targets(server: _Server) -> None:
    seen: list[str] = []

    async def on_result(result: ScrapeResult) -> None:
        seen.append(result.target.name)
        if result.target.name == "boom":
            raise RuntimeError("consumer bug")  # must not kill the poll loop

    async with Scraper([ScrapeTarget("boom", server.url())], interval_s=0.1, on_result=on_result) as scraper:
        await scraper.add_target(ScrapeTarget("late", server.url()))
        with pytest.raises(ValueError, match="duplicate"):
            await scraper.add_target(ScrapeTarget("late", server.url()))
        for _ in range(200):
            if seen.count("boom") >= 3 and "late" in seen:
                break
            await asyncio.sleep(0.05)
        await scraper.remove_target("late")
        assert [t.name for t in scraper.targets] == ["boom"]
    assert seen.count("boom") >= 3 and "late" in seen


def test_targets_for_instance_and_bad_settings() -> None:
    targets = targets_for_instance("prefill-0", "127.0.0.1", 7100, lmcache_internal_port=6999)
    assert [(t.name, t.url, t.kind, t.instance) for t in targets] == [
        ("prefill-0", "http://127.0.0.1:7100/metrics", "vllm", "prefill-0"),
        ("prefill-0/lmcache", "http://127.0.0.1:6999/metrics", "lmcache_internal", "prefill-0"),
    ]
    with pytest.raises(ValueError, match="interval_s"):
        Scraper(interval_s=0)


async def test_large_body_is_read_to_the_end(shared_fixtures: Path) -> None:
    # Several network chunks: a reader that stops at the first chunk would cut a line.
    real = (shared_fixtures / "real-vllm/lmcache-pd/metrics_decoder.txt").read_text(encoding="utf-8")
    engine0 = [line for line in real.splitlines() if line.startswith("vllm:") and 'engine="0"' in line]
    lines = real.splitlines()
    for engine in range(1, 12):
        lines.extend(line.replace('engine="0"', f'engine="{engine}"') for line in engine0)
    srv = _Server("\n".join(lines) + "\n")
    await srv.start()
    try:
        async with aiohttp.ClientSession() as session:
            result = await scrape_once(session, ScrapeTarget("big", srv.url()), timeout_s=10)
    finally:
        await srv.stop()
    assert len(srv.body) > 300_000
    assert result.ok, result.error
    assert result.snapshot.value("external_prefix_cache_hits") == 4076 * 12
