"""The proxy's HTTP front door (aiohttp): routes, request lifecycle, error answers."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
from typing import Any

import aiohttp
from aiohttp import web

from pdtui.proxy.backends import NoBackendError
from pdtui.proxy.config import ClientLimits, ProxyConfig
from pdtui.proxy.errors import BackendUnreachable, StageError, bad_request
from pdtui.proxy.exchange import Exchange
from pdtui.proxy.guard import ConnectionGuard, middleware_for
from pdtui.proxy.lmcache_flow import LmcachePdFlow
from pdtui.proxy.metrics import STAGES
from pdtui.proxy.nixl_flow import NixlFlow
from pdtui.proxy.proxylog import access_line
from pdtui.proxy.resources import MemoryTrimmer
from pdtui.proxy.service import ProxyService
from pdtui.proxy.timeline import RequestTimeline

log = logging.getLogger(__name__)

SERVICE_KEY: web.AppKey[ProxyService] = web.AppKey("pdtui_proxy_service", ProxyService)
GUARD_KEY: web.AppKey[ConnectionGuard] = web.AppKey("pdtui_proxy_guard", ConnectionGuard)
EVENTS_HEARTBEAT_S = 15.0


def build_app(config: ProxyConfig, guard: ConnectionGuard | None = None,
              backend_connections: int = 0) -> web.Application:
    service = ProxyService(config, backend_connections=backend_connections)
    app = web.Application(client_max_size=config.client.max_body_bytes,
                          middlewares=[middleware_for(guard)] if guard is not None else [])
    app[SERVICE_KEY] = service
    if guard is not None:
        app[GUARD_KEY] = guard
    flow = LmcachePdFlow(service) if config.mode == "lmcache-pd" else NixlFlow(service)
    service.flow = flow
    trimmer = MemoryTrimmer()

    async def completions(request: web.Request) -> web.StreamResponse:
        return _close_if_large(request, await _proxy(request, service, flow, "completions",
                                                     trimmer))

    async def chat(request: web.Request) -> web.StreamResponse:
        return _close_if_large(request, await _proxy(request, service, flow, "chat", trimmer))

    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/health", _health)
    app.router.add_post("/backends/check", _check_backends)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/events", _events)

    async def on_startup(app: web.Application) -> None:
        await service.start()

    async def on_cleanup(app: web.Application) -> None:
        trimmer.cancel()
        await service.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


async def _proxy(request: web.Request, svc: ProxyService, flow, route: str,
                 trimmer: MemoryTrimmer) -> web.StreamResponse:
    req_id = new_request_id()
    tl = RequestTimeline(svc.hub, req_id, route)
    tl.start("request", detail={"mode": svc.config.mode})
    ex = Exchange(request=request, req_id=req_id, route=route, timeline=tl)
    svc.metrics.requests_in_flight += 1
    outcome = "ok"
    status = 0
    body_bytes = 0
    p = d = None
    try:
        ex.body, body_bytes = await _read_body(request, svc.config.client)
        sticky = request.headers.get(svc.config.sticky_header) if svc.config.sticky_header else None
        tried: list[str] = []
        while True:
            try:
                p, d = svc.pool.pick(sticky, exclude=set(tried))
            except NoBackendError as exc:
                msg = str(exc)
                if tried:
                    msg += f" (unreachable for this request: {', '.join(tried)})"
                raise StageError(503, "route", None, msg, "no_backend") from None
            tl.mark("route", None, {"prefiller": p.url, "decoder": d.url})
            try:
                out = await flow.run(ex, p, d)
                status = out.status
                return out
            except BackendUnreachable as exc:
                if ex.response is not None:
                    raise
                # Nothing was sent to the client yet: try the request again elsewhere.
                log.warning("request %s: %s; retrying on another backend", req_id, exc.message)
                tried.append(exc.backend or "?")
                ex.attempt += 1
    except StageError as exc:
        outcome = exc.outcome
        status = exc.status if ex.response is None else ex.response.status
        return await _error_answer(ex, exc)
    except asyncio.CancelledError:
        # aiohttp cancels the handler when the client disconnects; after the whole answer
        # (a stream's [DONE]) that is a client done with us, not a cancelled request.
        outcome = "ok" if ex.answered else "cancelled"
        status = ex.response.status if ex.response is not None else 499
        raise
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        # the client went away while we were writing to it
        outcome = "ok" if ex.answered else "cancelled"
        status = ex.response.status if ex.response is not None else 499
        return ex.response or web.Response(status=499)
    except RecursionError:
        # nested just shallow enough to parse, too deep to encode again for a backend
        outcome = "client_error"
        status = 400 if ex.response is None else ex.response.status
        return await _error_answer(ex, bad_request("the request body is JSON nested too "
                                                   "deeply to forward"))
    except Exception as exc:  # a bug must answer the client, not drop it
        log.exception("request %s failed", req_id)
        outcome = "backend_error"
        status = 500 if ex.response is None else ex.response.status
        return await _error_answer(ex, StageError(500, "proxy", None,
                                                  f"internal proxy error: {exc!r}", "proxy_error"))
    finally:
        svc.metrics.requests_in_flight -= 1
        tl.mark("total")
        durations = tl.durations
        for stage in STAGES:
            seconds = durations.get(stage)
            if seconds is not None:
                svc.metrics.observe_stage(stage, seconds)
        svc.metrics.count_request(route, outcome)
        tl.end("request", state="end" if outcome == "ok" else "error",
               detail={"outcome": outcome})
        access_line(req_id, route, p.url if p else None, d.url if d else None, status, outcome,
                    {k: v for k, v in durations.items() if k in STAGES})
        trimmer.after_request(body_bytes)


# Request ids: 32 hex digits, a random per-process prefix and a counter. Unique like a
# uuid4 (a restarted proxy draws another prefix) without a getrandom() call per request.
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def _close_if_large(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
    """After a huge body, end the connection with the response: aiohttp keeps a read
    buffer the size of the largest request for as long as the connection lives, which
    would hold ~the body's size in memory until the client goes away."""
    if request.get(_LARGE_BODY):
        resp.force_close()
    return resp


