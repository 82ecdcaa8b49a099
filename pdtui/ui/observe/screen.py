"""`ObserveScreen`: log panes (one per instance and the proxy), the KV-transfer view, the
latency view and the request playground, in tabs.

    from pdtui.ui.observe import ObserveScreen, ObservedInstance
    app.push_screen(ObserveScreen.from_status(status))              # a DeploymentStatus
    app.push_screen(ObserveScreen(instances, proxy_url, run_dir))   # or by hand

Each instance's log is read once, by its pane's follower thread, which also feeds the
lines to a `LogScanner` for the KV-transfer numbers. /metrics of the proxy and of the
instances are scraped every 2 s by `pdtui.telemetry.scrape.Scraper` on the app's loop.
The proxy's `GET /events` stream is read by a `ProxyEventsReader` on its own thread
(reconnecting with backoff) into a `PairStats`, for the KV view's prefiller -> decoder rows.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, TabbedContent, TabPane

from pdtui.telemetry.events_reader import ProxyEventsReader
from pdtui.telemetry.pairs import PairStats
from pdtui.telemetry.stages import ProxyStageTracker
from pdtui.telemetry.derive import Deriver
from pdtui.telemetry.logparse import LogScanner
from pdtui.telemetry.series import SeriesStore
from pdtui.telemetry.kvstats import KvTransferStats, url_namer
from pdtui.ui.observe.kvview import KvTransferView
from pdtui.ui.observe.latency import LatencyView
from pdtui.telemetry.logtail import LogFollower
from pdtui.ui.observe.logpane import LogPane
from pdtui.ui.observe.playground import Playground

__all__ = ["ObserveScreen", "ObservedInstance"]


@dataclass(frozen=True)
class ObservedInstance:
    name: str
    kind: str  # "prefiller" | "decoder" | "proxy"
    log_path: str
    metrics_url: str | None = None  # http://127.0.0.1:PORT/metrics


def _tab_id(name: str) -> str:
    return "log-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


class ObserveScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]
    DEFAULT_CSS = "ObserveScreen TabbedContent { height: 1fr; }"

    def __init__(self, instances: list[ObservedInstance], proxy_url: str | None = None,
                 run_dir: str | os.PathLike[str] | None = None, *, initial: str | None = None,
                 scrape_interval_s: float = 2.0, scrape: bool = True) -> None:
        super().__init__()
        self.instances = list(instances)
        self.proxy_url = proxy_url
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.initial = initial
        self.scrape_interval_s = scrape_interval_s
        self.kv_stats = KvTransferStats()
        self.series = SeriesStore()
        self._deriver = Deriver(self.series)
        self._stages = ProxyStageTracker(self.series)
        self._scrape = scrape
        self._scraper = None
        self.pair_stats = PairStats(window_s=self.kv_stats.window_s)
        self._events_reader: ProxyEventsReader | None = None

    @classmethod
    def from_status(cls, status, initial: str | None = None, **kw) -> ObserveScreen:
        """From `pdtui.runtime.DeploymentStatus`: every instance's log, the proxy's URL."""
        instances, proxy_url = [], None
        for inst in status.instances:
            port = inst.port
            if inst.kind == "proxy":
                proxy_url = f"http://127.0.0.1:{port}" if port else None
            instances.append(ObservedInstance(inst.name, inst.kind, inst.log_path or str(Path(status.run_dir) / f"{inst.name}.log"),
                                              f"http://127.0.0.1:{port}/metrics" if port else None))
        return cls(instances, proxy_url, status.run_dir, initial=initial, **kw)

    def _follower(self, inst: ObservedInstance) -> LogFollower:
        role = None if inst.kind == "proxy" else inst.kind
        scanner = LogScanner(role)
        stats = self.kv_stats

        def on_lines(_first: int, lines: list[str]) -> None:
            events = []
            for line in lines:
                events.extend(scanner.feed(line))
            if events:
                stats.feed(inst.name, scanner.role or inst.kind, events)

        return LogFollower(inst.log_path, on_lines=on_lines)

    def compose(self) -> ComposeResult:
        initial = _tab_id(self.initial) if self.initial else None
        with TabbedContent(initial=initial or ""):
            for inst in self.instances:
                with TabPane(inst.name, id=_tab_id(inst.name)):
                    yield LogPane(inst.log_path, title=inst.name, follower=self._follower(inst),
                                  save_dir=self.run_dir)
            with TabPane("KV transfer", id="kv"):
                yield KvTransferView(self.kv_stats, pairs=self.pair_stats if self.proxy_url else None,
                                     name=url_namer(self._ports()), source_status=self._events_status)
            with TabPane("latency", id="latency"):
                yield LatencyView(self.series, [i.name for i in self.instances if i.kind != "proxy"])
            if self.proxy_url:
                with TabPane("playground", id="playground"):
                    yield Playground(self.proxy_url)
        yield Footer()

    def _ports(self) -> dict[int, str]:
        """Instance port -> name, to name the proxy's backend URLs."""
        ports = {}
        for inst in self.instances:
            if inst.metrics_url and inst.kind != "proxy":
                try:
                    port = urlsplit(inst.metrics_url).port
                except ValueError:
                    continue
                if port is not None:
                    ports[port] = inst.name
        return ports

    def _events_status(self) -> str | None:
        reader = self._events_reader
        if reader is None or reader.connected:
            return None
        return f"proxy /events not connected, retrying: {reader.last_error or 'connecting'}"

    async def on_mount(self) -> None:
        if self.proxy_url:
            self._events_reader = ProxyEventsReader(self.proxy_url, on_line=self.pair_stats.feed_line)
            self._events_reader.start()
        if self._scrape:
            from pdtui.telemetry.scrape import ScrapeTarget, Scraper

            targets = []
            for inst in self.instances:
                if inst.metrics_url:
                    targets.append(ScrapeTarget(inst.name, inst.metrics_url, kind="proxy" if inst.kind == "proxy" else "vllm"))
            if self.proxy_url and not any(t.kind == "proxy" for t in targets):
                targets.append(ScrapeTarget("proxy", self.proxy_url.rstrip("/") + "/metrics", kind="proxy"))
            if targets:
                self._scraper = Scraper(targets, interval_s=self.scrape_interval_s, on_result=self.ingest_scrape)
                await self._scraper.start()

    def ingest_scrape(self, result) -> None:
        if result.target.kind == "proxy":
            if result.snapshot is not None:
                self._stages.ingest(result.snapshot)
        else:
            self._deriver.ingest(result)

    async def on_unmount(self) -> None:
        if self._events_reader is not None:
            # stop() joins the reader's thread: not on the UI thread.
            await asyncio.to_thread(self._events_reader.stop)
            self._events_reader = None
        if self._scraper is not None:
            await self._scraper.stop()
