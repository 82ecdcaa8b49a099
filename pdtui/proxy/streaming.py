"""Reading a backend's SSE stream and writing one to the client."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from pdtui.proxy.errors import StageError, stage_timeout

DONE = b"[DONE]"
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


# The stream's last event, whole (its blank line included), at the start of a line.
_DONE_EVENT = re.compile(rb"(?:^|\n)data: ?\[DONE\]\r?\n\r?\n")
_DONE_TAIL = 32
_MAX_LINE = 16 * 1024 * 1024  # more than the longest form of that event, so a split one is still seen


class DoneWatch:
    """Tells, chunk by chunk, when raw SSE bytes relayed as they are have carried the
    `data: [DONE]` event, which may be split over chunks. After it nothing is left to
    relay: vLLM may keep its end of the stream open a little longer, and waiting for that
    only gives the client time to hang up first."""

    def __init__(self) -> None:
        self._tail = b"\n"  # a stream that starts with the event still matches `^|\n`

    def feed(self, chunk: bytes) -> bool:
        window = self._tail + chunk
        if _DONE_EVENT.search(window):
            return True
        self._tail = window[-_DONE_TAIL:]
        return False


async def iter_sse_batches(resp: aiohttp.ClientResponse, *, stage: str, backend: str,
                           timeout_s: float) -> AsyncIterator[list[bytes]]:
    """The `data:` payloads of an SSE response, a list per read from the socket: the
    events that arrived together, so the caller can relay them in one write. Timeouts
    and drops become StageErrors."""
    content = resp.content
    tail = b""
    try:
        while True:
            chunk = await content.readany()
            if not chunk:
                break
            if tail:
                chunk = tail + chunk
            lines = chunk.split(b"\n")
            tail = lines.pop()  # an incomplete last line waits for the next read
            if len(tail) > _MAX_LINE:
                raise ValueError(f"an SSE line longer than {_MAX_LINE} bytes")
            batch = [line[5:].strip() for line in lines if line.startswith(b"data:")]
            if batch:
                yield batch
    except asyncio.TimeoutError:
        raise stage_timeout(stage, backend, timeout_s, "the next streamed event") from None
    except (aiohttp.ClientError, ConnectionError, ValueError) as exc:
        raise StageError(502, stage, backend, f"{stage}: stream from {backend} broke: {exc}",
                         "backend_error") from None
    if tail.startswith(b"data:"):
        yield [tail[5:].strip()]


# One encoder: json.dumps with any argument but the object builds a new one per call.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def sse_event(obj: dict) -> bytes:
    return b"data: " + _COMPACT.encode(obj).encode() + b"\n\n"


def sse_raw(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


class CoalescingResponse(web.StreamResponse):
    """A stream whose header block goes out with its first body bytes: one send, not two
    (aiohttp's switch for that; without it the headers are just sent on their own)."""

    _send_headers_immediately = False


async def start_sse(request: web.Request, req_id: str) -> web.StreamResponse:
    resp = CoalescingResponse(status=200, headers={**SSE_HEADERS, "X-Request-Id": req_id})
    await resp.prepare(request)
    return resp


# How long to wait, once the client has the whole answer, for the backend's end of a
# stream that carried `[DONE]`: it normally follows at once (vLLM/uvicorn end the chunked
# body right after it), and a stream read to its end leaves a kept-alive connection, where
# one closed mid-stream costs a new connection (connect, accept, close) per request.
TAIL_WAIT_S = 0.05
# After this many streams in a row that stayed open past TAIL_WAIT_S, a backend's streams
# are closed at `[DONE]` without waiting (it keeps them open: waiting only costs time).
TAIL_WAIT_GIVE_UP = 3


async def finish_backend_response(resp: aiohttp.ClientResponse, ok: bool,
                                  backend=None) -> None:
    """Let go of a backend's streamed response. A connection is only reused when its
    response was read to the end: after a whole answer, the end of the stream is awaited
    briefly (TAIL_WAIT_S; `backend.slow_tails` counts the misses); one left mid-stream (a
    failure, or a backend that keeps streams open) is closed, which for a failure also
    makes vLLM stop generating."""
    content = resp.content
    if ok and not content.is_eof() and (backend is None or
                                        backend.slow_tails < TAIL_WAIT_GIVE_UP):
        try:
            async with asyncio.timeout(TAIL_WAIT_S):
                await content.wait_eof()
        except TimeoutError:
            if backend is not None:
                backend.slow_tails += 1
        except (aiohttp.ClientError, ConnectionError):
            pass
        except BaseException:  # cancelled (the client hung up after its answer)
            resp.close()
            raise
        else:
            if backend is not None:
                backend.slow_tails = 0
    if ok and content.is_eof():
        resp.release()
    else:
        resp.close()
