"""loadgen and the playground against the real proxy in front of real simulated engines."""

from __future__ import annotations

import aiohttp
import pytest

from pdtui.loadgen.client import stream_completion
from pdtui.loadgen.load import LoadSpec, run_load
from pdtui.telemetry.derive import percentile
from pdtui.telemetry.stages import ProxyStageTracker
from pdtui.loadgen.timeline import fetch_timeline, stage_durations
from pdtui.telemetry.metrics import parse_metrics
from pdtui.telemetry.series import SeriesStore
from tests.conftest import free_port
from tests.proxy.test_e2e_sim import _wait_ready

pytestmark = pytest.mark.timeout(90)


async def test_one_request_timeline_load_run_and_stage_quantiles(deployment):
    async with aiohttp.ClientSession() as s:
        await _wait_ready(s, deployment)
        pieces: list[str] = []
        result = await stream_completion(s, deployment.proxy_url, prompt="hello " * 40, max_tokens=8,
                                         on_text=pieces.append)
        assert result.ok, result.error
        assert result.req_id and result.output_tokens == 8
        assert "".join(pieces) == result.text and result.text
        assert result.ttft_s is not None and len(result.itl_s) >= 1
        events = await fetch_timeline(s, deployment.proxy_url, result.req_id, timeout_s=10)
        stages = [row[0] for row in stage_durations(events)]
        for stage in ("prefill", "kv_wait", "ttft", "decode", "total"):
            assert stage in stages, stages
        assert events[-1].stage == "request" and events[-1].state == "end"

        summary = await run_load(deployment.proxy_url, LoadSpec(requests=12, concurrency=3, prompt_tokens=64,
                                                                 output_tokens=6))
        assert (summary.requests, summary.ok, summary.errors) == (12, 12, 0)
        assert summary.output_tokens == 72
        assert summary.ttft_p50_s <= summary.ttft_p99_s
        assert summary.itl_p50_s is not None and summary.tokens_per_s > 0

        async with s.get(deployment.proxy_url + "/metrics") as resp:
            snapshot = parse_metrics(await resp.text())
        store = SeriesStore()
        out = ProxyStageTracker(store).ingest(snapshot)
        assert out["ttft_p50"] is not None and out["ttft_p50"] <= out["ttft_p99"]
        assert "proxy/prefill_p99" in store


async def test_errors_are_counted_not_raised():
    url = f"http://127.0.0.1:{free_port()}"
    summary = await run_load(url, LoadSpec(requests=3, concurrency=2, model="m"))
    assert summary.errors == 3 and summary.ok == 0
    assert any("cannot connect" in k for k in summary.error_kinds)
    assert summary.rows()[-1][0] == "error x3"


def test_spec_problems_and_percentile():
    assert LoadSpec(requests=0, concurrency=2).problems() == ["requests must be a whole number from 1 to 100000, got 0"]
    assert percentile([], 0.5) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([5.0], 0.99) == 5.0
