"""A small load run: N requests, C at a time, prompts of P tokens, answers of O tokens.

    spec = LoadSpec(requests=20, concurrency=4, prompt_tokens=256, output_tokens=32)
    summary = await run_load("http://127.0.0.1:9100", spec, on_result=progress)

The summary is what a demo or a smoke test of a real deployment needs: TTFT and ITL
p50/p99 (client side), output tokens/s over the wall time, and the errors by message.
Every request gets its own prompt (seeded by its index) so the prefix cache does not
turn the run into a cache benchmark.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from collections.abc import Callable

import aiohttp

from pdtui.loadgen.client import RequestResult, first_model, stream_completion
from pdtui.loadgen.prompts import synthetic_prompt
from pdtui.telemetry.derive import percentile

__all__ = ["LoadSpec", "LoadSummary", "percentile", "run_load", "summarize"]

_LIMITS = {"requests": (1, 100_000), "concurrency": (1, 1024), "prompt_tokens": (1, 1_000_000),
           "output_tokens": (1, 100_000)}


@dataclass(frozen=True)
class LoadSpec:
    requests: int = 10
    concurrency: int = 2
    prompt_tokens: int = 128
    output_tokens: int = 16
    model: str | None = None  # None: the first of GET /v1/models
    timeout_s: float = 120.0

    def problems(self) -> list[str]:
        """What is wrong with the numbers (empty when the spec can run)."""
        out = []
        for name, (low, high) in _LIMITS.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                out.append(f"{name} must be a whole number from {low} to {high}, got {value!r}")
        if not self.timeout_s > 0:
            out.append(f"timeout_s must be > 0, got {self.timeout_s!r}")
        return out


@dataclass
class LoadSummary:
    requests: int
    ok: int
    errors: int
    wall_s: float
    output_tokens: int
    tokens_per_s: float | None
    ttft_p50_s: float | None
    ttft_p99_s: float | None
    itl_p50_s: float | None
    itl_p99_s: float | None
    error_kinds: dict[str, int] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) pairs for a summary table; missing numbers are N/A."""

        def ms(v: float | None) -> str:
            return "N/A" if v is None else f"{v * 1000:.1f} ms"

        rows = [
            ("requests", f"{self.requests} ({self.ok} ok, {self.errors} failed)"),
            ("wall time", f"{self.wall_s:.2f} s"),
            ("TTFT p50", ms(self.ttft_p50_s)),
            ("TTFT p99", ms(self.ttft_p99_s)),
            ("ITL p50", ms(self.itl_p50_s)),
            ("ITL p99", ms(self.itl_p99_s)),
            ("output tokens", str(self.output_tokens)),
            ("tokens/s", "N/A" if self.tokens_per_s is None else f"{self.tokens_per_s:.1f}"),
        ]
        for message, count in sorted(self.error_kinds.items(), key=lambda kv: -kv[1]):
            rows.append((f"error x{count}", message))
        return rows


def summarize(results: list[RequestResult], wall_s: float) -> LoadSummary:
    good = [r for r in results if r.ok]
    ttfts = [r.ttft_s for r in good if r.ttft_s is not None]
    itls = [gap for r in good for gap in r.itl_s]
    tokens = sum(r.output_tokens or 0 for r in good)
    return LoadSummary(
        requests=len(results),
        ok=len(good),
        errors=len(results) - len(good),
        wall_s=wall_s,
        output_tokens=tokens,
        tokens_per_s=tokens / wall_s if wall_s > 0 else None,
        ttft_p50_s=percentile(ttfts, 0.5),
        ttft_p99_s=percentile(ttfts, 0.99),
        itl_p50_s=percentile(itls, 0.5),
        itl_p99_s=percentile(itls, 0.99),
        error_kinds=dict(Counter(r.error for r in results if r.error)),
    )


async def run_load(
    proxy_url: str,
    spec: LoadSpec,
    on_result: Callable[[int, RequestResult], None] | None = None,
    session: aiohttp.ClientSession | None = None,
) -> LoadSummary:
    """Send spec.requests requests, spec.concurrency at a time; never raises for a failed request."""
    problems = spec.problems()
    if problems:
        raise ValueError("load run: " + "; ".join(problems))
    own = session is None
    client = session if session is not None else aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=spec.concurrency + 2))
    results: list[RequestResult] = []
    t0 = time.perf_counter()
    try:
        model = spec.model
        if model is None:
            try:
                model = await first_model(client, proxy_url)
            except (aiohttp.ClientError, RuntimeError, OSError, asyncio.TimeoutError) as exc:
                failed = RequestResult(error=f"cannot list models at {proxy_url}: {exc}")
                return summarize([failed] * spec.requests, time.perf_counter() - t0)
        next_index = 0

        async def worker() -> None:
            nonlocal next_index
            while next_index < spec.requests:
                index = next_index
                next_index += 1
                result = await stream_completion(
                    client, proxy_url, prompt=synthetic_prompt(spec.prompt_tokens, seed=index),
                    max_tokens=spec.output_tokens, model=model, timeout_s=spec.timeout_s)
                results.append(result)
                if on_result is not None:
                    on_result(index, result)

        await asyncio.gather(*(worker() for _ in range(min(spec.concurrency, spec.requests))))
    finally:
        if own:
            await client.close()
    return summarize(results, time.perf_counter() - t0)
