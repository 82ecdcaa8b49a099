"""`DeploymentMonitor`: all telemetry of one deployment, headless, living as long as it.

    monitor = DeploymentMonitor(instances, proxy_url, store=SeriesStore(HOUR_AT_1S))
    monitor.start()                     # one thread with its own asyncio loop
    monitor.follower("decoder1").view() # a pane's view of the one tail of that log
    monitor.store.values("decoder1/generation_tokens_per_s", 120)
    monitor.kv_stats.rows(); monitor.pair_stats.pairs(); monitor.latest_scrape("decoder1")
    monitor.jobs.start("load", factory) # load runs belong to the deployment
    monitor.stop()

One thread runs everything, so a deployment costs one wake-up per tick however many
screens are open:
- one tail per log file (`LogFollower`; the file stays open), feeding a `LogScanner` per
  instance into `KvTransferStats`; panes take `follower(name).view()`s and never read the
  file for new lines themselves. The tail loop sleeps until a file is written (inotify,
  `FileWatch`), reading at most every 0.25 s, with a safety poll every `tail_idle_s`
  (5 s); without inotify it polls at 0.25 s while lines come and backs off to
  `tail_interval_s` (2 s) when quiet. Traffic (`busy()`) wakes it at once either way;
- one `Scraper` over every target (each engine's /metrics, the proxy's, LMCache's internal
  API servers where enabled), into a `Deriver` (rates, quantiles) and a `ProxyStageTracker`:
  every `scrape_interval_s` (1 s) while there is traffic (a live request event from the proxy,
  a request line -- `"POST /...` -- in an engine's access log, or running/waiting/req/s above
  0), every `idle_scrape_interval_s` (30 s) when there is none -- an idle engine's counters
  do not move, and traffic wakes the scraper at once, through the proxy or around it;
- the proxy's `/events` reader into `PairStats`;
- a 1 s sampler that records what the screens chart: per-instance KV transfers/s and GB/s,
  per-pair requests/s and kv_wait p50/p99. Once a sample is all zero it sleeps until new
  KV or request data arrives (or IDLE_SAMPLE_S passes): a series' missing seconds read as its
  last value (0) to the charts, and an idle cockpit is spared a wake-up a second;
- `jobs`: background coroutines such as a load run, cancelled only by request or `stop()`.

Everything lands in one bounded `SeriesStore` (default: an hour at 1 s per series) that
the caller may share with other writers (the UI records GPU history into it too).
Screens only read. `from_status(status)` builds the instance list from the runtime's
`DeploymentStatus` (duck-typed: telemetry does not import the runtime).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pdtui.telemetry.derive import Deriver, deriver_families
from pdtui.telemetry.events_reader import ProxyEventsReader
from pdtui.telemetry.filewatch import FileWatch
from pdtui.telemetry.jobs import BackgroundJobs
from pdtui.telemetry.kvstats import KvTransferStats, PairViewRow, pair_view_rows, url_namer
from pdtui.telemetry.logparse import LogScanner
from pdtui.telemetry.logtail import LogFollower
from pdtui.telemetry.pairs import PairStats
from pdtui.telemetry.scrape import ScrapeResult, ScrapeTarget, Scraper
from pdtui.telemetry.series import HOUR_AT_1S, SeriesStore
from pdtui.telemetry.stages import ProxyStageTracker

__all__ = ["HOUR_AT_1S", "DeploymentMonitor", "MonitoredInstance", "pair_key"]

_log = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 1.0
IDLE_SAMPLE_S = 10.0  # the longest the sampler sleeps after an all-zero sample
TAIL_BUSY_S = 0.25  # at most this often: a human reads no faster, and a burst of writes is one read
# With inotify, a woken tail waits this long before it reads, deaf to further writes: the
# lines several engines write at once (one health round of the proxy) are one read, and
# one wake-up, not one per file.
TAIL_GATHER_S = 0.05
TAIL_WATCHED_S = 5.0  # with inotify: a safety poll (a file created late, an event lost)
TAIL_UNWATCHED_S = 2.0  # without: the slowest poll of a quiet file
IDLE_SCRAPE_S = 30.0  # see the module docstring: traffic wakes the scraper at once
LIVE_EVENT_S = 5.0  # a proxy event older than this is history (replayed on connect), not traffic


@dataclass(frozen=True)
class MonitoredInstance:
    name: str
    kind: str  # "prefiller" | "decoder" | "proxy"
    log_path: str
    metrics_url: str | None = None  # http://127.0.0.1:PORT/metrics
    lmcache_metrics_urls: tuple[str, ...] = ()  # LMCache internal API servers' /metrics


def _is_live_request_event(line: bytes, now: float | None = None) -> bool:
    """A request moving through the proxy right now: a `stage` event from the last few
    seconds. Not a heartbeat, not a backend's health change, and not the history the proxy
    replays on connect (a young deployment's start-up events woke the scraper for nothing)."""
    try:
        event = json.loads(line)
    except ValueError:
        return False
    if not isinstance(event, dict) or event.get("type") != "stage":
        return False
    ts = event.get("ts")
    return not isinstance(ts, (int, float)) or (time.time() if now is None else now) - ts < LIVE_EVENT_S


def pair_key(prefiller: str, decoder: str) -> str:
    return f"pair/{prefiller}>{decoder}"


class DeploymentMonitor:
    def __init__(self, instances: Iterable[MonitoredInstance], proxy_url: str | None = None, *,
                 store: SeriesStore | None = None, scrape_interval_s: float = 1.0,
                 idle_scrape_interval_s: float | None = IDLE_SCRAPE_S,
                 tail_interval_s: float = TAIL_UNWATCHED_S, tail_idle_s: float = TAIL_WATCHED_S,
                 sample_interval_s: float = SAMPLE_INTERVAL_S,
                 scrape: bool = True, run_dir: str | None = None) -> None:
        self.instances = list(instances)
        self.proxy_url = proxy_url
        self.run_dir = Path(run_dir) if run_dir else None
        self.store = store if store is not None else SeriesStore(HOUR_AT_1S)
        self.scrape_interval_s = scrape_interval_s
        self.tail_interval_s = tail_interval_s
        self.tail_idle_s = tail_idle_s
        self.tail_polls = 0  # rounds over every file (tests, benchmarks)
        self._tail_wake: asyncio.Event | None = None
        self._sample_wake: asyncio.Event | None = None
        self._watch: FileWatch | None = None
        self.sample_interval_s = sample_interval_s
        self.kv_stats = KvTransferStats()
        self.pair_stats = PairStats(window_s=self.kv_stats.window_s)
        self.deriver = Deriver(self.store)
        self.stages = ProxyStageTracker(self.store)
        self.namer = url_namer(self._ports())
        self.jobs = BackgroundJobs(lambda: self._loop)
        self._followers: dict[str, LogFollower] = {}
        for inst in self.instances:
            self._followers[inst.name] = self._make_follower(inst)
        idle = idle_scrape_interval_s if idle_scrape_interval_s is None or idle_scrape_interval_s >= scrape_interval_s else None
        self._scraper = Scraper(self._targets(), interval_s=scrape_interval_s, on_result=self._ingest,
                                idle_interval_s=idle) if scrape else None
        self.events_reader = ProxyEventsReader(proxy_url, on_line=self._on_event_line) if proxy_url else None
        self._latest: dict[str, ScrapeResult] = {}
        self.scrapes = 0  # results ingested (benchmarks, tests)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._listeners: list[Callable[[], None]] = []

    @classmethod
    def from_status(cls, status, *, lmcache_ports: dict[str, list[int]] | None = None, host: str = "127.0.0.1",
                    **kw) -> DeploymentMonitor:
        """From a `pdtui.runtime.DeploymentStatus`; `lmcache_ports`: instance -> LMCache
        internal API server ports (from the profile, when that server is enabled)."""
        instances, proxy_url = [], None
        for inst in status.instances:
            port = inst.port
            # The instance's own address where the status has one (a Slurm run's node).
            base = getattr(inst, "health_url", "").rsplit("/health", 1)[0] or (f"http://{host}:{port}" if port else None)
            if inst.kind == "proxy" and base:
                proxy_url = base
            extra = tuple(f"http://{host}:{p}/metrics" for p in (lmcache_ports or {}).get(inst.name, ()))
            instances.append(MonitoredInstance(inst.name, inst.kind, inst.log_path or str(Path(status.run_dir) / f"{inst.name}.log"),
                                               f"{base}/metrics" if base else None, extra))
        return cls(instances, proxy_url, run_dir=str(status.run_dir), **kw)

    # --- what screens read ----------------------------------------------------------
    def follower(self, name: str) -> LogFollower:
        return self._followers[name]

    def followers(self) -> dict[str, LogFollower]:
        return dict(self._followers)

    def latest_scrape(self, name: str) -> ScrapeResult | None:
        return self._latest.get(name)

    def instance_names(self, kinds: tuple[str, ...] = ("prefiller", "decoder")) -> list[str]:
        return [i.name for i in self.instances if i.kind in kinds]

    def pair_rows(self) -> list[PairViewRow]:
        return pair_view_rows(self.kv_stats.rows(), self.pair_stats.pairs(), self.namer)

    def events_problem(self) -> str | None:
        reader = self.events_reader
        if reader is None or reader.connected:
            return None
        return f"proxy /events not connected, retrying: {reader.last_error or 'connecting'}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def on_sample(self, callback: Callable[[], None]) -> None:
        """`callback()` after each 1 s sample, on the monitor's thread (keep it quick)."""
        self._listeners.append(callback)

    # --- life -----------------------------------------------------------------------
    def start(self) -> DeploymentMonitor:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pdtui-monitor", daemon=True)
            self._thread.start()
            self._started.wait(10)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Cancel the jobs and every task, close the files; blocking (not on a UI loop)."""
        loop, thread = self._loop, self._thread
        if loop is not None and self._stopping is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:
                pass
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        for follower in self._followers.values():
            follower.close()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        self._tail_wake = asyncio.Event()
        self._sample_wake = asyncio.Event()
        self._watch = FileWatch(self._tail_wake.set)
        self._watch.attach(asyncio.get_running_loop())
        tasks = [asyncio.create_task(self._tail_loop(), name="monitor:tail"),
                 asyncio.create_task(self._sample_loop(), name="monitor:sample")]
        if self.events_reader is not None:
            tasks.append(asyncio.create_task(self.events_reader.read_forever(), name="monitor:events"))
        if self._scraper is not None:
            await self._scraper.start()
        self._started.set()
        try:
            await self._stopping.wait()
        finally:
            self.jobs.cancel_all()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._scraper is not None:
                await self._scraper.stop()
            self._watch.close()

    # --- parts ----------------------------------------------------------------------
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

    def _make_follower(self, inst: MonitoredInstance) -> LogFollower:
        role = None if inst.kind == "proxy" else inst.kind
        scanner = LogScanner(role)
        stats = self.kv_stats

        watch_requests = inst.kind != "proxy"

        def on_lines(_first: int, lines: list[str]) -> None:
            events: list[object] = []
            requests = False
            for line in lines:
                events.extend(scanner.feed(line))
                requests = requests or (watch_requests and '"POST /' in line)
            if events:
                stats.feed(inst.name, scanner.role or inst.kind, events)
                self._data_arrived()
            if requests and self._scraper is not None:
                # An engine's access line of a request: traffic, through our proxy or not.
                # (The tail is reading right now: only the scraper needs waking.)
                self._scraper.busy()

        follower = LogFollower(inst.log_path, on_lines=on_lines)
        follower.managed = True  # polled by the monitor's loop, never by a thread of its own
        return follower

    def _targets(self) -> list[ScrapeTarget]:
        families = deriver_families()
        targets = []
        for inst in self.instances:
            if not inst.metrics_url:
                continue
            if inst.kind == "proxy":
                targets.append(ScrapeTarget(inst.name, inst.metrics_url, "proxy", inst.name, ("pdtui_proxy_",)))
                continue
            targets.append(ScrapeTarget(inst.name, inst.metrics_url, "vllm", inst.name, families))
            for k, url in enumerate(inst.lmcache_metrics_urls):
                targets.append(ScrapeTarget(f"{inst.name}/lmcache{k}", url, "lmcache_internal", inst.name, ("lmcache:",)))
        if self.proxy_url and not any(t.kind == "proxy" for t in targets):
            targets.append(ScrapeTarget("proxy", self.proxy_url.rstrip("/") + "/metrics", "proxy", "proxy", ("pdtui_proxy_",)))
        return targets

    def busy(self) -> None:
        """Traffic seen: scrape at the busy pace and read the logs now (on the monitor's loop)."""
        if self._scraper is not None:
            self._scraper.busy()
        if self._tail_wake is not None:
            self._tail_wake.set()
        self._data_arrived()

    def _data_arrived(self) -> None:
        """KV or request data came in: a quiet sampler takes it up (on the monitor's loop)."""
        if self._sample_wake is not None:
            self._sample_wake.set()

    @property
    def files_watched(self) -> bool:
        """The logs are followed by inotify (False: polled, see the module docstring)."""
        return self._watch is not None and self._watch.available

    def _on_event_line(self, line: bytes) -> None:
        self.pair_stats.feed_line(line)
        if b'"stage"' in line and _is_live_request_event(line):
            self.busy()

    def _ingest(self, result: ScrapeResult) -> None:
        self._latest[result.target.name] = result
        self.scrapes += 1
        if result.target.kind == "proxy":
            if result.snapshot is not None:
                self.stages.ingest(result.snapshot)
        else:
            derived = self.deriver.ingest(result)
            if derived.get("running") or derived.get("waiting") or derived.get("request_rate"):
                self.busy()  # traffic that did not come through our proxy

    async def _tail_loop(self) -> None:
        """Read every file when woken (a write, traffic) or when the quiet delay is up."""
        followers = list(self._followers.values())
        paths = [f.path for f in followers]
        loop = asyncio.get_running_loop()
        wake = self._tail_wake
        watch = self._watch
        assert wake is not None and watch is not None
        delay = self.tail_interval_s  # quiet until a file grows (the first round reads what is there)
        while True:
            wake.clear()  # from here a write wakes the next wait: nothing is missed
            started = loop.time()
            grew = False
            for follower in followers:
                try:
                    before = follower.total_lines
                    while follower.poll():
                        await asyncio.sleep(0)  # a big backlog: read on, but let the scrapes in
                    grew = grew or follower.total_lines != before
                except Exception:  # a parser bug must not stop every other tail
                    _log.exception("tailing %s failed", follower.path)
            self.tail_polls += 1
            watch.watch(paths)  # again each round: a file created or replaced since
            if watch.available:
                delay = self.tail_idle_s
            else:
                delay = TAIL_BUSY_S if grew else min(self.tail_interval_s, delay * 2)
            try:
                await asyncio.wait_for(wake.wait(), delay)
            except asyncio.TimeoutError:
                continue  # the safety poll
            # Woken by a write or by traffic: gather what else is being written into the
            # same read, without a wake-up per write while waiting.
            gather = max(TAIL_GATHER_S, started + TAIL_BUSY_S - loop.time())
            if watch.available:
                watch.pause()
                try:
                    await asyncio.sleep(gather)
                finally:
                    watch.resume(discard=True)  # the round that follows reads every file
            else:
                await asyncio.sleep(gather)

    async def _sample_loop(self) -> None:
        wake = self._sample_wake
        assert wake is not None
        while True:
            wake.clear()  # data from here on wakes the next wait: nothing is missed
            quiet = False
            try:
                quiet = not self.sample()
            except Exception:
                _log.exception("telemetry sample failed")
            for callback in list(self._listeners):
                try:
                    callback()
                except Exception:
                    _log.exception("monitor listener failed")
            if not quiet:
                await asyncio.sleep(self.sample_interval_s)
                continue
            try:
                await asyncio.wait_for(wake.wait(), max(self.sample_interval_s, IDLE_SAMPLE_S))
            except asyncio.TimeoutError:
                pass

    def sample(self, now: float | None = None) -> bool:
        """Record the log- and event-derived figures the screens chart (every second while
        any is above zero); whether any was."""
        t = time.time() if now is None else now
        record = self.store.record
        moving = False
        for row in self.kv_stats.rows():
            record(f"{row.instance}/kv_transfers_per_s", t, row.transfers_per_s)
            record(f"{row.instance}/kv_gbps", t, row.gbps)
            moving = moving or bool(row.transfers_per_s or row.gbps)
        for pair in self.pair_rows():
            key = pair_key(pair.prefiller, pair.decoder)
            record(f"{key}/requests_per_s", t, pair.requests_per_s)
            record(f"{key}/kv_wait_p50_ms", t, pair.kv_wait_p50_ms)
            record(f"{key}/kv_wait_p99_ms", t, pair.kv_wait_p99_ms)
            record(f"{key}/est_gbps", t, pair.est_gbps)
            moving = moving or bool(pair.requests_per_s or pair.est_gbps)
        return moving
