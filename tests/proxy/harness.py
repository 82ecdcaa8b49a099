"""Start an in-process proxy in front of fake engines, on free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import replace

import aiohttp

from pdtui.proxy.config import DecoderSpec, PrefillerSpec, ProxyConfig, Timeouts
from pdtui.proxy.server import RunningProxy
from tests.conftest import free_port
from tests.proxy.fakes import FakeEngine


@contextlib.asynccontextmanager
async def running_proxy(prefillers: list[FakeEngine], decoders: list[FakeEngine], *,
                        mode: str = "lmcache-pd", zmq_port: int | None = None,
                        tp: int = 1, **overrides):
    config = ProxyConfig(
        mode=mode,
        port=free_port(),
        zmq_port=zmq_port or free_port(),
        prefillers=tuple(PrefillerSpec(e.url) for e in prefillers),
        decoders=tuple(
            DecoderSpec(e.url, tuple(range(7300 + 10 * i, 7300 + 10 * i + tp)),
                        tuple(range(7400 + 10 * i, 7400 + 10 * i + tp)))
            for i, e in enumerate(decoders)
        ),
        health_interval_s=0.2,
        timeouts=overrides.pop("timeouts", Timeouts(tokenize_s=5, prefill_s=5, kv_s=5, decode_s=5)),
    )
    config = replace(config, **overrides)
    config.validate()
    proxy = RunningProxy(config)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@contextlib.asynccontextmanager
async def engines(*engines: FakeEngine):
    started = []
    try:
        for e in engines:
            await e.start()
            started.append(e)
        yield engines
    finally:
        for e in started:
            await e.stop()


async def wait_ready(session: aiohttp.ClientSession, url: str, timeout: float = 10.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with session.get(url + "/health") as resp:
            body = await resp.json()
            if resp.status == 200:
                return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"proxy not ready: {body}")
        await asyncio.sleep(0.05)


def sse_payloads(raw: bytes) -> list:
    """The JSON objects of an SSE body ('[DONE]' kept as a string)."""
    out = []
    for block in raw.decode().split("\n\n"):
        block = block.strip()
        if not block.startswith("data:"):
            continue
        data = block[5:].strip()
        out.append(data if data == "[DONE]" else json.loads(data))
    return out