_LARGE_BODY = "pdtui_large_body"


async def _read_body(request: web.Request, limits: ClientLimits) -> tuple[dict, int]:
    try:
        if request.content.is_eof():  # all in already (the usual small body): no timer
            raw = await request.read()
        else:
            async with asyncio.timeout(limits.body_timeout_s):
                raw = await request.read()
    except TimeoutError:
        raise StageError(408, "request", None,
                         f"the request body did not arrive within {limits.body_timeout_s:g} s "
                         "(--client-body-timeout)", "invalid_request_error") from None
    except web.HTTPRequestEntityTooLarge:
        raise StageError(413, "request", None,
                         f"the request body is larger than {limits.max_body_bytes} bytes "
                         "(--max-body-bytes)", "invalid_request_error") from None
    if len(raw) >= MemoryTrimmer.LARGE_BYTES:
        request[_LARGE_BODY] = True
    try:
        body = json.loads(_text(raw))
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise bad_request("the request body is JSON nested too deeply to parse") from None
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a JSON object, got {type(body).__name__}")
    return body, len(raw)


def _text(raw: bytes) -> str | bytes:
    """UTF-8 decoded (the usual body; json.loads of bytes first guesses the encoding in
    Python), or the bytes as they are for json.loads to read UTF-16/32 or to report."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


async def _error_answer(ex: Exchange, exc: StageError) -> web.StreamResponse:
    body = exc.body(ex.req_id)
    if ex.response is None:
        return web.json_response(body, status=exc.status, headers={"X-Request-Id": ex.req_id})
    # The stream has started (status 200 is gone): report in-band, as vLLM does.
    out = ex.response
    try:
        await out.write_eof(b"data: " + json.dumps(body).encode() + b"\n\ndata: [DONE]\n\n")
    except (ConnectionResetError, aiohttp.ClientConnectionResetError, RuntimeError):
        pass
    return out


def _health_body(svc: ProxyService, request: web.Request) -> dict:
    body: dict[str, Any] = {
        "status": "ok" if svc.pool.ready() else "unavailable",
        "mode": svc.config.mode,
        "prefillers": [b.as_dict() for b in svc.pool.prefillers],
        "decoders": [b.as_dict() for b in svc.pool.decoders],
        "health_rounds": svc.health.rounds if svc.health else 0,
        "kv_waiting": len(svc.waiters),
        "kv_early": svc.waiters.early_count,
        "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
    }
    if svc.listener is not None:
        body["zmq"] = svc.listener.endpoint
    guard = request.app.get(GUARD_KEY)
    if guard is not None:
        body["clients"] = guard.stats()
    return body


async def _health(request: web.Request) -> web.Response:
    svc = request.app[SERVICE_KEY]
    ready = svc.pool.ready()
    return web.json_response(_health_body(svc, request), status=200 if ready else 503)


async def _check_backends(request: web.Request) -> web.Response:
    """POST /backends/check[?url=URL&url=URL2]: health-check these backends (default: all)
    now rather than at the next round. 200 when every one checked is routable, else 503;
    the body is /health's plus `checked`. Loopback clients only: it is a control request."""
    peer = request.remote or ""
    if not (peer.startswith("127.") or peer in ("::1", "localhost")):
        return web.json_response(StageError(403, "check", None, "POST /backends/check is "
                                            "only served to loopback clients",
                                            "invalid_request_error").body(None), status=403)
    svc = request.app[SERVICE_KEY]
    urls = request.query.getall("url", [])
    targets = []
    for url in urls:
        backend = svc.pool.find(url)
        if backend is None:
            known = ", ".join(b.url for b in svc.pool.all)
            return web.json_response(bad_request(
                f"url={url!r} is not one of this proxy's backends ({known})").body(None),
                status=400)
        targets.append(backend)
    targets = targets or svc.pool.all
    await svc.check_now(targets)
    body = _health_body(svc, request)
    body["checked"] = [{"url": b.url, "role": b.role, "state": b.state,
                        "routable": b.routable, "last_error": b.last_error} for b in targets]
    ok = all(b.routable and b.state != "unknown" for b in targets)
    return web.json_response(body, status=200 if ok else 503)


