"""What one client may take from the proxy: header/body/idle timeouts, the connection cap,
the body limit, JSON nesting, and the rate-limited log (in-process proxy, real sockets)."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest

from pdtui.proxy.config import ClientLimits, Timeouts
from pdtui.proxy.proxylog import RateLimitFilter
from tests.conftest import free_port
from tests.proxy.fakes import FakeEngine
from tests.proxy.harness import engines, running_proxy, wait_ready

pytestmark = pytest.mark.timeout(120)

FAST = ClientLimits(header_timeout_s=0.5, body_timeout_s=0.5, idle_timeout_s=1.0,
                    max_connections=10_000, max_body_bytes=64 * 1024 * 1024)


def _pair():
    zmq_port = free_port()
    return FakeEngine("prefiller", zmq_port=zmq_port), FakeEngine("decoder"), zmq_port


async def _closed_by_peer(reader: asyncio.StreamReader, within: float) -> bytes:
    """Everything the server sent until it closed the connection (fails if it never does)."""
    data = b""
    async with asyncio.timeout(within):
        try:
            while chunk := await reader.read(65536):
                data += chunk
        except ConnectionResetError:
            # Closed with bytes of ours still unread there (a trickler's last header byte
            # crossed the close): the kernel answers with a reset, a close all the same.
            pass
    return data


async def test_slow_loris_and_idle_connections_are_closed():
    p, d, zmq_port = _pair()
    async with engines(p, d), running_proxy([p], [d], zmq_port=zmq_port, client=FAST) as proxy:
        port = proxy.config.port
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(60)]
        loris = conns[:50]  # the other 10 send nothing at all

        async def trickle(writer: asyncio.StreamWriter) -> None:
            writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
            try:
                for _ in range(200):  # one header byte at a time, never the blank line
                    await asyncio.sleep(0.1)
                    writer.write(b"X")
                    await writer.drain()
            except (ConnectionError, OSError):
                pass  # closed by the proxy: what this test wants

        tricklers = [asyncio.create_task(trickle(w)) for _, w in loris]
        try:
            # every one is closed, long before the 20 s the trickling would last
            for reader, _ in conns:
                await _closed_by_peer(reader, within=15)
        finally:
            for t in tricklers:
                t.cancel()
            for _, w in conns:
                w.close()
        async with aiohttp.ClientSession() as s:
            body = await wait_ready(s, proxy.url)
    assert body["clients"]["closed_header_timeout"] >= 50
    assert body["clients"]["closed_idle_timeout"] >= 10


async def test_body_that_never_arrives_gets_408_and_the_body_limit_413():
    p, d, zmq_port = _pair()
    limits = ClientLimits(header_timeout_s=5, body_timeout_s=0.5, idle_timeout_s=5,
                          max_body_bytes=1000)
    async with engines(p, d), running_proxy([p], [d], zmq_port=zmq_port, client=limits) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.config.port)
        writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 500\r\n\r\n{\"prompt\": ")
        await writer.drain()
        async with asyncio.timeout(15):
            head = await reader.readuntil(b"\r\n\r\n")
        writer.close()
        assert head.startswith(b"HTTP/1.1 408"), head
        async with aiohttp.ClientSession() as s:
            await wait_ready(s, proxy.url)
            async with s.post(proxy.url + "/v1/completions",
                              json={"prompt": "x" * 2000, "max_tokens": 2}) as resp:
                assert resp.status == 413
                err = (await resp.json())["error"]
    assert "--max-body-bytes" in err["message"] and "1000" in err["message"]


@pytest.mark.parametrize("doc", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1"
                                 + b"}" * 100_000, b'{"prompt": ' + b"[" * 50_000],
                         ids=["array", "object", "unterminated"])
async def test_deeply_nested_json_is_a_400(doc):
    p, d, zmq_port = _pair()
    async with engines(p, d), running_proxy([p], [d], zmq_port=zmq_port) as proxy:
        async with aiohttp.ClientSession() as s:
            async with s.post(proxy.url + "/v1/completions", data=doc,
                              headers={"Content-Type": "application/json"}) as resp:
                assert resp.status == 400, await resp.text()
                err = (await resp.json())["error"]
    assert err["type"] == "invalid_request_error"


async def test_connection_cap_evicts_idle_then_answers_503_when_all_are_busy():
    p, d, zmq_port = _pair()
    limits = ClientLimits(header_timeout_s=30, body_timeout_s=30, idle_timeout_s=30,
                          max_connections=6)
    gate = asyncio.Event()
    d.first_event_gate = gate
    async with engines(p, d), running_proxy([p], [d], zmq_port=zmq_port, client=limits,
                                            timeouts=Timeouts(5, 5, 5, 30)) as proxy:
        url = proxy.url
        idle = [await asyncio.open_connection("127.0.0.1", proxy.config.port) for _ in range(6)]
        # full of idle connections: a new client still gets served, an idle one makes room
        conn = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=conn) as s:
            await wait_ready(s, url)
            # the proxy closed the longest-idle one to let this client in
            reads = [asyncio.create_task(reader.read(1)) for reader, _ in idle]
            done, _ = await asyncio.wait(reads, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            for t in reads:
                t.cancel()
            assert reads[0] in done and all(t.result() == b"" for t in done)
            for _, w in idle:
                w.close()

            # now six requests held mid-stream by the decoder
            async def held(i: int) -> int:
                async with s.post(url + "/v1/completions", json={
                        "prompt": f"held {i}", "max_tokens": 3, "stream": True}) as resp:
                    await resp.read()
                    return resp.status

            busy = [asyncio.create_task(held(i)) for i in range(6)]
            async with asyncio.timeout(20):
                while len(d.requests) < 6:
                    await asyncio.sleep(0.05)
            async with s.get(url + "/health") as resp:
                status = resp.status
                err = (await resp.json())["error"]
            gate.set()
            assert await asyncio.gather(*busy) == [200] * 6
    assert status == 503
    assert "--max-connections" in err["message"]


def test_rate_limit_filter_holds_back_repeats_and_says_how_many():
    now = [0.0]
    limiter = RateLimitFilter(per_window=3, window_s=10, clock=lambda: now[0])
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("pdtui.test.ratelimit")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = Keep()
    handler.addFilter(limiter)
    logger.addHandler(handler)
    try:
        for _ in range(10_000):
            logger.error("accept failed: %s", "[Errno 24] Too many open files")
        logger.info("access line %d", 1)  # INFO is never limited
        logger.info("access line %d", 2)
        now[0] = 11.0
        logger.error("accept failed: %s", "[Errno 24] Too many open files")
    finally:
        logger.removeHandler(handler)
    assert len(records) == 3 + 1 + 2 + 1
    assert "held back" in records[3]
    assert records[-1].endswith("[9996 more like this held back in the last 10 s]")
    assert limiter.suppressed_total == 9996
    assert json.dumps(records)  # plain strings
