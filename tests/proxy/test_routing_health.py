"""Ready means routable (POST /backends/check), degraded prefillers, the access log, and
when the client's stream opens (in-process proxy, real HTTP/ZMQ backends from fakes.py)."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from pdtui.proxy.config import Timeouts
from pdtui.proxy.proxylog import ACCESS_LOGGER
from tests.conftest import free_port
from tests.proxy.fakes import FakeEngine
from tests.proxy.harness import engines, running_proxy, sse_payloads, wait_ready

pytestmark = pytest.mark.timeout(90)


async def _health(s: aiohttp.ClientSession, url: str) -> dict:
    async with s.get(url + "/health") as resp:
        return await resp.json()


async def _wait_state(s, url: str, backend: str, state: str, within: float = 30) -> dict:
    async with asyncio.timeout(within):
        while True:
            body = await _health(s, url)
            for b in body["prefillers"] + body["decoders"]:
                if b["url"] == backend and b["state"] == state:
                    return b
            await asyncio.sleep(0.05)


async def test_check_now_makes_a_backend_routable_without_waiting_for_the_round():
    zmq_port = free_port()
    p1 = FakeEngine("prefiller", zmq_port=zmq_port)
    p2 = FakeEngine("prefiller", zmq_port=zmq_port, healthy=False)  # still starting
    d = FakeEngine("decoder")
    async with engines(p1, p2, d), running_proxy(
            [p1, p2], [d], zmq_port=zmq_port, health_interval_s=3600) as proxy:
        async with aiohttp.ClientSession() as s:
            await _wait_state(s, proxy.url, p2.url, "unhealthy")
            p2.healthy = True  # ready now; the next health round is an hour away
            async with s.post(proxy.url + "/backends/check", params={"url": p2.url}) as resp:
                assert resp.status == 200, await resp.text()
                checked = (await resp.json())["checked"]
            for i in range(6):
                async with s.post(proxy.url + "/v1/completions", json={
                        "prompt": f"spread {i}", "max_tokens": 2}) as resp:
                    assert resp.status == 200
            async with s.post(proxy.url + "/backends/check",
                              params={"url": "http://127.0.0.1:1"}) as resp:
                unknown = resp.status
            p1.healthy = False
            async with s.post(proxy.url + "/backends/check") as resp:  # all of them
                all_status = resp.status
                states = {b["url"]: b["state"] for b in (await resp.json())["checked"]}
    assert checked == [{"url": p2.url, "role": "prefiller", "state": "healthy",
                        "routable": True, "last_error": None}]
    assert len(p1.requests) == 3 and len(p2.requests) == 3
    assert unknown == 400
    assert all_status == 503 and states[p1.url] == "unhealthy" and states[d.url] == "healthy"


async def test_a_prefiller_whose_notifications_time_out_is_degraded_then_readmitted(caplog):
    caplog.set_level(logging.INFO, logger="pdtui.proxy")
    zmq_port = free_port()
    good = FakeEngine("prefiller", zmq_port=zmq_port)
    bad = FakeEngine("prefiller", zmq_port=zmq_port, drop_notif=True)
    d = FakeEngine("decoder")
    async with engines(good, bad, d), running_proxy(
            [good, bad], [d], zmq_port=zmq_port, kv_timeouts_to_degrade=2,
            degraded_probe_s=0.3, timeouts=Timeouts(5, 5, 2, 5)) as proxy:
        async with aiohttp.ClientSession() as s:
            await wait_ready(s, proxy.url)

            async def ask(i: int) -> int:
                async with s.post(proxy.url + "/v1/completions", json={
                        "prompt": f"request {i}", "max_tokens": 3}) as resp:
                    await resp.read()
                    return resp.status

            first = [await ask(i) for i in range(4)]  # round robin: two through `bad`
            degraded = await _wait_state(s, proxy.url, bad.url, "degraded")
            tokenized_before = len(bad.tokenize_calls)
            after = [await ask(10 + i) for i in range(6)]
            while_degraded = [c.get("prompt") for c in bad.tokenize_calls[tokenized_before:]]
            bad.drop_notif = False  # fixed: the next probe gets its notifications
            await _wait_state(s, proxy.url, bad.url, "healthy")
    assert first == [200, 504, 200, 504]
    assert after == [200] * 6
    assert "2 requests in a row got no KV-ready notification" in degraded["last_error"]
    # nothing but the proxy's probe requests reached the degraded prefiller
    assert set(while_degraded) <= {"pdtui kv probe"}
    assert len(good.requests) >= 2 + 6
    logs = caplog.text
    assert f"prefiller {bad.url} degraded" in logs and f"prefiller {bad.url} re-admitted" in logs


async def test_one_access_line_per_request(caplog):
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    zmq_port = free_port()
    p, d = FakeEngine("prefiller", zmq_port=zmq_port), FakeEngine("decoder")
    async with engines(p, d), running_proxy([p], [d], zmq_port=zmq_port) as proxy:
        async with aiohttp.ClientSession() as s:
            await wait_ready(s, proxy.url)
            async with s.post(proxy.url + "/v1/completions", json={
                    "prompt": "hello there", "max_tokens": 3, "stream": True}) as resp:
                await resp.read()
                ok_id = resp.headers["X-Request-Id"]
            async with s.post(proxy.url + "/v1/completions", json={"prompt": 5}) as resp:
                bad_id = resp.headers["X-Request-Id"]
    lines = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER]
    assert len(lines) == 2
    ok, bad = lines
    assert ok.startswith(f"access {ok_id} completions {p.url} -> {d.url} status=200 outcome=ok ")
    for stage in ("tokenize", "prefill", "kv_wait", "decode_ttft", "ttft", "total"):
        assert f" {stage}=" in ok, stage
    assert f"access {bad_id} completions" in bad and "status=400 outcome=client_error" in bad


async def _first_event_while(s, url: str, body: dict) -> tuple[dict, aiohttp.ClientResponse]:
    resp = await s.post(url, json=body)
    assert resp.status == 200
    async with asyncio.timeout(20):
        line = b""
        while not line.startswith(b"data:"):
            line = await resp.content.readline()
    return sse_payloads(line + b"\n")[0], resp


async def test_the_client_stream_opens_when_the_decoder_accepts():
    """P's token reaches the client while the decoder has not sent any event yet."""
    zmq_port = free_port()
    p, d = FakeEngine("prefiller", zmq_port=zmq_port), FakeEngine("decoder")
    d.first_event_gate = asyncio.Event()
    async with engines(p, d), running_proxy([p], [d], zmq_port=zmq_port) as proxy:
        async with aiohttp.ClientSession() as s:
            await wait_ready(s, proxy.url)
            first, resp = await _first_event_while(s, proxy.url + "/v1/completions", {
                "prompt": "early bird", "max_tokens": 4, "stream": True})
            assert not d.first_event_gate.is_set()
            d.first_event_gate.set()
            rest = sse_payloads(await resp.read())
            resp.release()
    assert first["choices"][0]["text"] == " first"
    assert [e["choices"][0]["text"] for e in rest[:-1]] == [" d0", " d1", " d2"]
    assert rest[-1] == "[DONE]"