async def _models(request: web.Request) -> web.Response:
    """Forwarded from a decoder (then a prefiller): they serve the same model."""
    svc = request.app[SERVICE_KEY]
    assert svc.session is not None
    errors = []
    candidates = [b for b in svc.pool.decoders + svc.pool.prefillers if b.routable]
    for backend in candidates:
        try:
            async with svc.session.get(
                backend.url + "/v1/models", headers=svc.auth_headers,
                timeout=aiohttp.ClientTimeout(total=svc.config.timeouts.tokenize_s),
            ) as resp:
                data = await resp.read()
                if resp.status == 200:
                    return web.Response(body=data, content_type="application/json")
                errors.append(f"{backend.url}: HTTP {resp.status}")
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            errors.append(f"{backend.url}: {exc or type(exc).__name__}")
    err = StageError(503, "models", None,
                     "no backend answered GET /v1/models"
                     + (f": {'; '.join(errors)}" if errors else " (none healthy)"), "no_backend")
    return web.json_response(err.body(None), status=503)


async def _metrics(request: web.Request) -> web.Response:
    svc = request.app[SERVICE_KEY]
    return web.Response(body=svc.metrics.render(), headers={"Content-Type": svc.metrics.content_type})


async def _events(request: web.Request) -> web.StreamResponse:
    """Timeline events as JSON lines (default) or SSE (`?format=sse` or Accept).

    The kept history is replayed first (`?history=0` skips it), then live events.
    """
    svc = request.app[SERVICE_KEY]
    sse = request.query.get("format") == "sse" or "text/event-stream" in request.headers.get(
        "Accept", "")
    replay = request.query.get("history", "1") not in ("0", "false", "no")
    out = web.StreamResponse(headers={
        "Content-Type": "text/event-stream" if sse else "application/x-ndjson",
        "Cache-Control": "no-cache",
    })
    sub = svc.hub.subscribe()
    try:
        await out.prepare(request)

        def frame(event: dict) -> bytes:
            line = json.dumps(event, separators=(",", ":")).encode()
            return b"data: " + line + b"\n\n" if sse else line + b"\n"

        if replay:
            history = svc.hub.history()
            if history:
                await out.write(b"".join(frame(e) for e in history))
        closed = asyncio.ensure_future(sub.closed.wait())
        try:
            while True:
                getter = asyncio.ensure_future(sub.queue.get())
                await asyncio.wait((getter, closed), timeout=EVENTS_HEARTBEAT_S,
                                   return_when=asyncio.FIRST_COMPLETED)
                if closed.done():
                    getter.cancel()
                    break
                if getter.done():
                    event = getter.result()
                else:
                    getter.cancel()
                    event = {"type": "heartbeat"}
                batch = [event]
                while not sub.queue.empty() and len(batch) < 256:
                    batch.append(sub.queue.get_nowait())
                await out.write(b"".join(frame(e) for e in batch))
        finally:
            closed.cancel()
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        pass
    finally:
        svc.hub.unsubscribe(sub)
    return out
