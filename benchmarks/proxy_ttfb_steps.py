"""Where the proxy's time to first byte goes at concurrency 1, step by step.

Starts the same deployment as proxy_overhead.py (one simulated prefiller and decoder,
zero compute, the proxy in lmcache-pd mode), sends N streaming completions one at a time
through the proxy, and matches each with its timeline from the proxy's GET /events
(unix timestamps of every stage's start and end; the proxy and this client share the
machine's clock). Prints the median of every step from the client's send to its first
byte, and the decoder's own TTFB (N direct requests, first) for reference:

    python benchmarks/proxy_ttfb_steps.py [--requests 150] [--proxy-root DIR] [--sim-root DIR]

The steps outside tokenize / prefill / kv_wait are what proxy_overhead.py's TTFB target
("decoder's own TTFB + tokenize/prefill/kv_wait + 1 ms") charges to the proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import proxy_overhead as po  # noqa: E402

STEPS = (("request", "start"), ("tokenize", "start"), ("tokenize", "end"), ("prefill", "start"),
         ("prefill", "end"), ("kv_wait", "start"), ("kv_wait", "end"), ("decode", "start"),
         ("ttft", "end"))


async def first_byte(session: aiohttp.ClientSession, url: str, body: dict):
    t0 = time.time()
    first = None
    async with session.post(url, json=body) as resp:
        req_id = resp.headers.get("X-Request-Id")
        async for _ in resp.content.iter_any():
            if first is None:
                first = time.time()
    return req_id, t0, first


async def history(session: aiohttp.ClientSession, proxy: str) -> bytes:
    buf = b""
    async with session.get(proxy + "/events") as resp:
        while True:
            try:
                chunk = await asyncio.wait_for(resp.content.readany(), 0.5)
            except asyncio.TimeoutError:
                return buf  # history replayed; only live events would follow
            if not chunk:
                return buf
            buf += chunk


async def run(args) -> None:
    with tempfile.TemporaryDirectory(prefix="pdtui-ttfb-steps-") as tmp:
        proxy, decoder, procs = po.start_deployment(Path(tmp), Path(args.proxy_root).resolve(),
                                                    sim_root=Path(args.sim_root).resolve())
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
                await po.wait_ready(s, proxy, procs)
                prompt = "the quick brown fox jumps over the lazy dog " * 12
                body = {"model": po.MODEL, "max_tokens": 8, "stream": True, "prompt": prompt}
                async with s.post(decoder + "/tokenize", json={"prompt": prompt}) as r:
                    ids = (await r.json())["tokens"]
                await po.round_(s, proxy + "/v1/completions", body, 50, 1)  # warm-up
                direct = []
                for _ in range(args.requests):
                    _, t0, first = await first_byte(s, decoder + "/v1/completions",
                                                    {**body, "prompt": ids})
                    direct.append(first - t0)
                client = {}
                for _ in range(args.requests):
                    req_id, t0, first = await first_byte(s, proxy + "/v1/completions", body)
                    client[req_id] = (t0, first)
                raw = await history(s, proxy)
        finally:
            for p in procs:
                po.stop(p)
    marks: dict[str, dict] = {}
    for line in raw.splitlines():
        e = json.loads(line)
        if e.get("req_id") in client and "stage" in e:
            marks.setdefault(e["req_id"], {}).setdefault((e["stage"], e.get("state")), e["ts"])
    steps: dict[str, list[float]] = {}
    for req_id, m in marks.items():
        t0, first = client[req_id]
        points = [("client send", t0)] + [(" ".join(k), m[k]) for k in STEPS if k in m] + \
            [("client first byte", first)]
        for (a, ta), (b, tb) in zip(points, points[1:]):
            steps.setdefault(f"{a} -> {b}", []).append((tb - ta) * 1000)
        steps.setdefault("client TTFB", []).append((first - t0) * 1000)
    print(f"{len(marks)} requests through the proxy at concurrency 1 (proxy from "
          f"{args.proxy_root}, simulated engines from {args.sim_root}); medians:")
    for name, values in steps.items():
        print(f"  {name:36} {statistics.median(values):7.3f} ms")
    print(f"  {'decoder own TTFB (direct)':36} {statistics.median(direct) * 1000:7.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--proxy-root", default=str(po.REPO), metavar="DIR")
    parser.add_argument("--sim-root", default=str(po.REPO), metavar="DIR")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
