"""lmcache-pd mode: building the client's answer from P's first token and D's stream.

The client's stream opens as soon as the decoder has accepted the decode request (or,
with first_token_from_prefiller, as soon as the prefill answered): P's first token goes
out first, then D's events. Events that arrive together (one read from the decoder's
socket) go to the client in one write. Chat requests are re-wrapped as chat chunks;
usage counts P's token as a completion token, not a prompt token.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

from aiohttp import web

from pdtui.proxy.exchange import Exchange
from pdtui.proxy.streaming import DONE, sse_event, sse_raw, start_sse

DONE_EVENT = b"data: [DONE]\n\n"


def fix_usage(usage: dict) -> dict:
    """The decoder counted P's first token as prompt; the client asked for it as output."""
    out = dict(usage)
    if isinstance(out.get("prompt_tokens"), int):
        out["prompt_tokens"] -= 1
    if isinstance(out.get("completion_tokens"), int):
        out["completion_tokens"] += 1
    return out


def merge_logprobs(acc: dict | None, part: dict | None) -> dict | None:
    if not isinstance(part, dict):
        return acc
    if acc is None:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in part.items()}
    for key, value in part.items():
        if isinstance(value, list) and isinstance(acc.get(key), list):
            acc[key].extend(value)
    return acc


class StreamShaper:
    """Turns P's first token and D's completion events into the client's SSE events."""

    def __init__(self, ex: Exchange, prefill: dict, first_choice: dict) -> None:
        self.chat = ex.is_chat
        self.want_usage = ex.wants_usage_chunk
        self.prefill = prefill
        self.first_choice = first_choice
        self.created = prefill.get("created") or int(time.time())
        self.model = prefill.get("model")
        self.chat_id = f"chatcmpl-{ex.req_id}"

    def chat_chunk(self, delta: dict, finish=None, stop_reason=None) -> dict:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        if stop_reason is not None:
            choice["stop_reason"] = stop_reason
        return {"id": self.chat_id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [choice]}

    def head(self) -> bytes:
        first = self.first_choice
        if self.chat:
            return sse_event(self.chat_chunk({"role": "assistant", "content": ""})) + sse_event(
                self.chat_chunk({"content": first.get("text", "")}))
        return sse_event({
            "id": self.prefill.get("id"), "object": "text_completion", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "text": first.get("text", ""),
                         "logprobs": first.get("logprobs"), "finish_reason": None,
                         "stop_reason": None}],
            "usage": None,
        })

    def convert(self, payload: bytes, parts: list[bytes]) -> None:
        if not self.chat:
            # vLLM puts "usage": null in every chunk but the last when usage is asked for
            # (the decode request asks): those go out as they came, unparsed.
            if b'"usage"' not in payload or b'"usage":null' in payload \
                    or b'"usage": null' in payload:
                parts.append(sse_raw(payload))
                return
            obj = json.loads(payload)
            usage = obj.get("usage")
            if usage:
                if not obj.get("choices") and not self.want_usage:
                    return  # the usage-only chunk we asked for ourselves
                obj["usage"] = fix_usage(usage) if self.want_usage else None
            parts.append(sse_event(obj))
            return
        obj = json.loads(payload)
        for c in obj.get("choices") or ():
            parts.append(sse_event(self.chat_chunk(
                {"content": c.get("text", "")}, c.get("finish_reason"), c.get("stop_reason"))))
        usage = obj.get("usage")
        if usage and self.want_usage:
            parts.append(sse_event({"id": self.chat_id, "object": "chat.completion.chunk",
                                    "created": self.created, "model": self.model,
                                    "choices": [], "usage": fix_usage(usage)}))


async def open_client_stream(ex: Exchange, shaper: StreamShaper) -> web.StreamResponse:
    """Start the client's 200 stream with P's first token (once per request)."""
    if ex.response is None:
        out = ex.response = await start_sse(ex.request, ex.req_id)
        await out.write(shaper.head())
        ex.timeline.mark("ttft")
    return ex.response


async def relay_stream(ex: Exchange, shaper: StreamShaper,
                       batches: AsyncIterator[list[bytes]], on_first) -> web.StreamResponse:
    out = await open_client_stream(ex, shaper)
    first = True
    async for payloads in batches:
        if first:
            on_first()
            first = False
        parts: list[bytes] = []
        done = False
        for payload in payloads:
            if payload == DONE:
                done = True
                break
            shaper.convert(payload, parts)
        if done:
            break
        if parts:
            await out.write(b"".join(parts))
    else:
        parts = []
    if first:
        on_first()
    # The events read with [DONE], [DONE] itself and the end of the response: one send.
    parts.append(DONE_EVENT)
    await out.write_eof(b"".join(parts))
    ex.answered = True
    return out


async def collect(ex: Exchange, prefill: dict, first_choice: dict,
                  batches: AsyncIterator[list[bytes]], on_first) -> web.Response:
    """stream:false: one JSON body from P's first token and D's streamed events."""
    texts = [first_choice.get("text", "")]
    finish = stop_reason = usage = None
    logprobs = merge_logprobs(None, first_choice.get("logprobs"))
    first = True
    # up to [DONE], not to the decoder closing its stream, which may come later
    async for payloads in batches:
        if first:
            on_first()
            ex.timeline.mark("ttft")
            first = False
        done = False
        for payload in payloads:
            if payload == DONE:
                done = True
                break
            obj = json.loads(payload)
            for c in obj.get("choices") or ():
                texts.append(c.get("text", ""))
                logprobs = merge_logprobs(logprobs, c.get("logprobs"))
                if c.get("finish_reason") is not None:
                    finish, stop_reason = c.get("finish_reason"), c.get("stop_reason")
            if obj.get("usage"):
                usage = fix_usage(obj["usage"])
        if done:
            break
    if first:
        on_first()
        ex.timeline.mark("ttft")
    return web.json_response(
        whole_answer(ex, prefill, "".join(texts), finish, stop_reason, usage, logprobs),
        headers={"X-Request-Id": ex.req_id},
    )


def whole_answer(ex: Exchange, prefill: dict, text: str, finish, stop_reason,
                 usage, logprobs) -> dict:
    created = prefill.get("created") or int(time.time())
    if ex.is_chat:
        return {
            "id": f"chatcmpl-{ex.req_id}", "object": "chat.completion", "created": created,
            "model": prefill.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": None, "finish_reason": finish,
                         "stop_reason": stop_reason}],
            "usage": usage,
        }
    return {
        "id": prefill.get("id") or f"cmpl-{ex.req_id}", "object": "text_completion",
        "created": created, "model": prefill.get("model"),
        "choices": [{"index": 0, "text": text, "logprobs": logprobs,
                     "finish_reason": finish, "stop_reason": stop_reason}],
        "usage": usage,
    }