async def test_first_token_from_prefiller_comes_before_the_kv_wait():
    zmq_port = free_port()
    p, d = FakeEngine("prefiller", zmq_port=zmq_port), FakeEngine("decoder")
    p.notif_gate = asyncio.Event()
    async with engines(p, d), running_proxy([p], [d], zmq_port=zmq_port,
                                            first_token_from_prefiller=True) as proxy:
        async with aiohttp.ClientSession() as s:
            await wait_ready(s, proxy.url)
            first, resp = await _first_event_while(s, proxy.url + "/v1/chat/completions", {
                "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
                "stream": True})
            assert not p.notif_gate.is_set() and not d.requests  # still in kv_wait
            p.notif_gate.set()
            rest = sse_payloads(await resp.read())
            resp.release()
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    texts = [e["choices"][0]["delta"].get("content") for e in rest[:-1] if e.get("choices")]
    assert texts == [" first", " d0", " d1"]
    assert rest[-1] == "[DONE]"


async def test_one_health_timeout_alone_does_not_take_a_healthy_backend_out():
    """The proxy's own loop can miss one deadline under load; the second in a row counts."""
    d = FakeEngine("decoder")
    async with engines(d), aiohttp.ClientSession() as s:
        from pdtui.proxy.backends import Backend
        from pdtui.proxy.health import HealthChecker

        b = Backend("decoder", d.url)
        checker = HealthChecker(s, [b], interval_s=3600, timeout_s=0.3)
        await checker.check(b)
        assert b.state == "healthy"
        d.health_hang_s = 2.0
        await checker.check(b)
        assert b.state == "healthy" and b.health_timeouts == 1
        await checker.check(b)
        assert b.state == "unhealthy" and b.last_error == "GET /health timed out"
        d.health_hang_s = 0.0
        await checker.check(b)
        assert b.state == "healthy" and b.health_timeouts == 0


def test_out_of_descriptors_here_is_not_the_backends_fault():
    import errno

    from pdtui.proxy.health import local_failure

    emfile = aiohttp.ClientOSError(errno.EMFILE, "Too many open files")
    wrapped = aiohttp.ClientPayloadError("send failed")
    wrapped.__cause__ = emfile
    assert local_failure(emfile) and local_failure(wrapped)
    assert not local_failure(aiohttp.ClientOSError(errno.ECONNREFUSED, "Connection refused"))
    assert not local_failure(aiohttp.ServerDisconnectedError())


async def test_a_decoder_slow_to_answer_health_leaves_the_requests_bound_for_it_alone():
    """Two /health timeouts take a decoder out of routing, but a request already waiting
    for its KV to reach that decoder goes on (a huge prompt can keep an engine's loop busy
    that long). A refused or reset connection is what aborts such requests, not slowness."""
    zmq_port = free_port()
    kv_sent = asyncio.Event()
    p = FakeEngine("prefiller", zmq_port=zmq_port, notif_gate=kv_sent)
    d = FakeEngine("decoder")
    async with engines(p, d), running_proxy([p], [d], zmq_port=zmq_port, health_timeout_s=0.2) as proxy:
        async with aiohttp.ClientSession() as s:
            await wait_ready(s, proxy.url)
            request = asyncio.create_task(s.post(proxy.url + "/v1/completions", json={
                "prompt": "x", "max_tokens": 3, "stream": True}))
            async with asyncio.timeout(30):
                while not p.requests:  # prefilled; the proxy now waits for the KV
                    await asyncio.sleep(0.02)
            d.health_hang_s = 30  # the decoder's /health stops answering in time
            down = await _wait_state(s, proxy.url, d.url, "unhealthy")
            assert down["last_error"] == "GET /health timed out"
            d.health_hang_s = 0
            kv_sent.set()
            async with await request as resp:
                body = await resp.read()
                assert resp.status == 200, body
    payloads = sse_payloads(body)
    assert payloads[-1] == "[DONE]"
    assert len(d.requests) == 1
