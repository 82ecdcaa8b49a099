"""SVG snapshots of the log pane, the KV-transfer view and the latency view, at 100x30,
with the recorded real LMCache/vLLM logs and metrics of shared/fixtures (fixed clocks).
Update with `pytest tests/observe --snapshot-update` after looking at the report."""

from __future__ import annotations

import shutil

import pytest
from textual.app import App, ComposeResult

from pdtui.proxy.metrics import ProxyMetrics
from pdtui.telemetry.stages import ProxyStageTracker
from pdtui.telemetry.derive import Deriver
from pdtui.telemetry.logparse import LogScanner
from pdtui.telemetry.metrics import parse_metrics
from pdtui.telemetry.scrape import ScrapeResult, ScrapeTarget
from pdtui.telemetry.series import SeriesStore
from pdtui.telemetry.kvstats import KvTransferStats
from pdtui.ui.observe.kvview import KvTransferView
from pdtui.ui.observe.latency import LatencyView
from pdtui.ui.observe.logpane import LogPane
from tests.conftest import SHARED_FIXTURES

SIZE = (100, 30)
T0 = 1_780_000_000.0

pytestmark = pytest.mark.skipif(not SHARED_FIXTURES.is_dir(), reason="shared fixtures not found")


class OneWidget(App):
    def __init__(self, widget) -> None:
        super().__init__()
        self.widget = widget

    def compose(self) -> ComposeResult:
        yield self.widget


async def settle(pilot) -> None:
    pane = pilot.app.query_one(LogPane)
    for _ in range(100):
        if pane.shown_line_numbers() and pane.following:
            break
        await pilot.pause(0.05)
    await pilot.pause(0.2)


def test_log_pane_snapshot(snap_compare, tmp_path):
    log = tmp_path / "decoder.log"
    shutil.copy(SHARED_FIXTURES / "lmcache-logs/1p1d/decoder.log", log)
    assert snap_compare(OneWidget(LogPane(log, title="decoder")), terminal_size=SIZE, run_before=settle)


def test_log_pane_level_filter_snapshot(snap_compare, tmp_path):
    log = tmp_path / "prefiller.log"
    shutil.copy(SHARED_FIXTURES / "lmcache-logs/1p1d/prefiller.log", log)

    async def run_before(pilot) -> None:
        await settle(pilot)
        pilot.app.query_one(LogPane).log_view.focus()
        await pilot.press("l", "t")
        await settle(pilot)

    assert snap_compare(OneWidget(LogPane(log, title="prefiller")), terminal_size=SIZE, run_before=run_before)


def kv_stats_from_fixture_logs() -> KvTransferStats:
    stats = KvTransferStats(clock=lambda: T0)
    for name, role in (("prefiller", "prefiller"), ("decoder", "decoder")):
        scanner = LogScanner(role)
        events = []
        with open(SHARED_FIXTURES / f"lmcache-logs/1p1d/{name}.log", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                events.extend(scanner.feed(line))
        stats.feed(name, role, events)
    return stats


def test_kv_view_snapshot(snap_compare):
    stats = kv_stats_from_fixture_logs()
    assert any(r.stored_tokens for r in stats.rows())
    assert snap_compare(OneWidget(KvTransferView(stats)), terminal_size=SIZE)


def test_latency_view_snapshot(snap_compare):
    store = SeriesStore()
    deriver = Deriver(store)
    real = SHARED_FIXTURES / "real-vllm/lmcache-pd"
    for name in ("prefiller", "decoder"):
        target = ScrapeTarget(name, "http://127.0.0.1:1/metrics")
        for k, suffix in enumerate(("_before", "")):
            text = (real / f"metrics_{name}{suffix}.txt").read_text()
            deriver.ingest(ScrapeResult(target, T0 + 10 * k, 0.01, parse_metrics(text, taken_at=T0 + 10 * k)))
    proxy = ProxyMetrics()
    tracker = ProxyStageTracker(store)
    for k in range(12):
        for stage, base in (("tokenize", 0.002), ("prefill", 0.04), ("kv_wait", 0.01), ("decode_ttft", 0.02),
                            ("ttft", 0.08), ("total", 0.5)):
            proxy.observe_stage(stage, base * (1 + k % 4))
        proxy.requests.labels("completions", "ok").inc()
        tracker.ingest(parse_metrics(proxy.render().decode(), taken_at=T0 + 2 * k))
    assert snap_compare(OneWidget(LatencyView(store, ["prefiller", "decoder"])), terminal_size=SIZE)
