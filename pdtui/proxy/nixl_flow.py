"""nixl mode: vLLM's NixlConnector protocol (its toy_proxy_server.py, with timeouts).

P gets the request with `kv_transfer_params.do_remote_decode = true`,
max_tokens=1 and stream=false; the `kv_transfer_params` it answers with (engine
id, block ids, host, port) go to D with the original request, and D's answer
is relayed as it is. The KV travels inside vLLM, so there is no tokenize or
notification stage here; both backends see the client's own route.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from aiohttp import web

from pdtui.proxy.backends import Backend
from pdtui.proxy.errors import StageError, stage_timeout
from pdtui.proxy.exchange import Exchange, staged
from pdtui.proxy.service import ProxyService
from pdtui.proxy.streaming import SSE_HEADERS, CoalescingResponse, DoneWatch, \
    finish_backend_response

_PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


class NixlFlow:
    def __init__(self, service: ProxyService) -> None:
        self.svc = service

    def prefill_body(self, body: dict) -> dict:
        out = dict(body)
        out["kv_transfer_params"] = {
            "do_remote_decode": True,
            "do_remote_prefill": False,
            "remote_engine_id": None,
            "remote_block_ids": None,
            "remote_host": None,
            "remote_port": None,
        }
        out["stream"] = False
        out["max_tokens"] = 1
        if "max_completion_tokens" in out:
            out["max_completion_tokens"] = 1
        out.pop("stream_options", None)
        out.pop("min_tokens", None)
        return out

    async def run(self, ex: Exchange, p: Backend, d: Backend) -> web.StreamResponse:
        svc, t = self.svc, self.svc.config.timeouts
        path = _PATHS[ex.route]
        with svc.outstanding(p):
            prefill = await staged(ex, "prefill", p.url, svc.post_json(
                p, path, self.prefill_body(ex.body), stage="prefill", timeout_s=t.prefill_s,
                req_id=ex.req_id), {"decoder": d.url})
        decode_body = dict(ex.body)
        kv_params = prefill.get("kv_transfer_params")
        if kv_params:
            decode_body["kv_transfer_params"] = kv_params
        tl = ex.timeline
        with svc.outstanding(d):
            tl.start("decode", d.url)
            t_send = time.perf_counter()
            ok = False
            try:
                resp = await svc.open_stream(d, path, decode_body, stage="decode",
                                             timeout_s=t.decode_s, req_id=ex.req_id)
                try:
                    out = await self._relay(ex, resp, d, t_send)
                    ok = True
                    return out
                finally:
                    await finish_backend_response(resp, ok, d)
            except BaseException as exc:
                if ex.answered:
                    ok = True  # the client hung up after the whole answer: not a failure
                else:
                    tl.end("decode", d.url, {"error": str(exc) or type(exc).__name__},
                           state="error")
                raise
            finally:
                if ok:
                    tl.end("decode", d.url)

    async def _read(self, resp: aiohttp.ClientResponse, d: Backend) -> bytes:
        t = self.svc.config.timeouts
        try:
            return await resp.content.readany()
        except asyncio.TimeoutError:
            raise stage_timeout("decode", d.url, t.decode_s, "the next bytes") from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise StageError(502, "decode", d.url, f"decode: stream from {d.url} broke: {exc}",
                             "backend_error") from None

    async def _relay(self, ex: Exchange, resp: aiohttp.ClientResponse, d: Backend,
                     t_send: float) -> web.StreamResponse:
        tl = ex.timeline
        first = await self._read(resp, d)
        tl.record("decode_ttft", time.perf_counter() - t_send, d.url)
        if not ex.wants_stream:
            chunks = [first]
            while chunk := await self._read(resp, d):
                chunks.append(chunk)
            tl.mark("ttft")
            return web.Response(body=b"".join(chunks), status=200, headers={
                "Content-Type": resp.headers.get("Content-Type", "application/json"),
                "X-Request-Id": ex.req_id,
            })
        headers = {**SSE_HEADERS, "X-Request-Id": ex.req_id}
        headers["Content-Type"] = resp.headers.get("Content-Type", SSE_HEADERS["Content-Type"])
        out = ex.response = CoalescingResponse(status=200, headers=headers)
        await out.prepare(ex.request)
        done = DoneWatch()
        chunk, relayed = first, 0
        while chunk:
            if done.feed(chunk):
                # The client has the whole answer: end its response now rather than wait
                # for the decoder to close its stream (run() lets go of that connection).
                await out.write_eof(chunk)
                ex.answered = True
                if not relayed:
                    tl.mark("ttft")
                return out
            await out.write(chunk)
            relayed += 1
            if relayed == 1:
                tl.mark("ttft")
            chunk = await self._read(resp, d)
        await out.write_eof()
        return out
