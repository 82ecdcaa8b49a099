"""One completion request through the proxy, streamed, timed from the client's side.

    async with aiohttp.ClientSession() as session:
        result = await stream_completion(session, "http://127.0.0.1:9100", prompt="hi",
                                         max_tokens=32, on_text=print)

`on_text(piece)` is called with each piece of text as it arrives (the playground shows
the answer growing). TTFT is the time from sending to the first non-empty text piece;
ITL are the gaps between successive text pieces (one SSE event is one token for vLLM and
the simulated engine). Failures never raise: `RequestResult.error` says what went wrong
("HTTP 503: no healthy decoder", "connection refused", "timed out after 60 s").
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from collections.abc import Callable

import aiohttp

__all__ = ["RequestResult", "first_model", "stream_completion"]


@dataclass
class RequestResult:
    req_id: str | None = None  # the proxy's X-Request-Id (keys GET /events)
    status: int | None = None
    text: str = ""
    started_at: float = 0.0  # unix time the request was sent
    ttft_s: float | None = None
    piece_times_s: list[float] = field(default_factory=list)  # since sending, one per text piece
    output_tokens: int | None = None  # usage.completion_tokens, else the number of pieces
    prompt_tokens: int | None = None
    duration_s: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def itl_s(self) -> list[float]:
        t = self.piece_times_s
        return [b - a for a, b in zip(t, t[1:])]


async def first_model(session: aiohttp.ClientSession, proxy_url: str, timeout_s: float = 10.0) -> str:
    """The first model id of `GET /v1/models` (the served model name)."""
    url = proxy_url.rstrip("/") + "/v1/models"
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
        body = await resp.text()
        if resp.status != 200:
            raise RuntimeError(f"GET {url} answered HTTP {resp.status}: {body[:200]}")
    try:
        return json.loads(body)["data"][0]["id"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise RuntimeError(f"GET {url} did not list a model: {body[:200]}") from None


def _error_text(status: int, body: str) -> str:
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body.strip()[:300]
    return f"HTTP {status}: {message}"


async def stream_completion(
    session: aiohttp.ClientSession,
    proxy_url: str,
    *,
    prompt: str,
    max_tokens: int,
    model: str | None = None,
    on_text: Callable[[str], None] | None = None,
    timeout_s: float = 120.0,
    ignore_eos: bool = True,
) -> RequestResult:
    result = RequestResult(started_at=time.time())
    t0 = time.perf_counter()
    try:
        if model is None:
            model = await first_model(session, proxy_url)
        body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "stream": True,
                "stream_options": {"include_usage": True}}
        if ignore_eos:
            body["ignore_eos"] = True  # a load run wants exactly max_tokens tokens
        url = proxy_url.rstrip("/") + "/v1/completions"
        async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            result.status = resp.status
            result.req_id = resp.headers.get("X-Request-Id")
            if resp.status != 200:
                result.error = _error_text(resp.status, await resp.text())
                return result
            async for raw in resp.content:
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    break
                try:
                    event = json.loads(payload)
                except ValueError:
                    result.error = f"unreadable stream event: {payload[:200]!r}"
                    return result
                if "error" in event:
                    err = event["error"]
                    result.error = err.get("message", str(err)) if isinstance(err, dict) else str(err)
                    return result
                usage = event.get("usage")
                if usage:
                    result.output_tokens = usage.get("completion_tokens")
                    result.prompt_tokens = usage.get("prompt_tokens")
                for choice in event.get("choices") or ():
                    piece = choice.get("text") or ""
                    if not piece:
                        continue
                    now = time.perf_counter() - t0
                    if result.ttft_s is None:
                        result.ttft_s = now
                    result.piece_times_s.append(now)
                    result.text += piece
                    if on_text is not None:
                        on_text(piece)
        if result.output_tokens is None:
            result.output_tokens = len(result.piece_times_s)
    except asyncio.TimeoutError:
        result.error = f"timed out after {timeout_s:g} s"
    except aiohttp.ClientConnectorError as exc:
        result.error = f"cannot connect to {proxy_url}: {exc.os_error.strerror if exc.os_error else exc}"
    except (aiohttp.ClientError, RuntimeError, OSError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.duration_s = time.perf_counter() - t0
    return result
