"""Reading a backend's SSE stream and writing one to the client."""

from __future__ import annotations

import asyncio
import json
from typing import AsyncIterator

import aiohttp
from aiohttp import web

from pdtui.proxy.errors import StageError, stage_timeout

DONE = b"[DONE]"
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


async def iter_sse_data(resp: aiohttp.ClientResponse, *, stage: str, backend: str,
                        timeout_s: float) -> AsyncIterator[bytes]:
    """Each `data:` payload of an SSE response; timeouts/drops become StageErrors."""
    try:
        async for line in resp.content:
            if line.startswith(b"data:"):
                yield line[5:].strip()
    except asyncio.TimeoutError:
        raise stage_timeout(stage, backend, timeout_s, "the next streamed event") from None
    except (aiohttp.ClientError, ValueError) as exc:
        raise StageError(502, stage, backend, f"{stage}: stream from {backend} broke: {exc}",
                         "backend_error") from None


def sse_event(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def sse_raw(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


async def start_sse(request: web.Request, req_id: str) -> web.StreamResponse:
    resp = web.StreamResponse(status=200, headers={**SSE_HEADERS, "X-Request-Id": req_id})
    await resp.prepare(request)
    return resp
