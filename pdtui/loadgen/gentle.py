"""A gentle background load for the demo: one short request at a time, about one a second.

The demo's figures (requests/s, tokens/s, KV transfers, kv_wait) move only with traffic;
`pdtui --demo` runs this as a job of the deployment (toggle on the cockpit) so that a new
user sees them move without a script. Failures are counted, never raised: the engines
may be restarting.
"""

from __future__ import annotations

import asyncio

import aiohttp

from pdtui.loadgen.client import stream_completion
from pdtui.loadgen.prompts import synthetic_prompt

__all__ = ["gentle_load"]


async def gentle_load(proxy_url: str, job, *, every_s: float = 1.0, prompt_tokens: int = 96,
                      output_tokens: int = 12) -> None:
    """Until cancelled; `job.count(i, result)` after each request (a telemetry Job)."""
    index = 0
    async with aiohttp.ClientSession() as session:
        while True:
            started = asyncio.get_running_loop().time()
            result = await stream_completion(session, proxy_url, prompt=synthetic_prompt(prompt_tokens, seed=index),
                                             max_tokens=output_tokens, timeout_s=30.0)
            job.count(index, result)
            index += 1
            await asyncio.sleep(max(0.1, every_s - (asyncio.get_running_loop().time() - started)))
