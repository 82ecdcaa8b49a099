"""Small real backends for the proxy tests: aiohttp servers on 127.0.0.1 that answer
like a vLLM + LMCache prefiller/decoder (or a NixlConnector pair), and a prefiller
that PUSHes real ProxyNotif messages over ZMQ. Each records what it was sent.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import zmq
import zmq.asyncio
from aiohttp import web

from pdtui.proxy.protocol import encode_proxy_notif
from tests.conftest import free_port


def fake_tokenize(text: str) -> list[int]:
    return [1 + (sum(map(ord, word)) % 997) for word in text.split()]


@dataclass
class FakeEngine:
    """role: prefiller | decoder | nixl-prefiller | nixl-decoder."""

    role: str
    zmq_port: int | None = None  # where a prefiller PUSHes ProxyNotif
    tp_notifs: int | None = None  # override the number of notifs sent (None = one per rank)
    drop_notif: bool = False
    notif_delay_s: float = 0.0  # > 0: notify after answering (the KV arrives late)
    hang_s: float = 0.0  # sleep before answering completions (prefill or first event)
    hang_tokenize_s: float = 0.0
    # > 0: keep a stream open this long after its `data: [DONE]` (vLLM's end can lag it)
    linger_after_done_s: float = 0.0
    error_status: int | None = None
    # Held until the test sets them: a decoder's first streamed event (after its 200
    # status line), a prefiller's KV-ready notifications (after its answer).
    first_event_gate: asyncio.Event | None = None
    notif_gate: asyncio.Event | None = None
    healthy: bool = True
    health_hang_s: float = 0.0
    port: int = field(default_factory=free_port)
    requests: list[dict] = field(default_factory=list)
    headers: list[dict] = field(default_factory=list)
    tokenize_calls: list[dict] = field(default_factory=list)
    cancelled: int = 0
    finished: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024)  # huge-prompt tests
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/tokenize", self._tokenize)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._completions)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self._ctx = zmq.asyncio.Context()
        self._push = None
        if self.zmq_port:
            self._push = self._ctx.socket(zmq.PUSH)
            self._push.setsockopt(zmq.LINGER, 0)
            self._push.connect(f"tcp://127.0.0.1:{self.zmq_port}")
        self._tasks: set[asyncio.Task] = set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self._runner.cleanup()
        if self._push is not None:
            self._push.close(linger=0)
        self._ctx.term()

    async def _health(self, request: web.Request) -> web.Response:
        if self.health_hang_s:
            await asyncio.sleep(self.health_hang_s)
        return web.json_response({}, status=200 if self.healthy else 503)

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    async def _tokenize(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.tokenize_calls.append(body)
        if self.hang_tokenize_s:
            await asyncio.sleep(self.hang_tokenize_s)
        try:
            if "messages" in body:
                text = " ".join(m["content"] for m in body["messages"]) + " <assistant>"
            else:
                text = body["prompt"]
            tokens = fake_tokenize(text)
        except (KeyError, TypeError, AttributeError) as exc:  # as vLLM: 400, not a crash
            return web.json_response({"object": "error", "message": f"bad input: {exc!r}",
                                      "type": "BadRequestError"}, status=400)
        return web.json_response({"tokens": tokens, "count": len(tokens), "max_model_len": 4096})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(request.headers.copy())  # case-insensitive
        if self.error_status:
            return web.json_response(
                {"object": "error", "message": "fake refusal", "type": "BadRequestError"},
                status=self.error_status,
            )
        try:
            if self.hang_s:
                await asyncio.sleep(self.hang_s)
            if self.role == "prefiller":
                return await self._prefill(body)
            if self.role == "nixl-prefiller":
                return web.json_response(self._completion_json(body, " P", 1, kv={
                    "do_remote_prefill": True, "do_remote_decode": False,
                    "remote_engine_id": "engine-p", "remote_block_ids": [1, 2, 3],
                    "remote_host": "127.0.0.1", "remote_port": 5600,
                }))
            return await self._decode(request, body)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    def _completion_json(self, body: dict, text: str, n_out: int, kv=None) -> dict:
        prompt = body.get("prompt", [])
        return {
            "id": "cmpl-fake", "object": "text_completion", "created": 1700000000,
            "model": body.get("model", "fake-model"),
            "choices": [{"index": 0, "text": text, "logprobs": None,
                         "finish_reason": "length", "stop_reason": None}],
            "usage": {"prompt_tokens": len(prompt) if isinstance(prompt, list) else 3,
                      "completion_tokens": n_out,
                      "total_tokens": (len(prompt) if isinstance(prompt, list) else 3) + n_out},
            "kv_transfer_params": kv,
        }

    async def _prefill(self, body: dict) -> web.Response:
        kv = body["kv_transfer_params"]
        spec = kv["disagg_spec"]
        first_tok = 500 + len(body["prompt"])
        count = self.tp_notifs if self.tp_notifs is not None else len(spec["receiver_init_port"])
        if not self.drop_notif:
            if self.notif_delay_s or self.notif_gate is not None:
                task = asyncio.create_task(self._notify_later(spec["req_id"], count))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                for _ in range(count):
                    await self._push.send(encode_proxy_notif(spec["req_id"]))
        return web.json_response(self._completion_json(
            body, " first", 1, kv={"first_tok": first_tok}))

    async def _notify_later(self, req_id: str, count: int) -> None:
        await asyncio.sleep(self.notif_delay_s)
        if self.notif_gate is not None:
            await self.notif_gate.wait()
        for _ in range(count):
            await self._push.send(encode_proxy_notif(req_id))

    async def _decode(self, request: web.Request, body: dict) -> web.StreamResponse:
        n = min(body.get("max_tokens") or 4, 64)
        prompt = body.get("prompt", [])
        n_prompt = len(prompt) if isinstance(prompt, list) else 3
        if not body.get("stream"):
            texts = "".join(f" d{i}" for i in range(n))
            self.finished += 1
            return web.json_response(self._completion_json(body, texts, n, kv=None))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if self.first_event_gate is not None:
            await self.first_event_gate.wait()
        for i in range(n):
            chunk = {"id": "cmpl-dec", "object": "text_completion", "created": 1700000001,
                     "model": body.get("model", "fake-model"),
                     "choices": [{"index": 0, "text": f" d{i}", "logprobs": None,
                                  "finish_reason": "length" if i == n - 1 else None,
                                  "stop_reason": None}]}
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            await asyncio.sleep(0)
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"id": "cmpl-dec", "object": "text_completion", "created": 1700000001,
                     "model": "fake-model", "choices": [],
                     "usage": {"prompt_tokens": n_prompt, "completion_tokens": n,
                               "total_tokens": n_prompt + n}}
            await resp.write(b"data: " + json.dumps(usage).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        if self.linger_after_done_s:
            await asyncio.sleep(self.linger_after_done_s)
        await resp.write_eof()
        self.finished += 1
        return resp
