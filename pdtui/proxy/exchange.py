"""One client request as it moves through a flow, and the stage helper they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar
from collections.abc import Awaitable

from aiohttp import web

from pdtui.proxy.timeline import RequestTimeline

T = TypeVar("T")


@dataclass
class Exchange:
    request: web.Request
    req_id: str
    route: str  # "completions" | "chat"
    timeline: RequestTimeline
    body: dict = field(default_factory=dict)
    # Set once the client's response has started: after that errors go in-band.
    response: web.StreamResponse | None = None
    attempt: int = 0  # > 0 when retried on other backends after one was unreachable
    # True once the client has been sent the whole answer (a stream's `data: [DONE]`):
    # a client that hangs up after that, before our end of the response, got what it asked
    # for, so the request still counts as ok.
    answered: bool = False

    @property
    def kv_req_id(self) -> str:
        """The disagg_spec req_id: fresh per attempt, so a dead attempt's late
        notifications can never count for the retry."""
        return self.req_id if self.attempt == 0 else f"{self.req_id}.{self.attempt}"

    @property
    def is_chat(self) -> bool:
        return self.route == "chat"

    @property
    def wants_stream(self) -> bool:
        return bool(self.body.get("stream", False))

    @property
    def wants_usage_chunk(self) -> bool:
        opts = self.body.get("stream_options")
        return self.wants_stream and isinstance(opts, dict) and bool(opts.get("include_usage"))


async def staged(ex: Exchange, stage: str, backend: str | None, awaitable: Awaitable[T],
                 detail: dict | None = None) -> T:
    """Run one stage with start/end (or error) timeline events around it."""
    ex.timeline.start(stage, backend, detail)
    try:
        result = await awaitable
    except BaseException as exc:
        ex.timeline.end(stage, backend, {"error": str(exc) or type(exc).__name__}, state="error")
        raise
    ex.timeline.end(stage, backend)
    return result
