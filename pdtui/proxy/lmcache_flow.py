"""lmcache-pd mode: LMCache's PD protocol, as its example proxy speaks it.

tokenize (a backend's /tokenize) -> prefill on P with max_tokens=1 and
kv_transfer_params {ret_first_tok, disagg_spec} -> wait for one ProxyNotif per
decoder TP rank -> decode on D from prompt ids + P's first token with
max_tokens-1. Both P and D are always spoken to through /v1/completions; chat
requests are tokenized from their messages and re-wrapped as chat chunks.

Unlike the example proxy: `stream: false` gets one JSON body, every wait has a
timeout, the client's response starts when the decoder has accepted the decode
request (so a failure before it is a proper HTTP status; or, as an option, right
after the prefill), and usage counts the prefill's token as a completion token,
not a prompt token (lmcache_answer.py).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from aiohttp import web

from pdtui.proxy.backends import Backend, NoBackendError
from pdtui.proxy.errors import StageError, bad_request
from pdtui.proxy.exchange import Exchange, staged
from pdtui.proxy.service import ProxyService
from pdtui.proxy.lmcache_answer import StreamShaper, collect, open_client_stream, \
    relay_stream, whole_answer
from pdtui.proxy.streaming import finish_backend_response, iter_sse_batches, sse_event, start_sse
from pdtui.proxy.timeline import RequestTimeline, TimelineHub

# Chat fields that a /v1/completions request does not take (or takes differently).
_CHAT_ONLY = frozenset({
    "messages", "add_generation_prompt", "continue_final_message", "chat_template",
    "chat_template_kwargs", "tools", "tool_choice", "parallel_tool_calls", "documents",
    "max_completion_tokens", "logprobs", "top_logprobs", "mm_processor_kwargs",
})
# Chat fields that shape the prompt, so /tokenize must see them.
_CHAT_TOKENIZE = ("add_generation_prompt", "continue_final_message", "chat_template",
                  "chat_template_kwargs", "tools", "add_special_tokens", "documents",
                  "mm_processor_kwargs")
_DEFAULT_COMPLETION_MAX_TOKENS = 16  # vLLM's (and OpenAI's) default for /v1/completions


def requested_max_tokens(body: dict, chat: bool) -> int | None:
    keys = ("max_completion_tokens", "max_tokens") if chat else ("max_tokens",)
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad_request(f"'{key}' must be an integer >= 1, got {value!r}")
        return value
    return None if chat else _DEFAULT_COMPLETION_MAX_TOKENS


def all_ints(values: list) -> bool:
    """Every item an int (not a bool): one pass in C, not a generator per item."""
    return set(map(type, values)) <= _INT


_INT = frozenset({int})
# One encoder: json.dumps with any argument but the object builds a new one per call.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def ids_json(ids: list[int]) -> bytes:
    """Token ids (ints, all_ints) as a JSON array."""
    return b"[" + ",".join(map(str, ids)).encode() + b"]"


def ids_json_plus(array: bytes, token: int) -> bytes:
    """ids_json(ids + [token]) from ids_json(ids), without encoding the ids again."""
    return array[:-1] + (b"," if len(array) > 2 else b"") + str(token).encode() + b"]"


def with_prompt(fields: dict, prompt_json: bytes) -> bytes:
    """The JSON body of `fields` (no "prompt" among them) plus "prompt": prompt_json."""
    head = _COMPACT.encode(fields).encode()
    return head[:-1] + (b',"prompt":' if len(head) > 2 else b'"prompt":') + prompt_json + b"}"


class LmcachePdFlow:
    def __init__(self, service: ProxyService) -> None:
        self.svc = service

    async def run(self, ex: Exchange, p: Backend, d: Backend) -> web.StreamResponse:
        body = ex.body
        if body.get("n", 1) not in (1, None) or body.get("best_of", 1) not in (1, None):
            raise bad_request("n > 1 / best_of > 1 are not supported in lmcache-pd mode "
                              "(one first token comes back from the prefiller)")
        max_tokens = requested_max_tokens(body, ex.is_chat)
        try:
            return await self._run(ex, p, d, max_tokens)
        finally:
            self.svc.waiters.forget(ex.kv_req_id)

    async def _run(self, ex: Exchange, p: Backend, d: Backend, max_tokens: int | None):
        svc, t = self.svc, self.svc.config.timeouts
        with svc.outstanding(p):
            tokens = await self._tokenize(ex, p, d)
            # The token ids are encoded once, for the prefill and (with P's token) the decode.
            prompt_json = ids_json(tokens)
            prefill_fields = self._prefill_fields(ex, d)
            # Register before sending, so the notification can never outrun its waiter.
            kv_ready = svc.waiters.register(ex.kv_req_id, d.tp_ranks)
            prefill = await svc.unless_down(d, staged(
                ex, "prefill", p.url,
                svc.post_json(p, "/v1/completions", with_prompt(prefill_fields, prompt_json),
                              stage="prefill", timeout_s=t.prefill_s, req_id=ex.req_id),
                {"prompt_tokens": len(tokens), "decoder": d.url},
            ), "prefill", "the decoder receiving this prefill's KV went down")
        first_tok = (prefill.get("kv_transfer_params") or {}).get("first_tok")
        if isinstance(first_tok, bool) or not isinstance(first_tok, int):
            raise StageError(
                502, "prefill", p.url,
                f"prefill: {p.url} answered without kv_transfer_params.first_tok; is it a "
                "vLLM + LMCache prefiller (kv_role kv_producer, LMCache pd_role: sender)?",
                "backend_error",
            )
        choices = prefill.get("choices") or [{}]
        first_choice = choices[0] if isinstance(choices[0], dict) else {}

        complete = (max_tokens is not None and max_tokens <= 1) or \
            first_choice.get("finish_reason") == "stop"
        if svc.config.first_token_from_prefiller and ex.wants_stream and not complete:
            # LMCache's first_token_from_prefiller: the client has P's token before the KV
            # wait and the decode; a failure after this is reported in-band.
            await open_client_stream(ex, StreamShaper(ex, prefill, first_choice))

        await svc.unless_down(d, self._wait_kv(ex, p, d, kv_ready), "kv_wait",
                              "the decoder receiving this request's KV went down")
        decode_body = dict(prefill_fields)
        del decode_body["kv_transfer_params"]
        decode_prompt = ids_json_plus(prompt_json, first_tok)
        if complete:
            # The answer is whole already, but the decoder holds this request's KV in its
            # PD buffer until it reads it: one token of decode frees it.
            await self._drain_decoder(ex, d, decode_body, decode_prompt)
            return await self._answer_from_prefill(ex, prefill, first_choice)
        if max_tokens is None:
            decode_body.pop("max_tokens", None)
        else:
            decode_body["max_tokens"] = max_tokens - 1
        if isinstance(body_min := ex.body.get("min_tokens"), int) and body_min > 1:
            decode_body["min_tokens"] = body_min - 1
        decode_body["stream"] = True
        decode_body["stream_options"] = {"include_usage": True}
        return await self._decode(ex, d, with_prompt(decode_body, decode_prompt), prefill,
                                  first_choice)

    # -- stages ------------------------------------------------------------------------

    async def _tokenize(self, ex: Exchange, p: Backend, d: Backend) -> list[int]:
        body = ex.body
        if ex.is_chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise bad_request("'messages' must be a non-empty list of chat messages")
            tok_body: dict[str, Any] = {"messages": messages}
            tok_body.update({k: body[k] for k in _CHAT_TOKENIZE if k in body})
        else:
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
                prompt = prompt[0]
            if isinstance(prompt, list) and prompt and all_ints(prompt):
                return list(prompt)  # already token ids: nothing to tokenize
            if not isinstance(prompt, str):
                raise bad_request("'prompt' must be a string or a list of token ids "
                                  "(one prompt per request in lmcache-pd mode)")
            tok_body = {"prompt": prompt}
        if "model" in body:
            tok_body["model"] = body["model"]
        svc = self.svc
        # the tokenizing backend: p, or p and d in turn (BackendPool.tokenizer says why)
        tok = p if svc.config.tokenize_on == "prefiller" else svc.pool.tokenizer(p, d)
        out = await staged(ex, "tokenize", tok.url, svc.post_json(
            tok, "/tokenize", tok_body, stage="tokenize", timeout_s=svc.config.timeouts.tokenize_s,
            req_id=ex.req_id))
        tokens = out.get("tokens")
        if not isinstance(tokens, list) or not all_ints(tokens):
            raise StageError(502, "tokenize", tok.url,
                             f"tokenize: {tok.url}/tokenize answered without a 'tokens' list of ints",
                             "backend_error")
        return tokens

    def _prefill_fields(self, ex: Exchange, d: Backend) -> dict:
        """The prefill request but its prompt: the client's fields as they came, less those
        a completion does not take, with the ones this flow must set."""
        body = {k: v for k, v in ex.body.items() if k not in _CHAT_ONLY} if ex.is_chat \
            else dict(ex.body)
        body.pop("prompt", None)  # with_prompt() adds the token ids
        body.pop("stream_options", None)
        body.pop("min_tokens", None)  # min_tokens > max_tokens=1 would be refused
        body["max_tokens"] = 1
        body["stream"] = False
        body["kv_transfer_params"] = {
            "ret_first_tok": True,
            "disagg_spec": {
                "req_id": ex.kv_req_id,
                "receiver_host": d.host,
                "receiver_init_port": list(d.init_ports),
                "receiver_alloc_port": list(d.alloc_ports),
            },
        }
        return body

    async def _wait_kv(self, ex: Exchange, p: Backend, d: Backend, kv_ready: asyncio.Future):
        timeout = self.svc.config.timeouts.kv_s
        detail = {"expected": d.tp_ranks, "decoder": d.url}
        ex.timeline.start("kv_wait", p.url, detail)
        try:
            await asyncio.wait_for(kv_ready, timeout)
        except asyncio.TimeoutError:
            self.svc.degrade.kv_timed_out(p, ex.kv_req_id)
            got = self.svc.waiters.received(ex.kv_req_id)
            ex.timeline.end("kv_wait", p.url, {"received": got, **detail}, state="error")
            raise StageError(
                504, "kv_wait", p.url,
                f"kv_wait timed out after {timeout:g} s: {got} of {d.tp_ranks} KV-ready "
                f"notifications (ProxyNotif) for request {ex.kv_req_id} arrived from prefiller "
                f"{p.url} (decoder {d.url}); check that its pd_proxy_host/pd_proxy_port point "
                f"at this proxy's ZMQ port {self.svc.config.zmq_port} and that it stored the "
                "prompt (save_unfull_chunk: true)",
                "timeout",
            ) from None
        ex.timeline.end("kv_wait", p.url, detail)
        if p.kv_timeouts:
            self.svc.degrade.kv_ok(p)

    async def _drain_decoder(self, ex: Exchange, d: Backend, decode_body: dict,
                             prompt_json: bytes) -> None:
        body = with_prompt({**decode_body, "max_tokens": 1, "stream": False}, prompt_json)
        t = self.svc.config.timeouts
        with self.svc.outstanding(d):
            await staged(ex, "decode", d.url, self.svc.post_json(
                d, "/v1/completions", body, stage="decode", timeout_s=t.decode_s,
                req_id=ex.req_id), {"drain": True})

    async def _decode(self, ex: Exchange, d: Backend, decode_body: bytes, prefill: dict,
                      first_choice: dict) -> web.StreamResponse:
        svc, t = self.svc, self.svc.config.timeouts
        tl = ex.timeline
        with svc.outstanding(d):
            tl.start("decode", d.url)
            t_send = time.perf_counter()

            def first_event() -> None:
                tl.record("decode_ttft", time.perf_counter() - t_send, d.url)

            ok = False
            try:
                resp = await svc.open_stream(d, "/v1/completions", decode_body, stage="decode",
                                             timeout_s=t.decode_s, req_id=ex.req_id)
                try:
                    batches = iter_sse_batches(resp, stage="decode", backend=d.url,
                                               timeout_s=t.decode_s)
                    if ex.wants_stream:
                        # The decoder accepted: the client's stream opens now, with P's
                        # token, not when D's first event comes in.
                        out = await relay_stream(ex, StreamShaper(ex, prefill, first_choice),
                                                 batches, first_event)
                    else:
                        out = await collect(ex, prefill, first_choice, batches, first_event)
                    ok = True
                    return out
                finally:
                    # a failure drops the connection, so the decoder stops generating
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

    async def _answer_from_prefill(self, ex: Exchange, prefill: dict, first_choice: dict):
        text = first_choice.get("text", "")
        finish = first_choice.get("finish_reason") or "length"
        usage = prefill.get("usage")
        ex.timeline.mark("ttft")
        if not ex.wants_stream:
            return web.json_response(whole_answer(
                ex, prefill, text, finish, first_choice.get("stop_reason"), usage,
                first_choice.get("logprobs")), headers={"X-Request-Id": ex.req_id})
        whole = whole_answer(ex, prefill, text, finish, first_choice.get("stop_reason"),
                             usage, None)
        out = ex.response = await start_sse(ex.request, ex.req_id)
        choice = whole["choices"][0]
        if ex.is_chat:
            whole["object"] = "chat.completion.chunk"
            choice["delta"] = choice.pop("message")
        else:
            choice["logprobs"] = first_choice.get("logprobs")
        if not ex.wants_usage_chunk:
            whole.pop("usage")
        await out.write_eof(sse_event(whole) + b"data: [DONE]\n\n")
        ex.answered = True
        return out

    async def probe(self, p: Backend) -> str | None:
        """One token through prefiller p and a decoder, the real path (degrade.py): None
        when its KV-ready notifications arrived, else why not."""
        try:
            d = self.svc.pool.pick_decoder()
        except NoBackendError as exc:
            return str(exc)
        req_id = f"probe-{uuid.uuid4().hex}"
        # A probe has no client request, and needs none: one token, no stream, so the answer
        # is whole after the prefill and no stage prepares a response on `ex.request`.
        # (Typing it Optional would add a check on every client request's hot path.)
        ex = Exchange(request=None, req_id=req_id, route="completions",  # type: ignore[arg-type]  # see above
                      timeline=RequestTimeline(_PROBE_HUB, req_id, "probe"),
                      body={"prompt": "pdtui kv probe", "max_tokens": 1, "temperature": 0})
        try:
            await self._run(ex, p, d, 1)
        except StageError as exc:
            return exc.message
        finally:
            self.svc.waiters.forget(ex.kv_req_id)
        return None


# Probe requests are not client traffic: their timelines go nowhere.
_PROBE_HUB = TimelineHub(history=0)
