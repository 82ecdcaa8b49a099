"""The OpenAI-compatible HTTP surface of the simulated engine (what vLLM's API server answers)."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from contextlib import aclosing
from typing import Any

from aiohttp import web

from pdtui.sim import tokenizer
from pdtui.sim.engine import Generation, RequestError, SimEngine
from pdtui.sim.metrics import CONTENT_TYPE
from pdtui.sim.startup import VLLM_VERSION

ENGINE_KEY = web.AppKey("engine", SimEngine)
DEFAULT_COMPLETION_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


def _error(message: str, status: int = 400, kind: str = "BadRequestError", param: str | None = None) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": kind, "param": param, "code": status}}, status=status
    )


@web.middleware
async def _access_log_and_hang(request: web.Request, handler):
    engine = request.app[ENGINE_KEY]
    if engine.hung:
        # A wedged engine accepts connections and never answers, like a stuck vLLM.
        await asyncio.Event().wait()
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        if status in (404, 405):
            # FastAPI's shape, which vLLM answers for unknown routes and wrong methods.
            return web.json_response({"detail": exc.reason}, status=status)
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away mid-request
        raise
    except Exception as exc:  # never let one bad request take the server down
        engine.log.api("ERROR", "serving_engine.py:1021", f"Error in request handling: {exc!r}")
        status = 500
        return _error(f"internal error: {exc}", 500, "InternalServerError")
    finally:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        client = f"{peer[0]}:{peer[1]}" if peer else "-"
        reason = _reason(status)
        engine.log.access(client, request.method, request.path_qs, status, reason)
        resource = getattr(request.match_info.route, "resource", None)
        handler_name = resource.canonical if resource is not None else ""
        if handler_name and handler_name != "/metrics":
            engine.metrics.observe_http(handler_name, request.method, f"{status // 100}xx",
                                        time.monotonic() - started)


_REASONS: dict[int, str] = {499: "Client Closed Request"}


def _reason(status: int) -> str:
    """The reason phrase aiohttp gives `status` (kept per status, not a Response built per
    request to ask it)."""
    reason = _REASONS.get(status)
    if reason is None:
        reason = _REASONS[status] = web.Response(status=status).reason
    return reason


def _authorized(request: web.Request, api_key: str | None) -> bool:
    """vLLM's AuthenticationMiddleware: with an API key, only paths under /v1 need
    `Authorization: Bearer <key>` (OPTIONS excepted); /health, /metrics, /tokenize stay open."""
    if not api_key or request.method == "OPTIONS" or not request.path.startswith("/v1"):
        return True
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), api_key.encode())


@web.middleware
async def _authenticate(request: web.Request, handler):
    if not _authorized(request, request.app[ENGINE_KEY].settings.api_key):
        return web.json_response({"error": "Unauthorized"}, status=401)
    return await handler(request)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RequestError("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    return body


def _check_model(engine: SimEngine, body: dict[str, Any]) -> None:
    model = body.get("model")
    if model is not None and model not in (engine.settings.served_model_name, engine.settings.model):
        raise RequestError(f"The model `{model}` does not exist.", 404, "NotFoundError")


_INT = frozenset({int})


def _prompts(body: dict[str, Any]) -> list[list[int]]:
    """`prompt` as a string, token ids, or a batch of either, as vLLM accepts it."""
    if "prompt" not in body:
        raise RequestError("prompt: field required (a string, a list of token ids, or a list of those)")
    prompt = body["prompt"]
    if isinstance(prompt, str):
        return [tokenizer.encode(prompt)]
    if isinstance(prompt, list) and prompt and set(map(type, prompt)) <= _INT:  # ints, no bools
        return [list(prompt)]
    if isinstance(prompt, list) and prompt:
        batch = []
        for index, item in enumerate(prompt):
            if isinstance(item, str):
                batch.append(tokenizer.encode(item))
            elif isinstance(item, list) and item and all(isinstance(t, int) for t in item):
                batch.append(list(item))
            else:
                raise RequestError(f"prompt[{index}] must be a string or a non-empty list of token ids")
        return batch
    raise RequestError("prompt must be a non-empty string or list of token ids")


def _max_tokens(body: dict[str, Any], default: int) -> int:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RequestError(f"max_tokens must be an integer >= 1, got {value!r}", param="max_tokens")
    return value


def _kv_params(body: dict[str, Any]) -> dict[str, Any] | None:
    params = body.get("kv_transfer_params")
    if params is None:
        return None
    if not isinstance(params, dict):
        raise RequestError("kv_transfer_params must be an object", param="kv_transfer_params")
    return params


def _usage(prompt_tokens: int, completion_tokens: int, cached: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached} if cached else None,
    }


async def _sse_start(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        status=200, headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    return response


async def _sse(response: web.StreamResponse, payload: dict[str, Any] | str) -> None:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    await response.write(f"data: {data}\n\n".encode())


class Routes:
    def __init__(self, engine: SimEngine) -> None:
        self.engine = engine
        self.created = int(time.time())

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": VLLM_VERSION})

    async def ping(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def models(self, request: web.Request) -> web.Response:
        s = self.engine.settings
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {
                        "id": s.served_model_name,
                        "object": "model",
                        "created": self.created,
                        "owned_by": "vllm",
                        "root": s.model,
                        "parent": None,
                        "max_model_len": s.max_model_len,
                        "permission": [],
                    }
                ],
            }
        )

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.engine.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def tokenize(self, request: web.Request) -> web.Response:
        try:
            body = await _json_body(request)
            _check_model(self.engine, body)
            add_special = body.get("add_special_tokens", True)
            if "messages" in body:
                tokens = tokenizer.encode(tokenizer.render_chat(body["messages"]), bool(add_special))
            elif isinstance(body.get("prompt"), str):
                tokens = tokenizer.encode(body["prompt"], bool(add_special))
            elif isinstance(body.get("prompt"), list) and all(isinstance(t, int) for t in body["prompt"]):
                tokens = list(body["prompt"])
            else:
                raise RequestError("tokenize needs `prompt` (string or token ids) or `messages`")
        except RequestError as exc:
            return _error(str(exc), exc.status, exc.kind, exc.param)
        except ValueError as exc:
            return _error(str(exc))
        return web.json_response(
            {"count": len(tokens), "max_model_len": self.engine.settings.max_model_len, "tokens": tokens, "token_strs": None}
        )

    async def detokenize(self, request: web.Request) -> web.Response:
        try:
            body = await _json_body(request)
        except RequestError as exc:
            return _error(str(exc))
        tokens = body.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            return _error("tokens must be a list of token ids")
        return web.json_response({"prompt": tokenizer.decode(tokens)})

    # ---------------------------------------------------------------- generation ----
    async def completions(self, request: web.Request) -> web.StreamResponse:
        engine = self.engine
        try:
            body = await _json_body(request)
            _check_model(engine, body)
            prompts = _prompts(body)
            max_tokens = _max_tokens(body, DEFAULT_COMPLETION_MAX_TOKENS)
            params = _kv_params(body)
            for prompt in prompts:
                engine.check_fits(len(prompt), max_tokens)
        except RequestError as exc:
            return _error(str(exc), exc.status, exc.kind, exc.param)
        request_id = engine.new_request_id("cmpl")
        gens = [Generation(request_id, prompt, max_tokens, params) for prompt in prompts]
        model = engine.settings.served_model_name
        created = int(time.time())
        if body.get("stream"):
            return await self._stream_completion(request, body, gens, model, created)
        try:
            for gen in gens:
                async for _ in engine.run(gen):
                    pass
        except RequestError as exc:
            return _error(str(exc), exc.status, exc.kind, exc.param)
        choices = [
            {
                "index": i,
                "text": tokenizer.decode(gen.output_ids),
                "logprobs": None,
                "finish_reason": gen.finish_reason,
                "stop_reason": None,
                "prompt_logprobs": None,
            }
            for i, gen in enumerate(gens)
        ]
        return web.json_response(
            {
                "id": request_id,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": choices,
                "usage": _usage(
                    sum(len(g.prompt_ids) for g in gens),
                    sum(len(g.output_ids) for g in gens),
                    sum(g.cached_tokens for g in gens),
                ),
                "kv_transfer_params": gens[0].kv_transfer_params_out,
            }
        )

    async def _stream_completion(
        self, request: web.Request, body: dict[str, Any], gens: list[Generation], model: str, created: int
    ) -> web.StreamResponse:
        request_id = gens[0].request_id
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        response: web.StreamResponse | None = None

        def chunk(index: int, text: str, finish: str | None) -> dict[str, Any]:
            return {
                "id": request_id,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [
                    {"index": index, "text": text, "logprobs": None, "finish_reason": finish, "stop_reason": None}
                ],
            }

        try:
            for index, gen in enumerate(gens):
                # aclosing: a client that hangs up mid-stream frees the request's KV at once.
                async with aclosing(self.engine.run(gen)) as tokens:
                    async for token_id in tokens:
                        is_last = len(gen.output_ids) >= gen.max_tokens
                        if response is None:
                            response = await _sse_start(request)
                        await _sse(response, chunk(index, tokenizer.token_text(token_id), "length" if is_last else None))
        except RequestError as exc:
            if response is None:
                return _error(str(exc), exc.status, exc.kind, exc.param)
            await _sse(response, {"error": {"message": str(exc), "type": exc.kind, "code": exc.status}})
        if response is None:
            response = await _sse_start(request)
        if include_usage:
            await _sse(
                response,
                {
                    "id": request_id, "object": "text_completion", "created": created, "model": model,
                    "choices": [],
                    "usage": _usage(sum(len(g.prompt_ids) for g in gens), sum(len(g.output_ids) for g in gens),
                                    sum(g.cached_tokens for g in gens)),
                },
            )
        await _sse(response, "[DONE]")
        await response.write_eof()
        return response

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        engine = self.engine
        try:
            body = await _json_body(request)
            _check_model(engine, body)
            if "messages" not in body:
                raise RequestError("messages: field required")
            try:
                prompt = tokenizer.encode(tokenizer.render_chat(body["messages"]))
            except ValueError as exc:
                raise RequestError(str(exc), param="messages") from None
            max_tokens = _max_tokens(body, max(1, engine.settings.max_model_len - len(prompt)))
            params = _kv_params(body)
            engine.check_fits(len(prompt), max_tokens)
        except RequestError as exc:
            return _error(str(exc), exc.status, exc.kind, exc.param)
        request_id = engine.new_request_id("chatcmpl")
        gen = Generation(request_id, prompt, max_tokens, params)
        model = engine.settings.served_model_name
        created = int(time.time())
        if body.get("stream"):
            return await self._stream_chat(request, body, gen, model, created)
        try:
            async for _ in engine.run(gen):
                pass
        except RequestError as exc:
            return _error(str(exc), exc.status, exc.kind, exc.param)
        return web.json_response(
            {
                "id": request_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": tokenizer.decode(gen.output_ids).lstrip(),
                                    "refusal": None, "tool_calls": [], "reasoning_content": None},
                        "logprobs": None,
                        "finish_reason": gen.finish_reason,
                        "stop_reason": None,
                    }
                ],
                "usage": _usage(len(prompt), len(gen.output_ids), gen.cached_tokens),
                "prompt_logprobs": None,
                "kv_transfer_params": gen.kv_transfer_params_out,
            }
        )

    async def _stream_chat(
        self, request: web.Request, body: dict[str, Any], gen: Generation, model: str, created: int
    ) -> web.StreamResponse:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            return {
                "id": gen.request_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }

        response: web.StreamResponse | None = None
        first = True
        try:
            async with aclosing(self.engine.run(gen)) as tokens:
                async for token_id in tokens:
                    is_last = len(gen.output_ids) >= gen.max_tokens
                    if response is None:
                        response = await _sse_start(request)
                        await _sse(response, chunk({"role": "assistant", "content": ""}, None))
                    text = tokenizer.token_text(token_id)
                    await _sse(response, chunk({"content": text.lstrip() if first else text},
                                               "length" if is_last else None))
                    first = False
        except RequestError as exc:
            if response is None:
                return _error(str(exc), exc.status, exc.kind, exc.param)
            await _sse(response, {"error": {"message": str(exc), "type": exc.kind, "code": exc.status}})
        if response is None:
            response = await _sse_start(request)
        if include_usage:
            await _sse(response, {"id": gen.request_id, "object": "chat.completion.chunk", "created": created,
                                  "model": model, "choices": [],
                                  "usage": _usage(len(gen.prompt_ids), len(gen.output_ids), gen.cached_tokens)})
        await _sse(response, "[DONE]")
        await response.write_eof()
        return response


def build_app(engine: SimEngine) -> web.Application:
    # Authentication inside the access log: a refused request is logged with its 401, as vLLM does.
    app = web.Application(middlewares=[_access_log_and_hang, _authenticate], client_max_size=64 * 1024**2)
    app[ENGINE_KEY] = engine
    routes = Routes(engine)
    app.router.add_get("/health", routes.health)
    app.router.add_get("/version", routes.version)
    app.router.add_get("/ping", routes.ping)
    app.router.add_post("/ping", routes.ping)
    app.router.add_get("/v1/models", routes.models)
    app.router.add_get("/metrics", routes.metrics)
    app.router.add_post("/tokenize", routes.tokenize)
    app.router.add_post("/detokenize", routes.detokenize)
    app.router.add_post("/v1/completions", routes.completions)
    app.router.add_post("/v1/chat/completions", routes.chat_completions)
    return app
