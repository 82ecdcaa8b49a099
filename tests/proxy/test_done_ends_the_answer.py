"""A streamed answer ends at the decoder's `data: [DONE]`, not when the decoder closes.

On the H200 (tests/fixtures/real-run/nixl/) vLLM's decoder kept its stream open a moment
after [DONE]; the proxy waited for that, the client hung up first, and 2 of 4 streamed
requests were counted `cancelled` although their clients had the whole answer. Here the
fake decoder keeps its stream open long after [DONE] and the clients behave like that one.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from pdtui.proxy.config import Timeouts
from tests.conftest import free_port
from tests.proxy.fakes import FakeEngine
from tests.proxy.harness import engines, running_proxy, sse_payloads, wait_ready

pytestmark = pytest.mark.timeout(60)

LINGER_S = 30.0  # the decoder's stream stays open this long after [DONE]
# Far below LINGER_S (and the decode timeout): an answer that waited for the decoder to
# close could not arrive within it, one that ends at [DONE] arrives at once.
ANSWER_WITHIN_S = 15.0
TIMEOUTS = Timeouts(tokenize_s=5, prefill_s=5, kv_s=5, decode_s=60)


def _pair(mode: str) -> tuple[FakeEngine, FakeEngine, dict]:
    if mode == "nixl":
        p, d, extra = FakeEngine("nixl-prefiller"), FakeEngine("nixl-decoder"), {}
    else:
        zmq_port = free_port()
        p, d = FakeEngine("prefiller", zmq_port=zmq_port), FakeEngine("decoder")
        extra = {"zmq_port": zmq_port}
    d.linger_after_done_s = LINGER_S
    return p, d, extra


async def _answer(s: aiohttp.ClientSession, url: str, body: dict) -> bytes:
    """The whole answer, from sending the request to its last byte, within ANSWER_WITHIN_S
    (a non-streamed answer's status line only comes with its body)."""
    async def post() -> bytes:
        async with s.post(url, json=body) as resp:
            raw = await resp.read()
            assert resp.status == 200, raw
            return raw
    return await asyncio.wait_for(post(), ANSWER_WITHIN_S)


async def _outcomes(s: aiohttp.ClientSession, url: str, expected_total: int) -> dict[str, float]:
    """pdtui_proxy_requests_total by outcome, once `expected_total` requests are counted
    (the handler records its outcome as it ends, which may be just after the client)."""
    for _ in range(500):
        async with s.get(url + "/metrics") as resp:
            text = await resp.text()
        counts: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("pdtui_proxy_requests_total{"):
                outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
                counts[outcome] = counts.get(outcome, 0) + float(line.rsplit(" ", 1)[1])
        if sum(counts.values()) >= expected_total:
            return counts
        await asyncio.sleep(0.02)
    raise AssertionError(f"the proxy never counted {expected_total} requests: {counts}")


async def _request_ends(s: aiohttp.ClientSession, url: str) -> list[dict]:
    """The `request` end events in the proxy's /events history."""
    async with s.get(url + "/events") as resp:
        out = []
        while True:
            try:
                line = await asyncio.wait_for(resp.content.readline(), 1.0)
            except asyncio.TimeoutError:
                return out  # the history is replayed at once; silence means it is all in
            event = json.loads(line)
            if event.get("stage") == "request" and event["state"] != "start":
                out.append(event)


@pytest.mark.parametrize("mode", ["nixl", "lmcache-pd"])
@pytest.mark.parametrize("route,body", [
    ("/v1/completions", {"prompt": "a b c", "max_tokens": 4, "stream": True}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
                              "stream": True}),
], ids=["completions", "chat"])
async def test_the_client_response_ends_at_done(mode, route, body):
    p, d, extra = _pair(mode)
    async with engines(p, d), running_proxy([p], [d], mode=mode, timeouts=TIMEOUTS,
                                            **extra) as proxy:
        async with aiohttp.ClientSession() as s:
            await wait_ready(s, proxy.url)
            events = sse_payloads(await _answer(s, proxy.url + route, body))
            assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
            assert all(isinstance(e, dict) and "error" not in e for e in events[:-1])
            assert await _outcomes(s, proxy.url, 1) == {"ok": 1}


async def test_a_non_streamed_lmcache_answer_does_not_wait_for_the_decoder_to_close():
    p, d, extra = _pair("lmcache-pd")
    async with engines(p, d), running_proxy([p], [d], timeouts=TIMEOUTS, **extra) as proxy:
        async with aiohttp.ClientSession() as s:
            await wait_ready(s, proxy.url)
            whole = json.loads(await _answer(s, proxy.url + "/v1/completions", {
                "prompt": "a b c", "max_tokens": 4, "stream": False}))
            assert whole["choices"][0]["text"] == " first d0 d1 d2"
            assert await _outcomes(s, proxy.url, 1) == {"ok": 1}


@pytest.mark.parametrize("mode", ["nixl", "lmcache-pd"])
async def test_a_client_that_hangs_up_right_after_done_counts_ok(mode):
    """The H200 client: read up to [DONE], then close the connection at once."""
    p, d, extra = _pair(mode)
    async with engines(p, d), running_proxy([p], [d], mode=mode, timeouts=TIMEOUTS,
                                            **extra) as proxy:
        async with aiohttp.ClientSession() as s:
            await wait_ready(s, proxy.url)
            for route, body in [
                ("/v1/completions", {"prompt": "a b c", "max_tokens": 4, "stream": True}),
                ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                          "max_tokens": 4, "stream": True}),
            ]:
                resp = await s.post(proxy.url + route, json=body)
                try:
                    assert resp.status == 200, await resp.text()
                    while True:
                        line = await asyncio.wait_for(resp.content.readline(), ANSWER_WITHIN_S)
                        assert line, "the stream ended without [DONE]"
                        if line.strip() == b"data: [DONE]":
                            break
                finally:
                    resp.close()  # hang up without reading the end of the response
            assert await _outcomes(s, proxy.url, 2) == {"ok": 2}
            ends = await _request_ends(s, proxy.url)
    assert [(e["state"], e["detail"]["outcome"]) for e in ends] == [("end", "ok")] * 2
