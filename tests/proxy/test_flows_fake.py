"""The proxy end to end against real in-test HTTP/ZMQ backends (see fakes.py)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from pdtui.proxy.config import Timeouts
from pdtui.proxy.protocol import encode_proxy_notif
from tests.conftest import free_port
from tests.proxy.fakes import FakeEngine, fake_tokenize
from tests.proxy.harness import engines, running_proxy, sse_payloads, wait_ready

pytestmark = pytest.mark.timeout(60)


def _metric(text: str, name: str, **labels) -> float:
    total = 0.0
    found = False
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    assert found, f"{name} {labels} not in metrics"
    return total


async def test_completions_stream_lmcache_protocol():
    zmq_port = free_port()
    p = FakeEngine("prefiller", zmq_port=zmq_port)
    d = FakeEngine("decoder")
    async with engines(p, d), running_proxy([p], [d], zmq_port=zmq_port, tp=2) as proxy:
        async with aiohttp.ClientSession() as s:
            await wait_ready(s, proxy.url)
            async with s.post(proxy.url + "/v1/completions", json={
                "model": "fake-model", "prompt": "hello proxy world", "max_tokens": 4,
                "stream": True, "stream_options": {"include_usage": True},
            }) as resp:
                assert resp.status == 200, await resp.text()
                assert resp.headers["Content-Type"].startswith("text/event-stream")
                raw = await resp.read()
    events = sse_payloads(raw)
    assert events[-1] == "[DONE]"
    texts = [e["choices"][0]["text"] for e in events[:-1] if e.get("choices")]
    assert texts == [" first", " d0", " d1", " d2"]
    usage = [e["usage"] for e in events[:-1] if e.get("usage")]
    # 3 prompt tokens; 1 from the prefiller + 3 from the decoder
    assert usage == [{"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}]

    tokens = fake_tokenize("hello proxy world")
    assert p.tokenize_calls == [{"prompt": "hello proxy world", "model": "fake-model"}]
    (pre,) = p.requests
    assert pre["prompt"] == tokens and pre["max_tokens"] == 1 and pre["stream"] is False
    assert "stream_options" not in pre
    spec = pre["kv_transfer_params"]["disagg_spec"]
    assert pre["kv_transfer_params"]["ret_first_tok"] is True
    assert spec["receiver_host"] == "127.0.0.1"
    assert spec["receiver_init_port"] == [7300, 7301]
    assert spec["receiver_alloc_port"] == [7400, 7401]
    (dec,) = d.requests
    assert dec["prompt"] == tokens + [500 + len(tokens)]
    assert dec["max_tokens"] == 3 and dec["stream"] is True
    assert "kv_transfer_params" not in dec
    # one X-Request-Id, equal to the disagg_spec req_id, for both hops
    assert p.headers[0]["X-Request-Id"] == spec["req_id"] == d.headers[0]["X-Request-Id"]


async def test_completions_non_stream_is_one_json_body():
    zmq_port = free_port()
    p = FakeEngine("prefiller", zmq_port=zmq_port)
    d = FakeEngine("decoder")
    async with engines(p, d), running_proxy([p], [d], zmq_port=zmq_port) as proxy:
        async with aiohttp.ClientSession() as s:
            async with s.post(proxy.url + "/v1/completions", json={
                "prompt": "a b c d e", "max_tokens": 3, "stream": False}) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("application/json")
                body = await resp.json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == " first d0 d1"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


async def test_chat_stream_and_non_stream():
    zmq_port = free_port()
    p = FakeEngine("prefiller", zmq_port=zmq_port)
    d = FakeEngine("decoder")
    messages = [{"role": "user", "content": "hi there"}]
    async with engines(p, d), running_proxy([p], [d], zmq_port=zmq_port) as proxy:
        async with aiohttp.ClientSession() as s:
            async with s.post(proxy.url + "/v1/chat/completions", json={
                "model": "fake-model", "messages": messages, "max_completion_tokens": 3,
                "stream": True, "logprobs": True, "add_generation_prompt": True}) as resp:
                assert resp.status == 200
                events = sse_payloads(await resp.read())
            async with s.post(proxy.url + "/v1/chat/completions", json={
                "messages": messages, "max_tokens": 2}) as resp:
                assert resp.status == 200
                whole = await resp.json()
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert content == " first d0 d1"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert not any("usage" in c and c["usage"] for c in chunks)  # not asked for
    # chat was tokenized from its messages; P and D were spoken to as completions
    assert p.tokenize_calls[0]["messages"] == messages
    assert p.tokenize_calls[0]["add_generation_prompt"] is True
    for sent in (p.requests[0], d.requests[0]):
        assert "messages" not in sent and "logprobs" not in sent
        assert "max_completion_tokens" not in sent
    assert d.requests[0]["max_tokens"] == 2
    assert whole["object"] == "chat.completion"
    assert whole["choices"][0]["message"] == {"role": "assistant", "content": " first d0"}
    assert whole["usage"]["completion_tokens"] == 2


async def test_dropped_notification_is_a_504_naming_the_stage_not_a_hang():
    zmq_port = free_port()
    p = FakeEngine("prefiller", zmq_port=zmq_port, drop_notif=True)
    d = FakeEngine("decoder")
    timeouts = Timeouts(tokenize_s=5, prefill_s=5, kv_s=0.5, decode_s=5)
    async with engines(p, d), running_proxy([p], [d], zmq_port=zmq_port, timeouts=timeouts) as proxy:
        async with aiohttp.ClientSession() as s:
            for stream in (True, False):
                async with s.post(proxy.url + "/v1/completions", json={
                        "prompt": "x y", "max_tokens": 4, "stream": stream}) as resp:
                    assert resp.status == 504
                    err = (await resp.json())["error"]
                    assert err["stage"] == "kv_wait" and err["backend"] == p.url
                    assert err["type"] == "timeout"
                    assert "0 of 1" in err["message"]
            async with s.get(proxy.url + "/metrics") as resp:
                metrics = await resp.text()
            async with s.get(proxy.url + "/health") as resp:
                health = await resp.json()
    assert d.requests == []  # never decoded without the KV
    assert _metric(metrics, "pdtui_proxy_requests_total", route="completions", outcome="timeout") == 2
    assert health["kv_waiting"] == 0  # no waiter left behind


async def test_partial_notifications_then_late_ones_are_dropped():
    zmq_port = free_port()
    p = FakeEngine("prefiller", zmq_port=zmq_port, tp_notifs=1)  # 1 of 2 TP ranks
    d = FakeEngine("decoder")
    timeouts = Timeouts(tokenize_s=5, prefill_s=5, kv_s=0.4, decode_s=5)
    async with engines(p, d), running_proxy([p], [d], zmq_port=zmq_port, tp=2,
                                            timeouts=timeouts) as proxy:
        async with aiohttp.ClientSession() as s:
            async with s.post(proxy.url + "/v1/completions", json={"prompt": "x", "max_tokens": 2}) as resp:
                assert resp.status == 504
                assert "1 of 2" in (await resp.json())["error"]["message"]
            req_id = p.requests[0]["kv_transfer_params"]["disagg_spec"]["req_id"]
            # the missing rank reports after the request gave up: counted late, not kept
            await p._push.send(encode_proxy_notif(req_id))
            for _ in range(100):
                async with s.get(proxy.url + "/metrics") as resp:
                    metrics = await resp.text()
                if _metric(metrics, "pdtui_proxy_kv_notifications_total", kind="late") >= 1:
                    break
                await asyncio.sleep(0.02)
            async with s.get(proxy.url + "/health") as resp:
                health = await resp.json()
    assert _metric(metrics, "pdtui_proxy_kv_notifications_total", kind="late") == 1
    assert health["kv_early"] == 0


async def test_late_notification_within_timeout_still_succeeds():
    zmq_port = free_port()
    p = FakeEngine("prefiller", zmq_port=zmq_port, notif_delay_s=0.3)
    d = FakeEngine("decoder")
    async with engines(p, d), running_proxy([p], [d], zmq_port=zmq_port) as proxy:
        async with aiohttp.ClientSession() as s:
            async with s.post(proxy.url + "/v1/completions", json={"prompt": "x", "max_tokens": 2}) as resp:
                assert resp.status == 200
                assert (await resp.json())["choices"][0]["text"] == " first d0"
            async with s.get(proxy.url + "/metrics") as resp:
                metrics = await resp.text()
    # the wait shows in the kv_wait histogram (>= 0.25 s of it)
    assert _metric(metrics, "pdtui_proxy_stage_seconds_count", stage="kv_wait") == 1
    assert _metric(metrics, "pdtui_proxy_stage_seconds_sum", stage="kv_wait") >= 0.25


@pytest.mark.parametrize("stage", ["tokenize", "prefill", "decode"])
async def test_every_wait_has_a_timeout(stage):
    zmq_port = free_port()
    p = FakeEngine("prefiller", zmq_port=zmq_port,
                   hang_tokenize_s=30 if stage == "tokenize" else 0,
                   hang_s=30 if stage == "prefill" else 0)
    d = FakeEngine("decoder", hang_s=30 if stage == "decode" else 0)
    timeouts = Timeouts(tokenize_s=0.4, prefill_s=0.4, kv_s=5, decode_s=0.4)
    async with engines(p, d), running_proxy([p], [d], zmq_port=zmq_port, timeouts=timeouts) as proxy:
        async with aiohttp.ClientSession() as s:
            async with s.post(proxy.url + "/v1/completions", json={
                    "prompt": "x y z", "max_tokens": 3, "stream": True}) as resp:
                assert resp.status == 504
                err = (await resp.json())["error"]
    assert err["stage"] == stage
    assert err["backend"] == (d.url if stage == "decode" else p.url)
    assert "timed out after 0.4 s" in err["message"]


async def test_backend_error_status_is_relayed_with_stage():
    zmq_port = free_port()
    p = FakeEngine("prefiller", zmq_port=zmq_port, error_status=400)
    d = FakeEngine("decoder")
    async with engines(p, d), running_proxy([p], [d], zmq_port=zmq_port) as proxy:
        async with aiohttp.ClientSession() as s:
            async with s.post(proxy.url + "/v1/completions", json={"prompt": "x", "max_tokens": 2}) as resp:
                assert resp.status == 400
                err = (await resp.json())["error"]
            async with s.post(proxy.url + "/v1/completions", data=b"{not json") as resp:
                assert resp.status == 400
                assert "not valid JSON" in (await resp.json())["error"]["message"]
    assert err["stage"] == "prefill" and "fake refusal" in err["message"]


async def test_dead_decoder_is_skipped_and_health_reports_it():
    zmq_port = free_port()
    p = FakeEngine("prefiller", zmq_port=zmq_port)
    d1 = FakeEngine("decoder")
    d2 = FakeEngine("decoder")
    async with engines(p, d1, d2), running_proxy([p], [d1, d2], zmq_port=zmq_port) as proxy:
        async with aiohttp.ClientSession() as s:
            await wait_ready(s, proxy.url)
            await d2.stop()  # dead: connection refused from now on
            for i in range(6):
                async with s.post(proxy.url + "/v1/completions", json={
                        "prompt": f"request {i}", "max_tokens": 2}) as resp:
                    assert resp.status == 200, await resp.text()
            async with s.get(proxy.url + "/health") as resp:
                assert resp.status == 200
                health = await resp.json()
            await d1.stop()
            await p.stop()
            for _ in range(100):  # the background checker notices within a few rounds
                async with s.get(proxy.url + "/health") as resp:
                    if resp.status == 503:
                        break
                await asyncio.sleep(0.05)
            assert resp.status == 503
            async with s.post(proxy.url + "/v1/completions", json={"prompt": "x", "max_tokens": 2}) as resp:
                assert resp.status == 503
                err = (await resp.json())["error"]
    assert len(d1.requests) == 6
    states = {b["url"]: b["state"] for b in health["decoders"]}
    assert states == {d1.url: "healthy", d2.url: "unhealthy"}
    assert err["type"] == "no_backend" and "no healthy" in err["message"]


async def test_routing_round_robin_and_sticky_sessions():
    zmq_port = free_port()
    ps = [FakeEngine("prefiller", zmq_port=zmq_port) for _ in range(2)]
    ds = [FakeEngine("decoder") for _ in range(2)]
    async with engines(*ps, *ds), running_proxy(ps, ds, zmq_port=zmq_port,
                                                sticky_header="X-Session") as proxy:
        async with aiohttp.ClientSession() as s:
            for _i in range(4):
                async with s.post(proxy.url + "/v1/completions", json={"prompt": "x", "max_tokens": 2}) as resp:
                    assert resp.status == 200
            assert [len(e.requests) for e in (*ps, *ds)] == [2, 2, 2, 2]
            for _i in range(4):
                async with s.post(proxy.url + "/v1/completions", headers={"X-Session": "abc"},
                                  json={"prompt": "x", "max_tokens": 2}) as resp:
                    assert resp.status == 200
    counts = sorted(len(e.requests) for e in ps)
    assert counts == [2, 6]  # all four sticky requests on one prefiller
    assert sorted(len(e.requests) for e in ds) == [2, 6]
    # each decoder gets the side-channel ports of its own
    specs = {r["kv_transfer_params"]["disagg_spec"]["receiver_init_port"][0]
             for e in ps for r in e.requests}
    assert specs == {7300, 7310}


async def test_api_key_is_forwarded(monkeypatch):
    zmq_port = free_port()
    p = FakeEngine("prefiller", zmq_port=zmq_port)
    d = FakeEngine("decoder")
    async with engines(p, d), running_proxy([p], [d], zmq_port=zmq_port, api_key="sk-test") as proxy:
        async with aiohttp.ClientSession() as s:
            async with s.post(proxy.url + "/v1/completions", json={"prompt": "x", "max_tokens": 2}) as resp:
                assert resp.status == 200
    assert p.headers[0]["Authorization"] == "Bearer sk-test"
    assert d.headers[0]["Authorization"] == "Bearer sk-test"


async def test_client_disconnect_cancels_the_decoder_request():
    zmq_port = free_port()
    p = FakeEngine("prefiller", zmq_port=zmq_port)
    d = FakeEngine("decoder")
    async with engines(p, d), running_proxy([p], [d], zmq_port=zmq_port) as proxy:
        d.hang_s = 30  # the decoder takes its time with the first token
        async with aiohttp.ClientSession() as s:
            task = asyncio.create_task(s.post(proxy.url + "/v1/completions", json={
                "prompt": "x", "max_tokens": 4, "stream": True}))
            for _ in range(200):
                if d.requests:
                    break
                await asyncio.sleep(0.02)
            assert d.requests, "the request never reached the decoder"
            task.cancel()  # the client goes away
            with pytest.raises(asyncio.CancelledError):
                await task
        for _ in range(200):
            if d.cancelled:
                break
            await asyncio.sleep(0.02)
        assert d.cancelled == 1
        async with aiohttp.ClientSession() as s:
            async with s.get(proxy.url + "/metrics") as resp:
                metrics = await resp.text()
    assert _metric(metrics, "pdtui_proxy_requests_total", outcome="cancelled") == 1
    assert _metric(metrics, "pdtui_proxy_backend_outstanding", role="decoder") == 0


async def test_events_stream_and_metrics_follow_requests():
    zmq_port = free_port()
    p = FakeEngine("prefiller", zmq_port=zmq_port)
    d = FakeEngine("decoder")
    async with engines(p, d), running_proxy([p], [d], zmq_port=zmq_port) as proxy:
        async with aiohttp.ClientSession() as s:
            events = await s.get(proxy.url + "/events?history=0")
            assert events.headers["Content-Type"].startswith("application/x-ndjson")
            async with s.post(proxy.url + "/v1/completions", json={"prompt": "x y", "max_tokens": 3}) as resp:
                assert resp.status == 200
                req_id = resp.headers["X-Request-Id"]
            seen = []
            while True:
                line = await asyncio.wait_for(events.content.readline(), 10)
                event = json.loads(line)
                if event.get("req_id") != req_id:
                    continue
                seen.append(event)
                if event["stage"] == "request" and event["state"] != "start":
                    break
            events.close()
            # the history replays the finished timeline to a late subscriber
            late = await s.get(proxy.url + "/events")
            line = await asyncio.wait_for(late.content.readline(), 10)
            assert json.loads(line)["req_id"] == req_id
            late.close()
            async with s.get(proxy.url + "/metrics") as resp:
                metrics = await resp.text()
    stages = [(e["stage"], e["state"]) for e in seen]
    for expected in [("request", "start"), ("tokenize", "start"), ("tokenize", "end"),
                     ("prefill", "end"), ("kv_wait", "end"), ("decode_ttft", "end"),
                     ("ttft", "end"), ("decode", "end"), ("total", "end"), ("request", "end")]:
        assert expected in stages, (expected, stages)
    backends = {e["stage"]: e["backend"] for e in seen if e["state"] == "end"}
    assert backends["prefill"] == p.url and backends["decode"] == d.url
    assert all(e["ts"] > 1e9 and e["elapsed_ms"] >= 0 for e in seen)
    for stage in ("tokenize", "prefill", "kv_wait", "decode_ttft", "ttft", "total"):
        assert _metric(metrics, "pdtui_proxy_stage_seconds_count", stage=stage) == 1, stage
    assert _metric(metrics, "pdtui_proxy_requests_total", route="completions", outcome="ok") == 1


async def test_nixl_mode_passes_prefiller_kv_params_to_decoder():
    p = FakeEngine("nixl-prefiller")
    d = FakeEngine("nixl-decoder")
    async with engines(p, d), running_proxy([p], [d], mode="nixl") as proxy:
        async with aiohttp.ClientSession() as s:
            async with s.post(proxy.url + "/v1/chat/completions", json={
                    "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
                    "stream": True}) as resp:
                assert resp.status == 200
                events = sse_payloads(await resp.read())
            async with s.post(proxy.url + "/v1/completions", json={
                    "prompt": "hi", "max_tokens": 3}) as resp:
                assert resp.status == 200
                whole = await resp.json()
    pre = p.requests[0]
    assert pre["kv_transfer_params"]["do_remote_decode"] is True
    assert pre["max_tokens"] == 1 and pre["stream"] is False
    dec = d.requests[0]
    assert dec["kv_transfer_params"]["remote_engine_id"] == "engine-p"
    assert dec["kv_transfer_params"]["remote_block_ids"] == [1, 2, 3]
    assert dec["max_tokens"] == 3 and dec["stream"] is True and dec["messages"]
    assert events[-1] == "[DONE]" and len(events) == 4
    assert whole["choices"][0]["text"] == " d0 d1 d2"
    assert p.tokenize_calls == []


async def test_v1_models_is_forwarded():
    p = FakeEngine("prefiller", zmq_port=free_port())
    d = FakeEngine("decoder")
    async with engines(p, d), running_proxy([p], [d]) as proxy:
        async with aiohttp.ClientSession() as s:
            async with s.get(proxy.url + "/v1/models") as resp:
                assert resp.status == 200
                assert (await resp.json())["data"][0]["id"] == "fake-model"
