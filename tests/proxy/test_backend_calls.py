"""The proxy's backend calls: the lean keep-alive client (backend_http.py) against a real
loopback server (whole answers and streams), the bodies it forwards, and letting go of a
decode stream after [DONE]."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web

from pdtui.proxy.backend_http import ConnectionBudget, Disconnected
from pdtui.proxy.backends import Backend
from pdtui.proxy.lmcache_answer import StreamShaper
from pdtui.proxy.lmcache_flow import ids_json, ids_json_plus, with_prompt
from pdtui.proxy.streaming import TAIL_WAIT_GIVE_UP, TAIL_WAIT_S, finish_backend_response
from tests.conftest import free_port
from tests.proxy.fakes import FakeEngine, fake_tokenize
from tests.proxy.harness import engines, running_proxy

pytestmark = pytest.mark.timeout(60)


class Server:
    """A loopback aiohttp server that records which connection served each request."""

    def __init__(self) -> None:
        self.port = free_port()
        self.connections: list[int] = []  # id of the transport per request
        self.cancelled = asyncio.Event()
        self.gate: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Server:
        app = web.Application()
        app.router.add_post("/echo", self._echo)
        app.router.add_post("/chunked", self._chunked)
        app.router.add_post("/close", self._close)
        app.router.add_post("/hang", self._hang)
        app.router.add_post("/drop", self._drop)
        app.router.add_post("/drop-mid", self._drop_mid)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()

    def _seen(self, request: web.Request) -> None:
        self.connections.append(id(request.transport))

    async def _echo(self, request: web.Request) -> web.Response:
        self._seen(request)
        if self.gate is not None:
            await self.gate.wait()
        body = await request.json()
        return web.json_response({"got": body, "headers": {k.lower(): v for k, v in
                                                           request.headers.items()}})

    async def _chunked(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b'{"parts": ', b"[1, 2", b", 3]}"):
            await resp.write(part)
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    async def _close(self, request: web.Request) -> web.Response:
        self._seen(request)
        resp = web.json_response({"ok": True})
        resp.force_close()
        return resp

    async def _hang(self, request: web.Request) -> web.Response:
        self._seen(request)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return web.json_response({})

    async def _drop(self, request: web.Request) -> web.Response:
        self._seen(request)
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(1)
        return web.json_response({})

    async def _drop_mid(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        resp = web.StreamResponse(headers={"Content-Type": "application/json",
                                           "Content-Length": "100"})
        await resp.prepare(request)
        await resp.write(b'{"partial": ')
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.close()
        return resp


async def test_lean_client_keeps_one_connection_alive_and_reads_chunked_answers():
    async with Server() as server:
        budget = ConnectionBudget(0)
        pool = budget.pool(server.url)
        try:
            for i in range(5):
                status, data = await pool.post("/echo", json.dumps({"i": i}).encode(),
                                               {"X-Request-Id": f"r{i}"}, timeout_s=10)
                answer = json.loads(data)
                assert status == 200 and answer["got"] == {"i": i}
                assert answer["headers"]["x-request-id"] == f"r{i}"
                assert answer["headers"]["host"] == f"127.0.0.1:{server.port}"
            status, data = await pool.post("/chunked", b"{}", {}, timeout_s=10)
            assert status == 200 and json.loads(data) == {"parts": [1, 2, 3]}
            status, data = await pool.post("/nowhere", b"{}", {}, timeout_s=10)
            assert status == 404
            assert len(set(server.connections)) == 1, "one kept-alive connection for all"
            assert budget.open == 1
        finally:
            budget.close()


async def test_lean_client_drops_a_connection_the_answer_closes():
    async with Server() as server:
        budget = ConnectionBudget(0)
        pool = budget.pool(server.url)
        try:
            await pool.post("/close", b"{}", {}, timeout_s=10)
            await pool.post("/echo", b"{}", {}, timeout_s=10)
            assert len(set(server.connections)) == 2
        finally:
            budget.close()


async def test_lean_client_failures_say_what_happened():
    async with Server() as server:
        budget = ConnectionBudget(0)
        pool = budget.pool(server.url)
        try:
            with pytest.raises(Disconnected) as before:
                await pool.post("/drop", b"{}", {}, timeout_s=10)
            assert before.value.before_answer  # the backend is going away: unreachable
            with pytest.raises(Disconnected) as mid:
                await pool.post("/drop-mid", b"{}", {}, timeout_s=10)
            assert not mid.value.before_answer  # a broken answer: a backend error
            # a cancelled (or timed-out) call closes its connection: the server sees it
            with pytest.raises(TimeoutError):
                await pool.post("/hang", b"{}", {}, timeout_s=0.3)
            await asyncio.wait_for(server.cancelled.wait(), 10)
            # and the pool still works
            status, _ = await pool.post("/echo", b"{}", {}, timeout_s=10)
            assert status == 200
        finally:
            budget.close()
    refused = ConnectionBudget(0).pool(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(OSError):
        await refused.post("/echo", b"{}", {}, timeout_s=10)
    with pytest.raises(ValueError):
        await refused.post("/echo", b"{}", {"X-Bad": "a\r\nInjected: 1"}, timeout_s=10)


async def test_lean_client_budget_caps_open_connections():
    async with Server() as server:
        budget = ConnectionBudget(1)
        pool = budget.pool(server.url)
        server.gate = asyncio.Event()
        try:
            calls = [asyncio.create_task(pool.post("/echo", b'{"n": 1}', {}, timeout_s=10))
                     for _ in range(3)]
            while not server.connections:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            assert budget.open == 1 and len(server.connections) == 1  # the others wait
            server.gate.set()
            results = await asyncio.wait_for(asyncio.gather(*calls), 10)
            assert [status for status, _ in results] == [200, 200, 200]
            assert len(set(server.connections)) == 1 and budget.open == 1
        finally:
            budget.close()


@pytest.fixture
def patient_tail(monkeypatch):
    """The proxy waits TAIL_WAIT_S (50 ms) for a stream's end after [DONE]; a loaded machine
    can hold the test backend's last bytes longer than that. What these tests check is
    that a stream read to its end keeps its connection, not the 50 ms."""
    monkeypatch.setattr("pdtui.proxy.streaming.TAIL_WAIT_S", 5.0)


async def test_lean_client_streams_keep_their_connection_when_read_to_the_end(patient_tail):
    port = free_port()
    runner = web.AppRunner(await _stream_from(0.01, events=3))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    backend = Backend("decoder", f"http://127.0.0.1:{port}")
    budget = ConnectionBudget(0)
    pool = budget.pool(backend.url)
    try:
        for _ in range(3):
            answer = await pool.post_stream("/sse", b"{}", {}, read_timeout_s=5)
            assert answer.status == 200
            assert answer.headers["Content-Type"] == "text/event-stream"
            got = b""
            while b"[DONE]" not in got:
                got += await answer.content.readany()
            assert got.count(b"data: ") == 4
            await finish_backend_response(answer, True, backend)  # type: ignore[arg-type]
            assert answer.closed
        assert budget.open == 1 and backend.slow_tails == 0  # one connection for all
    finally:
        budget.close()
        await runner.cleanup()


async def test_lean_client_stream_silence_times_out_and_letting_go_closes():
    stalled = asyncio.Event()
    gone = asyncio.Event()
    app = web.Application()

    async def stall(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: 1\n\n")
        stalled.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            gone.set()  # the client went away: vLLM would abort the request here
            raise
        return resp

    app.router.add_post("/stall", stall)
    port = free_port()
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    budget = ConnectionBudget(0)
    pool = budget.pool(f"http://127.0.0.1:{port}")
    try:
        answer = await pool.post_stream("/stall", b"{}", {}, read_timeout_s=0.3)
        assert await answer.content.readany() == b"data: 1\n\n"
        with pytest.raises(asyncio.TimeoutError):
            await answer.content.readany()  # 0.3 s of silence
        await asyncio.wait_for(gone.wait(), 10)
        answer.close()
        # let go mid-stream: closed, the backend sees it
        gone.clear()
        answer = await pool.post_stream("/stall", b"{}", {}, read_timeout_s=5)
        await answer.content.readany()
        answer.close()
        await asyncio.wait_for(gone.wait(), 10)
    finally:
        budget.close()
        await runner.cleanup()


def test_token_ids_are_encoded_once_and_spliced():
    ids = [1, 22, 333]
    assert json.loads(ids_json(ids)) == ids
    assert json.loads(ids_json_plus(ids_json(ids), 7)) == [1, 22, 333, 7]
    assert json.loads(ids_json_plus(ids_json([]), 7)) == [7]
    fields = {"model": "m", "stop": ["\n", "é"], "nested": {"a": [1, {"b": None}]}}
    assert json.loads(with_prompt(fields, ids_json(ids))) == {**fields, "prompt": ids}
    assert json.loads(with_prompt({}, ids_json(ids))) == {"prompt": ids}


async def test_bodies_forwarded_unchanged_but_the_fields_the_proxy_sets():
    """The prefill and the decode carry every field of the client's body as it came, but
    those the LMCache protocol makes the proxy set (prompt, max_tokens, min_tokens,
    stream, stream_options, kv_transfer_params)."""
    zmq_port = free_port()
    p = FakeEngine("prefiller", zmq_port=zmq_port)
    d = FakeEngine("decoder")
    client = {
        "model": "fake-model", "prompt": "bodies travel whole", "max_tokens": 5,
        "min_tokens": 3, "stream": True, "stream_options": {"include_usage": False},
        "temperature": 0.25, "top_p": 0.9, "seed": 7, "stop": ["\n\n", "naïve ✓"],
        "logit_bias": {"50256": -100}, "user": "u-1", "echo": False,
        "extra": {"nested": [1, 2.5, None, True, {"deep": "ü"}]},
    }
    async with engines(p, d), running_proxy([p], [d], zmq_port=zmq_port) as proxy:
        async with aiohttp.ClientSession() as s:
            async with s.post(proxy.url + "/v1/completions", json=client) as resp:
                assert resp.status == 200, await resp.text()
                await resp.read()
    tokens = fake_tokenize(client["prompt"])
    (pre,) = p.requests
    kv = pre.pop("kv_transfer_params")
    assert kv["ret_first_tok"] is True and kv["disagg_spec"]["req_id"]
    untouched = {k: v for k, v in client.items()
                 if k not in ("prompt", "max_tokens", "min_tokens", "stream", "stream_options")}
    assert pre == {**untouched, "prompt": tokens, "max_tokens": 1, "stream": False}
    (dec,) = d.requests
    assert dec == {**untouched, "prompt": tokens + [500 + len(tokens)], "max_tokens": 4,
                   "min_tokens": 2, "stream": True, "stream_options": {"include_usage": True}}


def test_usage_null_chunks_are_relayed_byte_for_byte():
    ex = type("Ex", (), {"is_chat": False, "wants_usage_chunk": False, "req_id": "r"})()
    shaper = StreamShaper(ex, {"id": "cmpl-p", "model": "m"}, {"text": " a"})  # type: ignore[arg-type]
    for payload in (b'{"id":"x","choices":[{"text":" b"}],"usage":null}',
                    b'{"id": "x", "choices": [{"text": " b"}], "usage": null}'):
        parts: list[bytes] = []
        shaper.convert(payload, parts)
        assert parts == [b"data: " + payload + b"\n\n"]
    # the usage-only chunk the proxy asked for itself is not the client's
    parts = []
    shaper.convert(b'{"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}',
                   parts)
    assert parts == []


async def _stream_from(linger_s: float, events: int = 0):
    """A backend SSE stream (GET or POST) of `events` events and [DONE], whose end
    comes `linger_s` after its [DONE]."""
    app = web.Application()

    async def sse(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(events):
            await resp.write(b'data: {"i": %d}\n\n' % i)
        await resp.write(b"data: [DONE]\n\n")
        await asyncio.sleep(linger_s)
        await resp.write_eof()
        return resp

    app.router.add_get("/sse", sse)
    app.router.add_post("/sse", sse)
    return app


@pytest.mark.parametrize("linger_s", [0.0, 0.01])
async def test_a_stream_read_to_its_end_keeps_its_connection(linger_s, patient_tail):
    port = free_port()
    runner = web.AppRunner(await _stream_from(linger_s))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    backend = Backend("decoder", f"http://127.0.0.1:{port}")
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                resp = await session.get(backend.url + "/sse")
                assert await resp.content.readany()  # [DONE] arrived: the answer is whole
                await finish_backend_response(resp, True, backend)
            connector = session.connector
            assert connector is not None
            # released (kept alive), never closed: one connection served all three
            assert sum(len(c) for c in connector._conns.values()) == 1  # noqa: SLF001
        assert backend.slow_tails == 0
    finally:
        await runner.cleanup()


async def test_a_backend_that_keeps_streams_open_is_no_longer_waited_for():
    port = free_port()
    runner = web.AppRunner(await _stream_from(TAIL_WAIT_S * 20))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    backend = Backend("decoder", f"http://127.0.0.1:{port}")
    try:
        async with aiohttp.ClientSession() as session:
            for i in range(TAIL_WAIT_GIVE_UP + 1):
                resp = await session.get(backend.url + "/sse")
                assert await resp.content.readany()
                await finish_backend_response(resp, True, backend)
                assert resp.closed  # not read to its end: closed, not reused
                assert backend.slow_tails == min(i + 1, TAIL_WAIT_GIVE_UP)
    finally:
        await runner.cleanup()
